"""Sliding-window reductions: ``reduce_window`` with ``lax.add`` (sum/avg pooling) or
``lax.max`` (max pooling), over any rank.

Three primitives, all with explicit ``(low, high)`` padding per axis:

* ``reduce_window_sum``: pads with 0. Its VJP is again a windowed sum, of the
  cotangent dilated by the strides and padded by ``window - 1`` (the same identity that
  turns a strided convolution's gradient into a convolution).
* ``reduce_window_max``: pads with -inf (the dtype's lowest value for integers). The
  whole gradient of a window goes to its *first* maximal element in row-major window
  order, as JAX's ``select_and_scatter_add`` with ``ge`` does. Its VJP is that
  primitive:
* ``select_and_scatter_add(source, operand)``: ``source`` (one element per window)
  added at each window's first maximum of ``operand``; backends run it as one pass.

The JVP of ``reduce_window_max`` and the transpose of ``select_and_scatter_add`` need
the maxima's positions as values: a constant table of each window's flat positions in
the padded operand (built with NumPy from the static shapes), ``gather`` and ``argmax``
find them, and a ``gather`` reads the tangent (or cotangent) there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad.core import Primitive, ShapedArray, Tracer, user_frame
from fgrad.lax import elementwise
from fgrad.lax.convolution import _pad_np, padtype_to_pads, stride_dim
from fgrad.lax.elementwise import add, stop_gradient
from fgrad.lax.indexing import gather
from fgrad.lax.reductions import argmax
from fgrad.lax.shapes import full, pad, reshape
from fgrad.lax.utils import asarray_operand


def _lowest(dtype: np.dtype):
    """Identity of max: -inf for floats, the smallest integer, False for bools."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min
    return False


def _window_shape(x: ShapedArray, *, window_dimensions, window_strides, padding) -> ShapedArray:
    nd = x.ndim
    if not len(window_dimensions) == len(window_strides) == len(padding) == nd:
        raise TypeError(
            f"window_dimensions {window_dimensions}, window_strides {window_strides} and "
            f"padding {padding} must each have one entry per operand axis ({nd})"
        )
    if any(w < 1 for w in window_dimensions) or any(s < 1 for s in window_strides):
        raise ValueError(
            f"window_dimensions {window_dimensions} and window_strides {window_strides} "
            f"must be positive"
        )
    shape = []
    for d, (n, w, s, (lo, hi)) in enumerate(
        zip(x.shape, window_dimensions, window_strides, padding, strict=True)
    ):
        if n + lo + hi < 0:
            raise ValueError(
                f"padding {(lo, hi)} on axis {d} is more negative than its size {n} allows"
            )
        shape.append(stride_dim(n + lo + hi, w, s))
    return ShapedArray(shape, x.dtype)


def _window_impl(reducer, pad_value):
    """Reference impl: pad, view every window, keep the strided ones, reduce them."""

    def impl(x, *, window_dimensions, window_strides, padding):
        out_shape = _window_shape(
            ShapedArray(x.shape, x.dtype),
            window_dimensions=window_dimensions,
            window_strides=window_strides,
            padding=padding,
        ).shape
        value = pad_value(x.dtype)
        if 0 in out_shape:
            return np.full(out_shape, value, x.dtype)
        nd = x.ndim
        xp = _pad_np(x, padding, (1,) * nd, value, range(nd))
        view = np.lib.stride_tricks.sliding_window_view(xp, window_dimensions)
        view = view[tuple(np.s_[::s] for s in window_strides)]
        return reducer(view, axis=tuple(range(nd, 2 * nd))).astype(x.dtype, copy=False)

    return impl


# ---------------------------------------------------------------- reduce_window_sum

reduce_window_sum_p = Primitive("reduce_window_sum")
reduce_window_sum_p.def_shape(_window_shape)
reduce_window_sum_p.def_impl(_window_impl(np.sum, lambda dtype: 0))


@reduce_window_sum_p.def_vjp
def _reduce_window_sum_vjp(ct, x, *, out, window_dimensions, window_strides, padding):
    nd = len(x.shape)
    if 0 in tuple(ct.shape) or 0 in tuple(x.shape):
        return (full(x.shape, 0, ct.dtype),)
    # Input position p receives ct[o] from every window o*s <= p' < o*s + w of the padded
    # operand: a stride-1 window sum over ct dilated by s and padded by w - 1 on each
    # side, with the forward padding cropped off again.
    config = []
    for n, w, s, (lo, hi), m in zip(
        x.shape, window_dimensions, window_strides, padding, ct.shape, strict=True
    ):
        padded = n + lo + hi
        config.append((w - 1 - lo, padded - (m - 1) * s - 1 - hi, s - 1))
    spread = pad(ct, 0, config)
    return (
        reduce_window_sum_p.bind(
            spread,
            window_dimensions=tuple(window_dimensions),
            window_strides=(1,) * nd,
            padding=((0, 0),) * nd,
        ),
    )


@reduce_window_sum_p.def_jvp
def _reduce_window_sum_jvp(ts, x, *, out, **params):
    return None if ts[0] is None else reduce_window_sum_p.bind(ts[0], **params)


def _window_batch_rule(prim: Primitive):
    """Batching rule: the batch axis is one more window axis, of size and stride 1."""

    def rule(args, dims, *, window_dimensions, window_strides, padding):
        (x,), (d,) = args, dims

        def at_d(seq, value):
            return tuple(seq[:d]) + (value,) + tuple(seq[d:])

        out = prim.bind(
            x,
            window_dimensions=at_d(window_dimensions, 1),
            window_strides=at_d(window_strides, 1),
            padding=at_d(padding, (0, 0)),
        )
        return out, d

    return rule


reduce_window_sum_p.def_batch(_window_batch_rule(reduce_window_sum_p))


# ---------------------------------------------------------------- reduce_window_max

reduce_window_max_p = Primitive("reduce_window_max")
reduce_window_max_p.def_shape(_window_shape)
reduce_window_max_p.def_impl(_window_impl(np.max, _lowest))


def _window_positions(padded_shape, out_shape, window_dimensions, window_strides):
    """Flat positions in the padded operand: of each window's start (shape ``out_shape``)
    and of each offset inside a window (row-major window order)."""
    elem_strides = np.cumprod((1,) + tuple(padded_shape[:0:-1]), dtype=np.int64)[::-1]
    starts = sum(
        np.arange(m, dtype=np.int64).reshape([-1 if i == d else 1 for i in range(len(out_shape))])
        * s
        * e
        for d, (m, s, e) in enumerate(zip(out_shape, window_strides, elem_strides, strict=True))
    )
    offsets = sum(
        np.arange(w, dtype=np.int64).reshape([-1 if i == d else 1 for i in range(len(out_shape))])
        * e
        for d, (w, e) in enumerate(zip(window_dimensions, elem_strides, strict=True))
    )
    itype = np.int32 if int(np.prod(padded_shape)) < 2**31 else np.int64
    starts = np.broadcast_to(starts, tuple(out_shape)).astype(itype)
    return starts, np.ravel(offsets).astype(itype)


def _argmax_positions(x, window_dimensions, window_strides, padding):
    """Flat position, in the padded operand, of each window's first maximal element.

    Returns ``(positions, padded_shape, config)``; positions has the output's shape.
    """
    nd = len(x.shape)
    config = [(lo, hi, 0) for lo, hi in padding]
    # Where the maximum sits is piecewise constant in x: no derivative flows through here.
    xp = pad(stop_gradient(x), _lowest(x.dtype), config)
    padded_shape = tuple(xp.shape)
    out_shape = tuple(
        stride_dim(n, w, s)
        for n, w, s in zip(padded_shape, window_dimensions, window_strides, strict=True)
    )
    starts, offsets = _window_positions(padded_shape, out_shape, window_dimensions, window_strides)
    table = starts[..., None] + offsets  # (*out_shape, window size)
    flat = reshape(xp, (int(np.prod(padded_shape)),))
    patches = gather(flat, asarray_operand(table))
    first = argmax(patches, nd, index_dtype=starts.dtype)  # argmax takes the first maximum
    positions = add(asarray_operand(starts), gather(asarray_operand(offsets), first))
    return positions, padded_shape, config


@reduce_window_max_p.def_vjp
def _reduce_window_max_vjp(ct, x, *, out, window_dimensions, window_strides, padding):
    if 0 in tuple(ct.shape) or 0 in tuple(x.shape):
        return (full(x.shape, 0, ct.dtype),)
    return (
        select_and_scatter_add_p.bind(
            ct,
            x,
            window_dimensions=window_dimensions,
            window_strides=window_strides,
            padding=padding,
        ),
    )


@reduce_window_max_p.def_jvp
def _reduce_window_max_jvp(ts, x, *, out, window_dimensions, window_strides, padding):
    if ts[0] is None:
        return None
    if 0 in tuple(out.shape) or 0 in tuple(x.shape):
        return full(out.shape, 0, out.dtype)
    positions, padded_shape, config = _argmax_positions(
        x, window_dimensions, window_strides, padding
    )
    t = reshape(pad(ts[0], 0, config), (int(np.prod(padded_shape)),))
    return gather(t, positions)


reduce_window_max_p.def_batch(_window_batch_rule(reduce_window_max_p))


# ---------------------------------------------------------------- select_and_scatter_add

# The VJP of reduce_window_max as one primitive (JAX's ``select_and_scatter_add`` with
# ``ge``): ``select_and_scatter_add(source, operand)`` has the operand's shape and adds
# each window's ``source`` element at that window's first maximum of ``operand``. It is
# linear in ``source``; where the maxima sit is piecewise constant in ``operand``, so
# no derivative flows to it. Backends run it as one pass over the windows instead of
# the position table, gather, argmax and scatter_add that it stands for.

select_and_scatter_add_p = Primitive("select_and_scatter_add")


@select_and_scatter_add_p.def_shape
def _select_and_scatter_add_shape(
    source: ShapedArray, operand: ShapedArray, *, window_dimensions, window_strides, padding
) -> ShapedArray:
    out = _window_shape(
        operand,
        window_dimensions=window_dimensions,
        window_strides=window_strides,
        padding=padding,
    )
    if tuple(source.shape) != tuple(out.shape):
        raise TypeError(
            f"source shape {tuple(source.shape)} must be the window output shape "
            f"{tuple(out.shape)} of the operand"
        )
    if source.dtype != operand.dtype:
        raise TypeError(
            f"source dtype {source.dtype.name} differs from the operand's {operand.dtype.name}"
        )
    return ShapedArray(operand.shape, operand.dtype)


@select_and_scatter_add_p.def_impl
def _select_and_scatter_add_impl(source, operand, *, window_dimensions, window_strides, padding):
    """Reference: each window's first maximum (row-major window order, padding -inf
    included) by ``argmax`` over a window view, then ``np.add.at`` there."""
    nd = operand.ndim
    out = np.zeros(operand.shape, source.dtype)
    if source.size == 0 or operand.size == 0:
        return out
    xp = _pad_np(operand, padding, (1,) * nd, _lowest(operand.dtype), range(nd))
    view = np.lib.stride_tricks.sliding_window_view(xp, window_dimensions)
    view = view[tuple(np.s_[::s] for s in window_strides)]
    out_shape = view.shape[:nd]
    first = np.argmax(view.reshape(out_shape + (-1,)), axis=-1)
    offsets = np.unravel_index(first, tuple(window_dimensions))
    coords = []
    for d in range(nd):
        start = np.arange(out_shape[d]).reshape([-1 if i == d else 1 for i in range(nd)])
        # Position in the unpadded operand (padding positions fall outside and drop).
        coords.append(start * window_strides[d] + offsets[d] - padding[d][0])
    coords = [np.broadcast_to(c, out_shape).ravel() for c in coords]
    keep = np.ones(coords[0].shape, bool)
    for d in range(nd):
        keep &= (coords[d] >= 0) & (coords[d] < operand.shape[d])
    np.add.at(out, tuple(c[keep] for c in coords), source.reshape(-1)[keep])
    return out


@select_and_scatter_add_p.def_vjp
def _select_and_scatter_add_vjp(ct, source, operand, *, out, **params):
    # Linear in source: its transpose gathers ct at each window's first maximum.
    positions, padded_shape, config = _argmax_positions(operand, **params)
    flat = reshape(pad(ct, 0, config), (int(np.prod(padded_shape)),))
    return gather(flat, positions), None


@select_and_scatter_add_p.def_jvp
def _select_and_scatter_add_jvp(ts, source, operand, *, out, **params):
    if ts[0] is None:
        return None
    return select_and_scatter_add_p.bind(ts[0], operand, **params)


@select_and_scatter_add_p.def_batch
def _select_and_scatter_add_batch(args, dims, *, window_dimensions, window_strides, padding):
    from fgrad.lax.batch_util import batch_size, to_front

    size = batch_size(args, dims)
    source, operand = (to_front(a, d, size) for a, d in zip(args, dims, strict=True))
    out = select_and_scatter_add_p.bind(
        source,
        operand,
        window_dimensions=(1, *window_dimensions),
        window_strides=(1, *window_strides),
        padding=((0, 0), *padding),
    )
    return out, 0


def select_and_scatter_add(source, operand, window_dimensions, window_strides, padding):
    """Add each window's ``source`` element at that window's first maximum of ``operand``
    (the VJP of ``reduce_window_max``; JAX's private ``_select_and_scatter_add`` with
    ``lax.ge``). ``padding`` is explicit ``(low, high)`` pairs or a padding name.

    Example:
        >>> import fgrad.numpy as fnp
        >>> x = fnp.asarray([1.0, 5.0, 3.0, 3.0])
        >>> select_and_scatter_add(fnp.asarray([10.0, 20.0]), x, (2,), (2,), "VALID").tolist()
        [0.0, 10.0, 20.0, 0.0]
    """
    operand = asarray_operand(operand)
    source = asarray_operand(source, operand.dtype)
    params = _window_params(
        operand, window_dimensions, window_strides, padding, "select_and_scatter_add"
    )
    return select_and_scatter_add_p.bind(source, operand, **params)


# ---------------------------------------------------------------- public functions


def _window_params(operand, window_dimensions, window_strides, padding, fn_name):
    nd = len(operand.shape)

    def ints(name, value):
        out = tuple(int(v) for v in value)
        if len(out) != nd:
            raise ValueError(
                f"{fn_name}: {name} {tuple(value)} must have one entry per axis of the "
                f"operand (shape {tuple(operand.shape)}) at {user_frame()}"
            )
        return out

    window_dimensions = ints("window_dimensions", window_dimensions)
    window_strides = (1,) * nd if window_strides is None else ints("window_strides", window_strides)
    if any(v < 1 for v in window_dimensions + window_strides):
        raise ValueError(
            f"{fn_name}: window_dimensions {window_dimensions} and window_strides "
            f"{window_strides} must be positive, at {user_frame()}"
        )
    if isinstance(padding, str):
        pads = padtype_to_pads(operand.shape, window_dimensions, window_strides, padding)
    else:
        pads = [(int(lo), int(hi)) for lo, hi in padding]
        if len(pads) != nd:
            raise ValueError(
                f"{fn_name}: padding {padding!r} must have one (low, high) pair per axis of "
                f"the operand (shape {tuple(operand.shape)}) at {user_frame()}"
            )
    return dict(
        window_dimensions=window_dimensions,
        window_strides=window_strides,
        padding=tuple(pads),
    )


def reduce_window_sum(operand, window_dimensions, window_strides=None, padding="VALID"):
    """Sum over sliding windows, zero-padded (fgrad's convenience form; JAX only has the
    primitive). ``reduce_window(x, 0., lax.add, ...)`` is the portable spelling.

    Example:
        >>> import fgrad.numpy as fnp
        >>> reduce_window_sum(fnp.asarray([1.0, 2.0, 3.0, 4.0]), (2,), (2,)).tolist()
        [3.0, 7.0]
    """
    operand = asarray_operand(operand)
    params = _window_params(
        operand, window_dimensions, window_strides, padding, "reduce_window_sum"
    )
    return reduce_window_sum_p.bind(operand, **params)


def reduce_window_max(operand, window_dimensions, window_strides=None, padding="VALID"):
    """Maximum over sliding windows, padded with -inf (fgrad's convenience form; JAX
    only has the primitive). The gradient of a window goes to its first maximum.

    Example:
        >>> import fgrad.numpy as fnp
        >>> reduce_window_max(fnp.asarray([1.0, 5.0, 3.0, 4.0]), (2,), (1,)).tolist()
        [5.0, 5.0, 4.0]
    """
    operand = asarray_operand(operand)
    params = _window_params(
        operand, window_dimensions, window_strides, padding, "reduce_window_max"
    )
    return reduce_window_max_p.bind(operand, **params)


def _concrete_scalar(value) -> Any:
    """The value of a concrete scalar init_value, or None when it is traced/non-scalar."""
    if isinstance(value, Tracer):
        value = value.concrete_value()
        if value is None:
            return None
    v = np.asarray(value)
    return v.item() if v.shape == () else None


def reduce_window(
    operand,
    init_value,
    computation,
    window_dimensions: Sequence[int],
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    base_dilation: Sequence[int] | None = None,
    window_dilation: Sequence[int] | None = None,
):
    """Reduce every window of ``operand`` with ``computation``, as ``jax.lax.reduce_window``.

    Args:
        operand: array of any rank.
        init_value: scalar start of each reduction (0 for sums, -inf for maxima); it
            joins each window's reduction once, and padding contributes nothing.
        computation: ``lax.add`` or ``lax.max`` (other reducers are not supported).
        window_dimensions: window size per axis.
        window_strides: stride per axis.
        padding: "SAME", "SAME_LOWER", "VALID" or ``(low, high)`` pairs per axis.
        base_dilation, window_dilation: must be None or all ones (unsupported otherwise).

    Returns:
        The reduced array, one element per window position.

    Example (2x2 max pooling of a 1x4x4x1 NHWC image):
        >>> import numpy as np, fgrad.numpy as fnp
        >>> from fgrad import lax
        >>> x = fnp.asarray(np.arange(16.0).reshape(1, 4, 4, 1))
        >>> y = reduce_window(x, -np.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        >>> y.reshape(2, 2).tolist()
        [[5.0, 7.0], [13.0, 15.0]]
    """
    for name, dil in (("base_dilation", base_dilation), ("window_dilation", window_dilation)):
        if dil is not None and any(int(d) != 1 for d in dil):
            raise ValueError(
                f"reduce_window: {name}={tuple(dil)} is unsupported in fgrad (only ones) "
                f"at {user_frame()}"
            )
    if computation is elementwise.add:
        prim, identity, name = reduce_window_sum_p, 0, "add"
    elif computation is elementwise.max:
        prim, identity, name = reduce_window_max_p, None, "max"
    else:
        raise ValueError(
            f"reduce_window: computation {getattr(computation, '__name__', computation)!r} "
            f"is unsupported; fgrad recognises lax.add and lax.max, at {user_frame()}"
        )
    operand = asarray_operand(operand)
    if identity is None:
        identity = _lowest(operand.dtype)
    init = asarray_operand(init_value, operand.dtype)
    if tuple(init.shape) != ():
        raise TypeError(f"reduce_window: init_value must be a scalar, got shape {init.shape}")
    if init.dtype != operand.dtype:
        raise TypeError(
            f"reduce_window: init_value dtype {init.dtype.name} differs from the operand's "
            f"{operand.dtype.name} at {user_frame()}"
        )
    params = _window_params(operand, window_dimensions, window_strides, padding, "reduce_window")
    if _concrete_scalar(init_value) == identity:
        return prim.bind(operand, **params)
    # A non-identity init joins each window's reduction once; padding adds nothing more
    # (what JAX computes on the CPU).
    combine = elementwise.max if name == "max" else add
    return combine(prim.bind(operand, **params), init)
