"""Structural primitives: broadcasting, reshaping, transposing, slicing, padding.

These are linear, so each VJP is another structural op (broadcast <-> sum,
pad <-> slice, dynamic_slice <-> dynamic_update_slice) and each JVP applies the
primitive itself to the tangent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad.core import Array, Primitive, ShapedArray
from fgrad.lax.batch_util import batch_size, logical_shape, moveaxis, phys_axis, to_front
from fgrad.lax.utils import asarray_operand, check_same_dtypes, promote_scalars


def _linear_jvp(fn):
    """JVP of a primitive linear in its first operand: apply it to the tangent."""

    def jvp(ts, x, *rest, out, **params):
        if ts[0] is None:
            return None
        return fn(ts[0], *rest, **params)

    return jvp


# ---------------------------------------------------------------- broadcast_in_dim

broadcast_in_dim_p = Primitive("broadcast_in_dim")


@broadcast_in_dim_p.def_shape
def _broadcast_in_dim_shape(x: ShapedArray, *, shape, broadcast_dimensions) -> ShapedArray:
    if len(broadcast_dimensions) != x.ndim:
        raise TypeError(
            f"broadcast_dimensions {broadcast_dimensions} must name one output axis per "
            f"operand axis (operand rank {x.ndim})"
        )
    if list(broadcast_dimensions) != sorted(set(broadcast_dimensions)):
        raise TypeError(f"broadcast_dimensions {broadcast_dimensions} must be increasing")
    for i, d in enumerate(broadcast_dimensions):
        if not 0 <= d < len(shape) or x.shape[i] not in (1, shape[d]):
            raise TypeError(f"cannot broadcast shape {x.shape} to {shape}")
    return ShapedArray(shape, x.dtype)


@broadcast_in_dim_p.def_impl
def _broadcast_in_dim_impl(x, *, shape, broadcast_dimensions):
    expanded = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        expanded[d] = x.shape[i]
    # A materialised copy: NumPy's broadcast_to is a slow Python function, and a
    # read-only zero-stride view would follow into every consumer.
    out = np.empty(shape, x.dtype)
    out[...] = x.reshape(expanded)
    return out


@broadcast_in_dim_p.def_vjp
def _broadcast_in_dim_vjp(ct, x, *, out, shape, broadcast_dimensions):
    from fgrad.lax.reductions import reduce_sum

    new_axes = [d for d in range(len(shape)) if d not in broadcast_dimensions]
    stretched = [d for i, d in enumerate(broadcast_dimensions) if x.shape[i] == 1 and shape[d] != 1]
    summed = reduce_sum(ct, tuple(sorted(new_axes + stretched))) if new_axes or stretched else ct
    return (reshape(summed, tuple(x.shape)),)


broadcast_in_dim_p.def_jvp(_linear_jvp(lambda t, **p: broadcast_in_dim(t, **p)))


@broadcast_in_dim_p.def_batch
def _broadcast_in_dim_batch(args, dims, *, shape, broadcast_dimensions):
    x = moveaxis(args[0], dims[0], 0)
    out_dims = (0,) + tuple(b + 1 for b in broadcast_dimensions)
    return broadcast_in_dim(x, (x.shape[0],) + tuple(shape), out_dims), 0


def broadcast_in_dim(operand, shape: Sequence[int], broadcast_dimensions: Sequence[int]):
    """Broadcast ``operand`` to ``shape``; its axis i becomes output axis
    ``broadcast_dimensions[i]`` (as ``jax.lax.broadcast_in_dim``)."""
    operand = asarray_operand(operand)
    shape = tuple(int(d) for d in shape)
    dims = tuple(int(d) for d in broadcast_dimensions)
    if tuple(operand.shape) == shape and dims == tuple(range(len(shape))):
        return operand
    return broadcast_in_dim_p.bind(operand, shape=shape, broadcast_dimensions=dims)


def full(shape: Sequence[int], fill_value, dtype=None):
    """An array of ``shape`` filled with ``fill_value`` (``jax.lax.full``).

    One ``broadcast_in_dim`` of a scalar, so under a trace it is a single equation.
    """
    value = asarray_operand(fill_value, dtype)
    if dtype is not None and value.dtype != np.dtype(dtype):
        from fgrad.lax.elementwise import convert_element_type

        value = convert_element_type(value, dtype)
    return broadcast_in_dim(value, tuple(int(d) for d in shape), ())


def zeros_like_array(x):
    """Zeros with ``x``'s shape and dtype (``jax.lax.zeros_like_array``)."""
    return full(x.shape, 0, x.dtype)


def broadcast(operand, sizes: Sequence[int]):
    """Add leading axes of ``sizes`` (``jax.lax.broadcast``)."""
    operand = asarray_operand(operand)
    sizes = tuple(sizes)
    nd = len(operand.shape)
    return broadcast_in_dim(
        operand, sizes + tuple(operand.shape), tuple(range(len(sizes), len(sizes) + nd))
    )


# ---------------------------------------------------------------- reshape

reshape_p = Primitive("reshape")


@reshape_p.def_shape
def _reshape_shape(x: ShapedArray, *, new_sizes) -> ShapedArray:
    if math.prod(new_sizes) != x.size:
        raise TypeError(f"cannot reshape {x.shape} (size {x.size}) into {new_sizes}")
    return ShapedArray(new_sizes, x.dtype)


reshape_p.def_impl(lambda x, *, new_sizes: x.reshape(new_sizes))
reshape_p.def_vjp(lambda ct, x, *, out, new_sizes: (reshape(ct, tuple(x.shape)),))
reshape_p.def_jvp(_linear_jvp(lambda t, new_sizes: reshape(t, new_sizes)))


@reshape_p.def_batch
def _reshape_batch(args, dims, *, new_sizes):
    x = moveaxis(args[0], dims[0], 0)
    return reshape(x, (x.shape[0],) + tuple(new_sizes)), 0


def reshape(operand, new_sizes: Sequence[int], dimensions: Sequence[int] | None = None):
    """Reshape (row-major); ``dimensions`` first transposes, as in ``jax.lax.reshape``."""
    operand = asarray_operand(operand)
    if dimensions is not None and tuple(dimensions) != tuple(range(len(operand.shape))):
        operand = transpose(operand, dimensions)
    new_sizes = tuple(int(d) for d in new_sizes)
    if tuple(operand.shape) == new_sizes:
        return operand
    return reshape_p.bind(operand, new_sizes=new_sizes)


# ---------------------------------------------------------------- transpose

transpose_p = Primitive("transpose")


@transpose_p.def_shape
def _transpose_shape(x: ShapedArray, *, permutation) -> ShapedArray:
    if sorted(permutation) != list(range(x.ndim)):
        raise TypeError(f"permutation {permutation} is not a permutation of {x.ndim} axes")
    return ShapedArray(tuple(x.shape[p] for p in permutation), x.dtype)


transpose_p.def_impl(lambda x, *, permutation: np.transpose(x, permutation))
transpose_p.def_vjp(
    lambda ct, x, *, out, permutation: (transpose(ct, tuple(np.argsort(permutation))),)
)
transpose_p.def_jvp(_linear_jvp(lambda t, permutation: transpose(t, permutation)))


@transpose_p.def_batch
def _transpose_batch(args, dims, *, permutation):
    d = dims[0]
    return transpose(args[0], (d,) + tuple(phys_axis(p, d) for p in permutation)), 0


def transpose(operand, permutation: Sequence[int]):
    """Permute axes: output axis i is input axis ``permutation[i]``."""
    operand = asarray_operand(operand)
    permutation = tuple(int(p) for p in permutation)
    if permutation == tuple(range(len(operand.shape))):
        return operand
    return transpose_p.bind(operand, permutation=permutation)


# ---------------------------------------------------------------- squeeze / expand_dims

squeeze_p = Primitive("squeeze")


@squeeze_p.def_shape
def _squeeze_shape(x: ShapedArray, *, dimensions) -> ShapedArray:
    for d in dimensions:
        if not 0 <= d < x.ndim or x.shape[d] != 1:
            raise TypeError(f"cannot squeeze axis {d} of shape {x.shape} (it must have size 1)")
    return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i not in dimensions), x.dtype)


squeeze_p.def_impl(lambda x, *, dimensions: np.squeeze(x, axis=tuple(dimensions)))
squeeze_p.def_vjp(lambda ct, x, *, out, dimensions: (reshape(ct, tuple(x.shape)),))
squeeze_p.def_jvp(_linear_jvp(lambda t, dimensions: squeeze(t, dimensions)))


@squeeze_p.def_batch
def _squeeze_batch(args, dims, *, dimensions):
    d = dims[0]
    phys = tuple(phys_axis(a, d) for a in dimensions)
    return squeeze(args[0], phys), d - sum(1 for a in phys if a < d)


def squeeze(array, dimensions: Sequence[int]):
    """Remove the given size-1 axes."""
    array = asarray_operand(array)
    nd = len(array.shape)
    dims = tuple(sorted(int(d) % nd if nd else int(d) for d in dimensions))
    if not dims:
        return array
    return squeeze_p.bind(array, dimensions=dims)


expand_dims_p = Primitive("expand_dims")


@expand_dims_p.def_shape
def _expand_dims_shape(x: ShapedArray, *, dimensions) -> ShapedArray:
    out_nd = x.ndim + len(dimensions)
    shape = list(x.shape)
    for d in sorted(dimensions):
        if not 0 <= d < out_nd:
            raise TypeError(f"axis {d} out of range for result rank {out_nd}")
        shape.insert(d, 1)
    return ShapedArray(shape, x.dtype)


expand_dims_p.def_impl(lambda x, *, dimensions: np.expand_dims(x, tuple(dimensions)))
expand_dims_p.def_vjp(lambda ct, x, *, out, dimensions: (reshape(ct, tuple(x.shape)),))
expand_dims_p.def_jvp(_linear_jvp(lambda t, dimensions: expand_dims(t, dimensions)))


@expand_dims_p.def_batch
def _expand_dims_batch(args, dims, *, dimensions):
    x = moveaxis(args[0], dims[0], 0)
    return expand_dims(x, tuple(a + 1 for a in dimensions)), 0


def expand_dims(array, dimensions: Sequence[int]):
    """Insert size-1 axes at ``dimensions`` (positions in the result)."""
    array = asarray_operand(array)
    out_nd = len(array.shape) + len(dimensions)
    dims = tuple(sorted(int(d) % out_nd for d in dimensions))
    if not dims:
        return array
    return expand_dims_p.bind(array, dimensions=dims)


# ---------------------------------------------------------------- concatenate

concatenate_p = Primitive("concatenate")


@concatenate_p.def_shape
def _concatenate_shape(*xs: ShapedArray, dimension) -> ShapedArray:
    if not xs:
        raise TypeError("needs at least one operand")
    dtype = check_same_dtypes("", *xs)
    nd = xs[0].ndim
    if not 0 <= dimension < nd:
        raise TypeError(f"dimension {dimension} out of range for rank {nd}")
    for x in xs:
        if x.ndim != nd or any(
            a != b for i, (a, b) in enumerate(zip(x.shape, xs[0].shape)) if i != dimension
        ):
            raise TypeError(
                f"shapes {[x.shape for x in xs]} differ outside the concatenation axis {dimension}"
            )
    shape = list(xs[0].shape)
    shape[dimension] = sum(x.shape[dimension] for x in xs)
    return ShapedArray(shape, dtype)


concatenate_p.def_impl(lambda *xs, dimension: np.concatenate(xs, axis=dimension))


@concatenate_p.def_vjp
def _concatenate_vjp(ct, *xs, out, dimension):
    cts, start = [], 0
    for x in xs:
        stop = start + x.shape[dimension]
        starts = [0] * len(x.shape)
        limits = list(ct.shape)
        starts[dimension], limits[dimension] = start, stop
        cts.append(slice(ct, starts, limits))
        start = stop
    return tuple(cts)


@concatenate_p.def_jvp
def _concatenate_jvp(ts, *xs, out, dimension):
    if all(t is None for t in ts):
        return None
    return concatenate([x * 0 if t is None else t for t, x in zip(ts, xs)], dimension)


@concatenate_p.def_batch
def _concatenate_batch(args, dims, *, dimension):
    size = batch_size(args, dims)
    xs = [to_front(x, d, size) for x, d in zip(args, dims, strict=True)]
    return concatenate_p.bind(*xs, dimension=dimension + 1), 0


def concatenate(operands: Sequence[Any], dimension: int):
    """Join arrays along ``dimension``."""
    operands = promote_scalars(*operands)
    if len(operands) == 1:
        return operands[0]
    return concatenate_p.bind(*operands, dimension=int(dimension))


# ---------------------------------------------------------------- pad

pad_p = Primitive("pad")


@pad_p.def_shape
def _pad_shape(x: ShapedArray, v: ShapedArray, *, padding_config) -> ShapedArray:
    if v.shape != ():
        raise TypeError(f"padding_value must be a scalar, got shape {v.shape}")
    check_same_dtypes("", x, v)
    if len(padding_config) != x.ndim:
        raise TypeError(f"padding_config has {len(padding_config)} entries for rank {x.ndim}")
    shape = []
    for n, (lo, hi, interior) in zip(x.shape, padding_config):
        if interior < 0:
            raise TypeError("interior padding must be >= 0")
        size = lo + hi + n + max(n - 1, 0) * interior
        if size < 0:
            raise TypeError(f"negative padding {padding_config} leaves a negative size")
        shape.append(size)
    return ShapedArray(shape, x.dtype)


@pad_p.def_impl
def _pad_impl(x, v, *, padding_config):
    # Interior padding first, then positive edges, then crop negative edges.
    shape = [n + max(n - 1, 0) * i for n, (_, _, i) in zip(x.shape, padding_config)]
    out = np.full(shape, v, dtype=x.dtype)
    out[tuple(np.s_[:: i + 1] for (_, _, i) in padding_config)] = x
    widths = [(max(lo, 0), max(hi, 0)) for lo, hi, _ in padding_config]
    if widths:  # np.pad rejects the empty width list of a rank-0 operand
        out = np.pad(out, widths, constant_values=v)
    crop = tuple(
        np.s_[max(-lo, 0) : out.shape[d] - max(-hi, 0)]
        for d, (lo, hi, _) in enumerate(padding_config)
    )
    return out[crop]


@pad_p.def_vjp
def _pad_vjp(ct, x, v, *, out, padding_config):
    from fgrad.lax.reductions import reduce_sum

    unpadded = pad(ct, 0.0, [(-lo, -hi, 0) for lo, hi, _ in padding_config])
    ct_x = slice(
        unpadded,
        [0] * len(x.shape),
        list(unpadded.shape),
        [i + 1 for _, _, i in padding_config],
    )
    all_axes = tuple(range(len(ct.shape)))
    ct_v = reduce_sum(ct, all_axes) - reduce_sum(ct_x, all_axes)
    return ct_x, ct_v


@pad_p.def_jvp
def _pad_jvp(ts, x, v, *, out, padding_config):
    if ts[0] is None and ts[1] is None:
        return None
    tx = x * 0 if ts[0] is None else ts[0]
    tv = v * 0 if ts[1] is None else ts[1]
    return pad(tx, tv, padding_config)


@pad_p.def_batch
def _pad_batch(args, dims, *, padding_config):
    from fgrad.lax.elementwise import select_n

    (x, v), (xd, vd) = args, dims
    size = batch_size(args, dims)
    x = to_front(x, xd, size)
    config = ((0, 0, 0),) + tuple(padding_config)
    if vd is None:
        return pad_p.bind(x, v, padding_config=config), 0
    # A per-example padding value: pad with zeros, then select v where the padding is,
    # found by padding a mask of the (unbatched) element shape the same way.
    padded = pad_p.bind(x, asarray_operand(0, x.dtype), padding_config=config)
    inner = tuple(x.shape[1:])
    mask = pad(asarray_operand(np.zeros(inner, dtype=bool)), asarray_operand(True), padding_config)
    out_shape = tuple(padded.shape)
    mask = broadcast_in_dim(mask, out_shape, tuple(range(1, len(out_shape))))
    v = broadcast_in_dim(v, out_shape, (0,))
    return select_n(mask, padded, v), 0


def pad(operand, padding_value, padding_config: Sequence[tuple[int, int, int]]):
    """Pad with ``(low, high, interior)`` per axis; negative low/high crop."""
    operand, padding_value = promote_scalars(operand, padding_value)
    config = tuple((int(lo), int(hi), int(i)) for lo, hi, i in padding_config)
    return pad_p.bind(operand, padding_value, padding_config=config)


# ---------------------------------------------------------------- slice

slice_p = Primitive("slice")


@slice_p.def_shape
def _slice_shape(x: ShapedArray, *, start_indices, limit_indices, strides) -> ShapedArray:
    if not (len(start_indices) == len(limit_indices) == len(strides) == x.ndim):
        raise TypeError(f"slice of rank-{x.ndim} operand needs {x.ndim} indices per argument")
    shape = []
    for n, s, e, st in zip(x.shape, start_indices, limit_indices, strides):
        if not 0 <= s <= e <= n or st < 1:
            raise TypeError(
                f"slice start {start_indices} / limit {limit_indices} / strides {strides} "
                f"out of range for shape {x.shape}"
            )
        shape.append(0 if e == s else (e - s - 1) // st + 1)
    return ShapedArray(shape, x.dtype)


slice_p.def_impl(
    lambda x, *, start_indices, limit_indices, strides: x[
        tuple(np.s_[s:e:st] for s, e, st in zip(start_indices, limit_indices, strides))
    ]
)


@slice_p.def_vjp
def _slice_vjp(ct, x, *, out, start_indices, limit_indices, strides):
    config = []
    for n, s, m, st in zip(x.shape, start_indices, out.shape, strides):
        used = s + (m - 1) * st + 1 if m else s
        config.append((s, n - used, st - 1) if m else (s, n - s, 0))
    return (pad(ct, 0, config),)


slice_p.def_jvp(_linear_jvp(lambda t, **p: slice(t, **p)))


@slice_p.def_batch
def _slice_batch(args, dims, *, start_indices, limit_indices, strides):
    (x,), (d,) = args, dims

    def at_d(seq, value):
        return tuple(seq[:d]) + (value,) + tuple(seq[d:])

    out = slice_p.bind(
        x,
        start_indices=at_d(start_indices, 0),
        limit_indices=at_d(limit_indices, x.shape[d]),
        strides=at_d(strides, 1),
    )
    return out, d


def slice(operand, start_indices, limit_indices, strides=None):  # noqa: A001
    """Static slice ``operand[start:limit:stride]`` per axis (``jax.lax.slice``)."""
    operand = asarray_operand(operand)
    nd = len(operand.shape)
    strides = tuple(int(s) for s in strides) if strides is not None else (1,) * nd
    start = tuple(int(s) for s in start_indices)
    limit = tuple(int(s) for s in limit_indices)
    if start == (0,) * nd and limit == tuple(operand.shape) and strides == (1,) * nd:
        return operand
    return slice_p.bind(operand, start_indices=start, limit_indices=limit, strides=strides)


# ---------------------------------------------------------------- dynamic_slice


def _clamp_starts(starts, shape, sizes):
    # As JAX: a negative start counts from the end (start + n), then starts are clamped
    # so that the slice stays inside the operand.
    starts = [int(s) + n if int(s) < 0 else int(s) for s, n in zip(starts, shape)]
    return [int(np.clip(s, 0, n - k)) for s, n, k in zip(starts, shape, sizes)]


dynamic_slice_p = Primitive("dynamic_slice")


@dynamic_slice_p.def_shape
def _dynamic_slice_shape(x: ShapedArray, *idx: ShapedArray, slice_sizes) -> ShapedArray:
    if len(idx) != x.ndim or len(slice_sizes) != x.ndim:
        raise TypeError(f"needs {x.ndim} start indices and slice sizes, got {len(idx)}")
    for i in idx:
        if i.shape != () or not np.issubdtype(i.dtype, np.integer):
            raise TypeError(f"start indices must be integer scalars, got {i.str_short()}")
    for n, k in zip(x.shape, slice_sizes):
        if not 0 <= k <= n:
            raise TypeError(f"slice_sizes {slice_sizes} do not fit in shape {x.shape}")
    return ShapedArray(slice_sizes, x.dtype)


@dynamic_slice_p.def_impl
def _dynamic_slice_impl(x, *idx, slice_sizes):
    starts = _clamp_starts(idx, x.shape, slice_sizes)
    return x[tuple(np.s_[s : s + k] for s, k in zip(starts, slice_sizes))]


@dynamic_slice_p.def_vjp
def _dynamic_slice_vjp(ct, x, *idx, out, slice_sizes):
    zeros = full(x.shape, 0, ct.dtype)
    return (dynamic_update_slice(zeros, ct, idx),) + (None,) * len(idx)


@dynamic_slice_p.def_jvp
def _dynamic_slice_jvp(ts, x, *idx, out, slice_sizes):
    return None if ts[0] is None else dynamic_slice(ts[0], idx, slice_sizes)


@dynamic_slice_p.def_batch
def _dynamic_slice_batch(args, dims, *, slice_sizes):
    from fgrad.lax.indexing import gather

    (x, *idx), (xd, *idims) = args, dims
    size = batch_size(args, dims)
    if all(d is None for d in idims):
        # Shared start indices: slice the whole batch axis along with the others.
        idx.insert(xd, asarray_operand(0, np.int32))
        sizes = list(slice_sizes)
        sizes.insert(xd, size)
        return dynamic_slice_p.bind(x, *idx, slice_sizes=tuple(sizes)), xd
    # Per-example starts: a gather of each example's window from the flattened operand.
    shape = logical_shape(x, xd)
    pos = _window_positions(shape, idx, idims, tuple(slice_sizes), size, xd is not None)
    n = math.prod(shape)
    if xd is None:
        return gather(reshape(x, (n,)), pos), 0
    return gather(reshape(to_front(x, xd, size), (size * n,)), pos), 0


def _window_positions(shape, starts, start_dims, window, size, offset_batches: bool):
    """Flat row-major positions of a ``window`` at per-example starts (negative ones
    counted from the end, then clamped, as the impls do).

    Returns an int array of shape ``(size, *window)``: example b's window inside a
    ``shape`` array, plus ``b * prod(shape)`` when ``offset_batches`` (positions in
    the flattened batch of such arrays).
    """
    from fgrad.lax import elementwise as ew

    nd = len(shape)
    n = math.prod(shape)
    itype = np.dtype(np.int32 if n * size < 2**31 - 1 else np.int64)
    strides = [math.prod(shape[k + 1 :]) for k in range(nd)]
    offsets = np.zeros(window, dtype=itype)
    for k in range(nd):
        axis = np.arange(window[k], dtype=itype).reshape([-1 if j == k else 1 for j in range(nd)])
        offsets = offsets + axis * strides[k]
    base = asarray_operand(0, itype)
    for k, (s, d) in enumerate(zip(starts, start_dims, strict=True)):
        s = ew.convert_element_type(s, itype)
        s = ew.select_n(ew.lt(s, 0), s, ew.add(s, asarray_operand(shape[k], itype)))
        s = ew.max(s, asarray_operand(0, itype))
        s = ew.min(s, asarray_operand(shape[k] - window[k], itype))
        s = ew.mul(s, asarray_operand(strides[k], itype))
        base = ew.add(base, s if d is None else moveaxis(s, d, 0))
    if offset_batches:
        base = ew.add(base, Array(np.arange(size, dtype=itype) * itype.type(n)))
    full = (size,) + tuple(window)
    base = broadcast_in_dim(base, full, () if len(base.shape) == 0 else (0,))
    return ew.add(base, broadcast_in_dim(Array(offsets), full, tuple(range(1, nd + 1))))


def dynamic_slice(operand, start_indices: Sequence[Any], slice_sizes: Sequence[int]):
    """Slice of static size at traced start indices; as in JAX, a negative start counts
    from the end, and starts are clamped so the slice stays in bounds."""
    operand = asarray_operand(operand)
    idx = [asarray_operand(i) for i in start_indices]
    idx = [i if i.dtype == np.int32 else _to_int32(i) for i in idx]
    return dynamic_slice_p.bind(operand, *idx, slice_sizes=tuple(int(k) for k in slice_sizes))


def _to_int32(i):
    from fgrad.lax.elementwise import convert_element_type

    return convert_element_type(i, np.int32)


# ---------------------------------------------------------------- dynamic_update_slice

dynamic_update_slice_p = Primitive("dynamic_update_slice")


@dynamic_update_slice_p.def_shape
def _dus_shape(x: ShapedArray, update: ShapedArray, *idx: ShapedArray) -> ShapedArray:
    check_same_dtypes("", x, update)
    if update.ndim != x.ndim or len(idx) != x.ndim:
        raise TypeError(
            f"update {update.shape} and {len(idx)} start indices must match operand rank {x.ndim}"
        )
    if any(u > n for u, n in zip(update.shape, x.shape)):
        raise TypeError(f"update {update.shape} is larger than operand {x.shape}")
    for i in idx:
        if i.shape != () or not np.issubdtype(i.dtype, np.integer):
            raise TypeError(f"start indices must be integer scalars, got {i.str_short()}")
    return x


@dynamic_update_slice_p.def_impl
def _dus_impl(x, update, *idx):
    starts = _clamp_starts(idx, x.shape, update.shape)
    out = np.array(x, copy=True)
    out[tuple(np.s_[s : s + k] for s, k in zip(starts, update.shape))] = update
    return out


@dynamic_update_slice_p.def_vjp
def _dus_vjp(ct, x, update, *idx, out):
    zeros = full(update.shape, 0, ct.dtype)
    ct_x = dynamic_update_slice(ct, zeros, idx)
    ct_update = dynamic_slice(ct, idx, tuple(update.shape))
    return (ct_x, ct_update) + (None,) * len(idx)


@dynamic_update_slice_p.def_jvp
def _dus_jvp(ts, x, update, *idx, out):
    if ts[0] is None and ts[1] is None:
        return None
    tx = x * 0 if ts[0] is None else ts[0]
    tu = update * 0 if ts[1] is None else ts[1]
    return dynamic_update_slice(tx, tu, idx)


@dynamic_update_slice_p.def_batch
def _dus_batch(args, dims):
    from fgrad.lax.indexing import scatter_p

    (x, update, *idx), (xd, ud, *idims) = args, dims
    size = batch_size(args, dims)
    x = to_front(x, xd, size)
    update = to_front(update, ud, size)
    if all(d is None for d in idims):
        zero = asarray_operand(0, np.int32)
        return dynamic_update_slice_p.bind(x, update, zero, *idx), 0
    # Per-example starts: scatter each example's update into the flattened batch.
    shape = tuple(x.shape[1:])
    pos = _window_positions(shape, idx, idims, tuple(update.shape[1:]), size, True)
    n = math.prod(shape)
    flat = scatter_p.bind(reshape(x, (size * n,)), pos, update, mode="set")
    return reshape(flat, (size,) + shape), 0


def dynamic_update_slice(operand, update, start_indices: Sequence[Any]):
    """Write ``update`` into ``operand`` at traced start indices (negative ones count
    from the end; then clamped so the update fits, as in JAX)."""
    operand, update = promote_scalars(operand, update)
    idx = [asarray_operand(i) for i in start_indices]
    idx = [i if i.dtype == np.int32 else _to_int32(i) for i in idx]
    return dynamic_update_slice_p.bind(operand, update, *idx)
