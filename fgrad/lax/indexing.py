"""Gather and scatter along the leading axis: the primitives behind indexing and ``.at[]``.

``fgrad.numpy`` lowers every integer/boolean/slice index expression to a flat
position array over the leading axis (see ``fgrad.numpy._index_positions``), so two
small primitives carry all of NumPy-style advanced indexing:

* ``gather(operand, indices)``: ``operand[indices]`` along axis 0 (indices clamped,
  as JAX's default out-of-bounds mode for gathers);
* ``scatter(operand, indices, updates, mode)``: ``operand.at[indices].<mode>(updates)``
  with mode ``add``, ``set``, ``mul``, ``min`` or ``max``; out-of-bounds updates are
  dropped, as in JAX.
"""

from __future__ import annotations

import numpy as np

from fgrad.core import Array, Primitive, ShapedArray, is_float_dtype
from fgrad.lax import elementwise as ew
from fgrad.lax.batch_util import batch_size, bdim_at, moveaxis, to_front
from fgrad.lax.elementwise import convert_element_type, eq
from fgrad.lax.utils import asarray_operand, check_same_dtypes


def _check_indices(idx: ShapedArray) -> None:
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indices must be integers, got {idx.dtype.name}")


# ---------------------------------------------------------------- gather

gather_p = Primitive("gather")


@gather_p.def_shape
def _gather_shape(x: ShapedArray, idx: ShapedArray) -> ShapedArray:
    _check_indices(idx)
    if x.ndim == 0:
        raise TypeError("cannot index a rank-0 array")
    if x.shape[0] == 0 and idx.size > 0:
        raise TypeError("cannot gather from an empty axis")
    return ShapedArray(idx.shape + x.shape[1:], x.dtype)


@gather_p.def_impl
def _gather_impl(x, idx):
    n = x.shape[0]
    return np.take(x, np.clip(np.where(idx < 0, idx + n, idx), 0, max(n - 1, 0)), axis=0)


def _clamped(idx, n: int):
    """The positions the gather impl reads: negative indices wrap, then all clamp."""
    wrapped = ew.select_n(ew.lt(idx, 0), idx, ew.add(idx, n))
    return ew.max(ew.min(wrapped, max(n - 1, 0)), 0)


# The cotangent goes where the forward read, so to the clamped position (a scatter_add
# with the raw index would drop out-of-range ones).
gather_p.def_vjp(
    lambda ct, x, idx, *, out: (
        scatter_add(_full(x.shape, 0, ct.dtype), _clamped(idx, x.shape[0]), ct),
        None,
    )
)
gather_p.def_jvp(lambda ts, x, idx, *, out: None if ts[0] is None else gather(ts[0], idx))


@gather_p.def_batch
def _gather_batch(args, dims):
    from fgrad.lax.shapes import reshape

    (x, idx), (xd, id_) = args, dims
    if id_ is None:
        # Shared indices: take along axis 0 with the batch axis kept out of the way.
        if xd == 0:
            x, xd = moveaxis(x, 0, 1), 1
        return gather_p.bind(x, idx), len(idx.shape) + xd - 1
    if xd is None:
        return gather_p.bind(x, idx), id_
    # Both batched: example b's rows live at b * n + i of the flattened batch.
    size = x.shape[xd]
    x = moveaxis(x, xd, 0)
    n, rest = x.shape[1], tuple(x.shape[2:])
    idx = _batch_offset_indices(moveaxis(idx, id_, 0), n, size, clamp=True)
    return gather_p.bind(reshape(x, (size * n,) + rest), idx), 0


def _batch_offset_indices(idx, n: int, size: int, clamp: bool):
    """Per-example indices (batch axis first) into the flattened ``(size * n)`` axis.

    Negative indices wrap first. Then, for a gather, out-of-range ones clamp into their
    own example (``clamp``); for a scatter they become ``size * n``, which the scatter
    drops, so they cannot spill into a neighbouring example.
    """
    from fgrad.lax.shapes import broadcast_in_dim

    itype = np.dtype(np.int64 if size * n >= 2**31 - 1 else idx.dtype)
    if idx.dtype != itype:
        idx = convert_element_type(idx, itype)
    wrapped = ew.select_n(ew.lt(idx, 0), idx, ew.add(idx, asarray_operand(n, itype)))
    offsets = Array(np.arange(size, dtype=itype) * itype.type(n))
    offsets = broadcast_in_dim(offsets, tuple(idx.shape), (0,))
    if clamp:
        inside = ew.max(ew.min(wrapped, asarray_operand(max(n - 1, 0), itype)), 0)
        return ew.add(inside, offsets)
    valid = ew.bitwise_and(ew.ge(wrapped, 0), ew.lt(wrapped, n))
    dropped = broadcast_in_dim(asarray_operand(size * n, itype), tuple(idx.shape), ())
    return ew.select_n(valid, dropped, ew.add(wrapped, offsets))


def gather(operand, indices):
    """``operand[indices]`` along the leading axis; negative indices wrap, others clamp.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import lax
        >>> lax.indexing.gather(fnp.asarray([10., 20., 30.]), fnp.asarray([2, 0])).tolist()
        [30.0, 10.0]
    """
    return gather_p.bind(asarray_operand(operand), asarray_operand(indices))


# ---------------------------------------------------------------- scatter

scatter_p = Primitive("scatter")
_SCATTER_MODES = ("add", "set", "mul", "min", "max")


@scatter_p.def_shape
def _scatter_shape(x: ShapedArray, idx: ShapedArray, u: ShapedArray, *, mode) -> ShapedArray:
    _check_indices(idx)
    if mode not in _SCATTER_MODES:
        raise TypeError(f"unknown scatter mode {mode!r}; expected one of {_SCATTER_MODES}")
    check_same_dtypes("", x, u)
    if x.ndim == 0:
        raise TypeError("cannot index a rank-0 array")
    want = idx.shape + x.shape[1:]
    if u.shape != want:
        raise TypeError(f"updates of shape {u.shape} do not fit indices {idx.shape}: need {want}")
    return x


_UFUNCS = {"add": np.add, "mul": np.multiply, "min": np.minimum, "max": np.maximum}


@scatter_p.def_impl
def _scatter_impl(x, idx, u, *, mode):
    n = x.shape[0]
    idx = np.where(idx < 0, idx + n, idx).reshape(-1)
    u = u.reshape((idx.size,) + x.shape[1:])
    keep = (idx >= 0) & (idx < n)  # out-of-bounds updates are dropped (JAX's mode)
    idx, u = idx[keep], u[keep]
    out = np.array(x, copy=True)
    if mode == "set":
        out[idx] = u
    else:
        _UFUNCS[mode].at(out, idx, u)
    return out


def _gather_kept(v, idx):
    """``gather(v, idx)``, zero where the scatter impl drops the update (index outside
    ``[-n, n)``): a dropped update has no effect, so it gets no cotangent."""
    from fgrad.lax.shapes import broadcast_in_dim

    n = v.shape[0]
    g = gather(v, idx)
    kept = ew.bitwise_and(ew.ge(idx, -n), ew.lt(idx, n))
    kept = broadcast_in_dim(kept, tuple(g.shape), tuple(range(len(idx.shape))))
    return ew.select_n(kept, _full(g.shape, 0, g.dtype), g)


def _chooser_weights(x, idx, u, out):
    """min/max: 1 where the operand entry / an update produced the output, and the
    number of such contributors per entry; ties share the derivative (JAX's rule)."""
    x_won = convert_element_type(eq(x, out), out.dtype)
    u_won = convert_element_type(eq(u, gather(out, idx)), out.dtype)
    count = x_won + scatter_add(_full(x.shape, 0, out.dtype), idx, u_won)  # drops as forward
    return x_won, u_won, count


@scatter_p.def_vjp
def _scatter_vjp(ct, x, idx, u, *, out, mode):
    if mode == "add":
        return ct, None, _gather_kept(ct, idx)
    if mode == "set":
        ct_x = scatter(ct, idx, _full(u.shape, 0, ct.dtype), "set")
        return ct_x, None, _gather_kept(ct, idx)
    if mode == "mul":
        # Exact for unique indices: out[i] = x[i] * u, so d/du = x[i], d/dx = u.
        ct_x = scatter(ct, idx, u, "mul")
        return ct_x, None, _gather_kept(ct * x, idx)
    x_won, u_won, count = _chooser_weights(x, idx, u, out)
    share = ct / count
    return share * x_won, None, _gather_kept(share, idx) * u_won


@scatter_p.def_jvp
def _scatter_jvp(ts, x, idx, u, *, out, mode):
    tx, tu = ts[0], ts[2]
    if tx is None and tu is None:
        return None
    tx = _full(x.shape, 0, out.dtype) if tx is None else tx
    tu = _full(u.shape, 0, out.dtype) if tu is None else tu
    if mode in ("add", "set"):
        return scatter(tx, idx, tu, mode)
    if mode == "mul":
        # d(x_i * u) = tx_i * u + x_i * tu, written as scatter of the full differential.
        return scatter(tx, idx, u, "mul") + scatter(
            _full(x.shape, 0, out.dtype), idx, gather(x, idx) * tu, "add"
        )
    if not is_float_dtype(out.dtype):
        return tx
    x_won, u_won, count = _chooser_weights(x, idx, u, out)
    return scatter(tx * x_won, idx, tu * u_won, "add") / count


@scatter_p.def_batch
def _scatter_batch(args, dims, *, mode):
    from fgrad.lax.shapes import reshape

    (x, idx, u), (xd, id_, ud) = args, dims
    size = batch_size(args, dims)
    if id_ is None:
        # Shared indices: the batch rides along as axis 1 of the operand and the
        # matching axis of the updates.
        x = bdim_at(x, xd, size, 1)
        u = bdim_at(u, ud, size, len(idx.shape))
        return scatter_p.bind(x, idx, u, mode=mode), 1
    # Per-example indices: scatter into the flattened batch with offset indices.
    x = to_front(x, xd, size)
    n, rest = x.shape[1], tuple(x.shape[2:])
    idx = _batch_offset_indices(to_front(idx, id_, size), n, size, clamp=False)
    u = to_front(u, ud, size)
    out = scatter_p.bind(reshape(x, (size * n,) + rest), idx, u, mode=mode)
    return reshape(out, (size, n) + rest), 0


def scatter(operand, indices, updates, mode: str = "set"):
    """``operand.at[indices].<mode>(updates)`` along the leading axis."""
    operand = asarray_operand(operand)
    updates = asarray_operand(updates, operand.dtype)
    if updates.dtype != operand.dtype:
        updates = convert_element_type(updates, operand.dtype)
    return scatter_p.bind(operand, asarray_operand(indices), updates, mode=mode)


def scatter_add(operand, indices, updates):
    """Add ``updates`` into ``operand`` at ``indices`` (duplicates accumulate)."""
    return scatter(operand, indices, updates, "add")


def _full(shape, fill_value, dtype):
    # shapes imports this module's primitives, so its helper is imported on call.
    from fgrad.lax.shapes import full

    return full(shape, fill_value, dtype)
