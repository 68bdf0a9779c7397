"""Reductions over axes: sum, max, min, prod, argmax/argmin, cumsum, argsort."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fgrad.core import Primitive, ShapedArray
from fgrad.lax.batch_util import phys_axis
from fgrad.lax.elementwise import convert_element_type, eq, select_n
from fgrad.lax.shapes import broadcast_in_dim, reshape, transpose
from fgrad.lax.utils import asarray_operand, canonical_axes


def _reduce_shape(x: ShapedArray, *, axes) -> ShapedArray:
    for a in axes:
        if not 0 <= a < x.ndim:
            raise TypeError(f"axis {a} out of range for rank {x.ndim}")
    return ShapedArray(tuple(n for i, n in enumerate(x.shape) if i not in axes), x.dtype)


def _reduce_batch_rule(prim: Primitive):
    """Batching rule of a reduction over ``axes``: reduce the same axes around the batch."""

    def rule(args, dims, *, axes):
        d = dims[0]
        phys = tuple(phys_axis(a, d) for a in axes)
        return prim.bind(args[0], axes=phys), d - sum(1 for a in phys if a < d)

    return rule


def _expand_back(ct, x_shape, axes):
    """Broadcast a reduced cotangent back over the reduced axes."""
    kept = tuple(i for i in range(len(x_shape)) if i not in axes)
    return broadcast_in_dim(ct, tuple(x_shape), kept)


# ---------------------------------------------------------------- reduce_sum

reduce_sum_p = Primitive("reduce_sum")
reduce_sum_p.def_shape(_reduce_shape)
reduce_sum_p.def_impl(lambda x, *, axes: np.sum(x, axis=axes, dtype=x.dtype))
reduce_sum_p.def_vjp(lambda ct, x, *, out, axes: (_expand_back(ct, x.shape, axes),))
reduce_sum_p.def_jvp(lambda ts, x, *, out, axes: reduce_sum(ts[0], axes))
reduce_sum_p.def_batch(_reduce_batch_rule(reduce_sum_p))


def reduce_sum(operand, axes: Sequence[int]):
    """Sum over ``axes``."""
    operand = asarray_operand(operand)
    axes = canonical_axes(axes, len(operand.shape))
    if not axes:
        return operand
    return reduce_sum_p.bind(operand, axes=axes)


# ---------------------------------------------------------------- reduce_max / reduce_min


def _chooser_rule(x, out, axes):
    # Ties share the gradient equally, as in JAX's reduce_max JVP.
    hits = eq(x, _expand_back(out, x.shape, axes))
    weights = convert_element_type(hits, x.dtype)
    counts = reduce_sum(weights, axes)
    return weights / _expand_back(counts, x.shape, axes)


def _reduce_chooser(name: str, impl, identity) -> Primitive:
    p = Primitive(name)
    p.def_shape(_reduce_shape)
    # ``initial``: an empty reduction gives the identity (-inf for max), as in lax.
    p.def_impl(lambda x, *, axes: impl(x, axis=axes, initial=identity(x.dtype)))
    p.def_vjp(
        lambda ct, x, *, out, axes: (_expand_back(ct, x.shape, axes) * _chooser_rule(x, out, axes),)
    )
    p.def_jvp(lambda ts, x, *, out, axes: reduce_sum(ts[0] * _chooser_rule(x, out, axes), axes))
    p.def_batch(_reduce_batch_rule(p))
    return p


def _lowest(dtype):
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    return np.iinfo(dtype).min if np.issubdtype(dtype, np.integer) else False


def _highest(dtype):
    if np.issubdtype(dtype, np.floating):
        return np.inf
    return np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else True


reduce_max_p = _reduce_chooser("reduce_max", np.max, _lowest)
reduce_min_p = _reduce_chooser("reduce_min", np.min, _highest)


def reduce_max(operand, axes: Sequence[int]):
    """Maximum over ``axes``; tied maxima share the gradient equally."""
    operand = asarray_operand(operand)
    axes = canonical_axes(axes, len(operand.shape))
    return reduce_max_p.bind(operand, axes=axes) if axes else operand


def reduce_min(operand, axes: Sequence[int]):
    """Minimum over ``axes``; tied minima share the gradient equally."""
    operand = asarray_operand(operand)
    axes = canonical_axes(axes, len(operand.shape))
    return reduce_min_p.bind(operand, axes=axes) if axes else operand


# ---------------------------------------------------------------- reduce_prod

reduce_prod_p = Primitive("reduce_prod")
reduce_prod_p.def_shape(_reduce_shape)
reduce_prod_p.def_impl(lambda x, *, axes: np.prod(x, axis=axes, dtype=x.dtype))


def _prod_of_others(x, axes):
    """d prod / d x_i = product of all other reduced entries; exact with zeros too."""
    nd = len(x.shape)
    kept = [i for i in range(nd) if i not in axes]
    perm = kept + list(axes)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    kept_shape = tuple(x.shape[i] for i in kept)
    flat = reshape(transpose(x, perm), kept_shape + (n,))
    # others[..., i, j] = x[..., j] if j != i else 1; its product over j leaves out i.
    rep = broadcast_in_dim(flat, kept_shape + (n, n), tuple(range(len(kept))) + (len(kept) + 1,))
    eye = asarray_operand(np.eye(n, dtype=bool))
    eye = broadcast_in_dim(eye, kept_shape + (n, n), (len(kept), len(kept) + 1))
    others = reduce_prod(select_n(eye, rep, rep * 0.0 + 1.0), (len(kept) + 1,))
    unflat = reshape(others, kept_shape + tuple(x.shape[a] for a in axes))
    return transpose(unflat, tuple(np.argsort(perm)))


reduce_prod_p.def_vjp(
    lambda ct, x, *, out, axes: (_expand_back(ct, x.shape, axes) * _prod_of_others(x, axes),)
)
reduce_prod_p.def_jvp(
    lambda ts, x, *, out, axes: reduce_sum(ts[0] * _prod_of_others(x, axes), axes)
)
reduce_prod_p.def_batch(_reduce_batch_rule(reduce_prod_p))


def reduce_prod(operand, axes: Sequence[int]):
    """Product over ``axes``."""
    operand = asarray_operand(operand)
    axes = canonical_axes(axes, len(operand.shape))
    return reduce_prod_p.bind(operand, axes=axes) if axes else operand


# ---------------------------------------------------------------- argmax / argmin (integer)


def _arg_shape(x: ShapedArray, *, axis, index_dtype) -> ShapedArray:
    if not 0 <= axis < x.ndim:
        raise TypeError(f"axis {axis} out of range for rank {x.ndim}")
    if x.shape[axis] == 0:
        raise TypeError("attempt to get argmax/argmin of an empty axis")
    return ShapedArray(tuple(n for i, n in enumerate(x.shape) if i != axis), index_dtype)


argmax_p = Primitive("argmax")
argmax_p.def_shape(_arg_shape)
argmax_p.def_impl(lambda x, *, axis, index_dtype: np.argmax(x, axis=axis).astype(index_dtype))
argmax_p.differentiable = False

argmin_p = Primitive("argmin")
argmin_p.def_shape(_arg_shape)
argmin_p.def_impl(lambda x, *, axis, index_dtype: np.argmin(x, axis=axis).astype(index_dtype))
argmin_p.differentiable = False


def _arg_batch_rule(prim: Primitive):
    def rule(args, dims, *, axis, index_dtype):
        d = dims[0]
        phys = phys_axis(axis, d)
        out_dim = d - 1 if phys < d else d
        return prim.bind(args[0], axis=phys, index_dtype=index_dtype), out_dim

    return rule


argmax_p.def_batch(_arg_batch_rule(argmax_p))
argmin_p.def_batch(_arg_batch_rule(argmin_p))


def argmax(operand, axis: int, index_dtype=np.int32):
    """Index of the first maximum along ``axis``."""
    operand = asarray_operand(operand)
    axis = canonical_axes(axis, len(operand.shape))[0]
    return argmax_p.bind(operand, axis=axis, index_dtype=np.dtype(index_dtype))


def argmin(operand, axis: int, index_dtype=np.int32):
    """Index of the first minimum along ``axis``."""
    operand = asarray_operand(operand)
    axis = canonical_axes(axis, len(operand.shape))[0]
    return argmin_p.bind(operand, axis=axis, index_dtype=np.dtype(index_dtype))


# ---------------------------------------------------------------- cumsum

cumsum_p = Primitive("cumsum")


@cumsum_p.def_shape
def _cumsum_shape(x: ShapedArray, *, axis, reverse) -> ShapedArray:
    if not 0 <= axis < x.ndim:
        raise TypeError(f"axis {axis} out of range for rank {x.ndim}")
    return x


@cumsum_p.def_impl
def _cumsum_impl(x, *, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=x.dtype), axis)
    return np.cumsum(x, axis=axis, dtype=x.dtype)


cumsum_p.def_vjp(lambda ct, x, *, out, axis, reverse: (cumsum(ct, axis, reverse=not reverse),))
cumsum_p.def_jvp(lambda ts, x, *, out, axis, reverse: cumsum(ts[0], axis, reverse=reverse))
cumsum_p.def_batch(
    lambda args, dims, *, axis, reverse: (
        cumsum_p.bind(args[0], axis=phys_axis(axis, dims[0]), reverse=reverse),
        dims[0],
    )
)


def cumsum(operand, axis: int = 0, reverse: bool = False):
    """Cumulative sum along ``axis`` (from the end if ``reverse``)."""
    operand = asarray_operand(operand)
    axis = canonical_axes(axis, len(operand.shape))[0]
    return cumsum_p.bind(operand, axis=axis, reverse=bool(reverse))


# ---------------------------------------------------------------- argsort (integer)

argsort_p = Primitive("argsort")


@argsort_p.def_shape
def _argsort_shape(x: ShapedArray, *, axis, descending) -> ShapedArray:
    if not 0 <= axis < x.ndim:
        raise TypeError(f"axis {axis} out of range for rank {x.ndim}")
    return ShapedArray(x.shape, np.int32)


@argsort_p.def_impl
def _argsort_impl(x, *, axis, descending):
    if descending:
        # Stable descending order: sort the reversed array, map indices back.
        n = x.shape[axis]
        idx = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        return np.flip(n - 1 - idx, axis).astype(np.int32)
    return np.argsort(x, axis=axis, kind="stable").astype(np.int32)


argsort_p.differentiable = False
argsort_p.def_batch(
    lambda args, dims, *, axis, descending: (
        argsort_p.bind(args[0], axis=phys_axis(axis, dims[0]), descending=descending),
        dims[0],
    )
)


def argsort(operand, axis: int = -1, descending: bool = False):
    """Stable sorting permutation along ``axis`` (int32)."""
    operand = asarray_operand(operand)
    axis = canonical_axes(axis, len(operand.shape))[0]
    return argsort_p.bind(operand, axis=axis, descending=bool(descending))
