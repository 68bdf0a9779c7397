"""conv_general_dilated: N-d convolution with strides, padding, dilations and groups.

The primitive works in one canonical layout, channels last:

* lhs ``(N, *spatial, C)`` (NHWC), rhs ``(*window, I, O)`` (HWIO), out ``(N, *spatial, O)``,

and the public ``conv_general_dilated`` (``jax.lax``'s signature) transposes any other
``dimension_numbers`` layout in and out. Like XLA's convolution it is a cross-correlation:

    out[n, o, c] = sum_{k, i} xp[n, o * stride + k * rhs_dilation, g * I + i] * w[k, i, c]

where ``xp`` is lhs dilated by ``lhs_dilation`` (``lhs_dilation - 1`` zeros between
elements) and then padded by ``padding`` (negative padding crops), and ``g = c // (O / G)``
is the feature group of output channel ``c``.

Both VJPs are convolutions again (so any order of derivative works):

* d lhs: the cotangent, dilated by the forward stride, correlated with the spatially
  flipped kernel whose I/O axes are swapped within each group; then a strided slice
  undoes ``lhs_dilation``.
* d rhs: the (dilated, padded) lhs correlated with the cotangent as the kernel; the
  batch axis becomes the contracted channel axis, the forward ``rhs_dilation`` becomes
  the stride and the forward stride becomes the kernel dilation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from fgrad.core import FgradTypeError, Primitive, ShapedArray, user_frame
from fgrad.lax.elementwise import add, convert_element_type
from fgrad.lax.indexing import gather
from fgrad.lax.shapes import full, reshape, slice, transpose
from fgrad.lax.utils import asarray_operand, check_same_dtypes

# ---------------------------------------------------------------- shared shape helpers


def dilate_dim(size: int, dilation: int) -> int:
    """Length of an axis of ``size`` with ``dilation - 1`` holes between elements."""
    return 0 if size == 0 else (size - 1) * dilation + 1


def stride_dim(size: int, window: int, stride: int) -> int:
    """Number of windows of ``window`` elements, ``stride`` apart, that fit in ``size``."""
    return max(0, (size - window) // stride + 1)


def padtype_to_pads(
    in_shape: Sequence[int],
    window_shape: Sequence[int],
    window_strides: Sequence[int],
    padding: str,
) -> list[tuple[int, int]]:
    """Explicit ``(low, high)`` pads for "SAME", "SAME_LOWER" or "VALID" (as JAX).

    "SAME" pads so that the output has ``ceil(in / stride)`` elements, the odd element
    of padding going to the high side; "SAME_LOWER" puts it on the low side.

    Example:
        >>> padtype_to_pads((5, 6), (3, 2), (2, 1), "SAME")
        [(1, 1), (0, 1)]
    """
    kind = padding.upper() if isinstance(padding, str) else padding
    if kind == "VALID":
        return [(0, 0)] * len(in_shape)
    if kind not in ("SAME", "SAME_LOWER"):
        raise ValueError(
            f"unrecognized padding {padding!r}: expected 'VALID', 'SAME', 'SAME_LOWER' "
            f"or a sequence of (low, high) pairs"
        )
    pads = []
    for n, w, s in zip(in_shape, window_shape, window_strides, strict=True):
        out = -(-n // s)  # ceil(n / s)
        total = max((out - 1) * s + w - n, 0)
        small, big = total // 2, total - total // 2
        pads.append((small, big) if kind == "SAME" else (big, small))
    return pads


def _pad_np(x: np.ndarray, pads, dilation, value, axes) -> np.ndarray:
    """Dilate and pad (negative pads crop) ``axes`` of a NumPy array with ``value``."""
    shape, holes = list(x.shape), [np.s_[:]] * x.ndim
    for a, d in zip(axes, dilation, strict=True):
        shape[a] = dilate_dim(x.shape[a], d)
        holes[a] = np.s_[::d]
    out = np.full(shape, value, dtype=x.dtype)
    out[tuple(holes)] = x
    widths, crop = [(0, 0)] * x.ndim, [np.s_[:]] * x.ndim
    for a, (lo, hi) in zip(axes, pads, strict=True):
        widths[a] = (max(lo, 0), max(hi, 0))
        crop[a] = np.s_[max(-lo, 0) : shape[a] + max(lo, 0) + max(hi, 0) - max(-hi, 0)]
    return np.pad(out, widths, constant_values=value)[tuple(crop)]


def _flip(x, axes: Sequence[int]):
    """Reverse ``x`` along each of ``axes`` (a gather along the leading axis)."""
    nd = len(x.shape)
    for a in axes:
        n = x.shape[a]
        if n <= 1:
            continue
        perm = (a,) + tuple(d for d in range(nd) if d != a)
        rev = asarray_operand(np.arange(n - 1, -1, -1, dtype=np.int32))
        x = transpose(gather(transpose(x, perm), rev), tuple(np.argsort(perm)))
    return x


# ---------------------------------------------------------------- conv_general_dilated

conv_general_dilated_p = Primitive("conv_general_dilated")


@conv_general_dilated_p.def_shape
def _conv_shape(
    lhs: ShapedArray,
    rhs: ShapedArray,
    *,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    feature_group_count,
) -> ShapedArray:
    dtype = check_same_dtypes("", lhs, rhs)
    if lhs.ndim != rhs.ndim or lhs.ndim < 2:
        raise TypeError(
            f"lhs {lhs.shape} and rhs {rhs.shape} must have the same rank, at least 2 "
            f"(batch and feature axes plus the spatial axes)"
        )
    n = lhs.ndim - 2
    for name, p in (
        ("window_strides", window_strides),
        ("padding", padding),
        ("lhs_dilation", lhs_dilation),
        ("rhs_dilation", rhs_dilation),
    ):
        if len(p) != n:
            raise TypeError(f"{name} {p} must have one entry per spatial axis ({n})")
    for name, p in (
        ("window_strides", window_strides),
        ("lhs_dilation", lhs_dilation),
        ("rhs_dilation", rhs_dilation),
    ):
        if any(v < 1 for v in p):
            raise ValueError(f"{name} {p} must be positive")
    g = feature_group_count
    c, i, o = lhs.shape[-1], rhs.shape[-2], rhs.shape[-1]
    if g < 1 or c % g != 0 or c // g != i:
        raise TypeError(
            f"lhs feature size {c} must equal the rhs input feature size {i} times "
            f"feature_group_count={g}"
        )
    if o % g != 0:
        raise TypeError(
            f"rhs output feature size {o} must be a multiple of feature_group_count={g}"
        )
    spatial = []
    for d in range(n):
        padded = dilate_dim(lhs.shape[1 + d], lhs_dilation[d]) + sum(padding[d])
        if padded < 0:
            raise ValueError(
                f"padding {padding[d]} on spatial axis {d} is more negative than the "
                f"(dilated) input size {lhs.shape[1 + d]} allows"
            )
        window = dilate_dim(rhs.shape[d], rhs_dilation[d])
        spatial.append(stride_dim(padded, window, window_strides[d]))
    return ShapedArray((lhs.shape[0], *spatial, o), dtype)


@conv_general_dilated_p.def_impl
def _conv_impl(
    lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count
):
    n = lhs.ndim - 2
    out_aval = _conv_shape(
        ShapedArray(lhs.shape, lhs.dtype),
        ShapedArray(rhs.shape, rhs.dtype),
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        feature_group_count=feature_group_count,
    )
    if lhs.size == 0 or rhs.size == 0 or 0 in out_aval.shape:
        return np.zeros(out_aval.shape, lhs.dtype)
    spatial_axes = tuple(range(1, n + 1))
    x = _pad_np(lhs, padding, lhs_dilation, 0, spatial_axes)
    windows = [dilate_dim(k, r) for k, r in zip(rhs.shape[:n], rhs_dilation, strict=True)]
    # (N, *positions, C, *window): every window position, then keep the strided ones and
    # the dilated kernel taps.
    view = np.lib.stride_tricks.sliding_window_view(x, windows, axis=spatial_axes)
    view = view[
        (np.s_[:],)
        + tuple(np.s_[::s] for s in window_strides)
        + (np.s_[:],)
        + tuple(np.s_[::r] for r in rhs_dilation)
    ]
    g = feature_group_count
    i, o = rhs.shape[n], rhs.shape[n + 1]
    og = o // g
    contract = ([n + 1, *range(n + 2, 2 * n + 2)], [n, *range(n)])
    outs = [
        np.tensordot(
            view[(np.s_[:],) * (n + 1) + (np.s_[k * i : (k + 1) * i],)],
            rhs[..., k * og : (k + 1) * og],
            axes=contract,
        )
        for k in range(g)
    ]
    out = outs[0] if g == 1 else np.concatenate(outs, axis=-1)
    return out.astype(lhs.dtype, copy=False)


def _conv_lhs_cotangent(ct, lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, g):
    """d lhs: correlate the stride-dilated ct with the flipped, I/O-swapped kernel."""
    n = len(window_strides)
    window = tuple(rhs.shape[:n])
    i, o = rhs.shape[n], rhs.shape[n + 1]
    # (K, I, G, O/G) -> (K, O/G, G, I) -> (K, O/G, G*I): group k maps its ct channels to
    # its input channels.
    w = reshape(rhs, window + (i, g, o // g))
    w = transpose(w, tuple(range(n)) + (n + 2, n + 1, n))
    w = _flip(reshape(w, window + (o // g, g * i)), range(n))
    pads = []
    for d in range(n):
        dilated_in = dilate_dim(lhs.shape[1 + d], lhs_dilation[d])
        padded = dilated_in + padding[d][0] + padding[d][1]
        lo = dilate_dim(window[d], rhs_dilation[d]) - 1 - padding[d][0]
        hi = padded - (ct.shape[1 + d] - 1) * window_strides[d] - 1 - padding[d][1]
        pads.append((lo, hi))
    d_dilated = conv_general_dilated_p.bind(
        ct,
        w,
        window_strides=(1,) * n,
        padding=tuple(pads),
        lhs_dilation=tuple(window_strides),
        rhs_dilation=tuple(rhs_dilation),
        feature_group_count=g,
    )
    if all(d == 1 for d in lhs_dilation):
        return d_dilated
    # Only every lhs_dilation-th position of the dilated input holds a real element.
    return slice(d_dilated, (0,) * (n + 2), d_dilated.shape, (1, *lhs_dilation, 1))


def _conv_rhs_cotangent(ct, lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, g):
    """d rhs: correlate lhs with ct as the kernel, contracting over the batch axis."""
    n = len(window_strides)
    batch, spatial = lhs.shape[0], tuple(lhs.shape[1 : n + 1])
    i = rhs.shape[n]
    # lhs (N, S, G*I) -> (I, S, G, N) -> (I, S, G*N): the batch axis becomes the feature
    # axis, grouped like the forward features so group k only meets its own ct channels.
    x = reshape(lhs, (batch,) + spatial + (g, i))
    x = transpose(x, (n + 2, *range(1, n + 1), n + 1, 0))
    x = reshape(x, (i,) + spatial + (g * batch,))
    kernel = transpose(ct, (*range(1, n + 1), 0, n + 1))  # (Out..., N, O)
    pads = []
    for d in range(n):
        lo, hi = padding[d]
        padded = dilate_dim(spatial[d], lhs_dilation[d]) + lo + hi
        # Trim the high side so exactly len(window) positions fit.
        used = dilate_dim(ct.shape[1 + d], window_strides[d]) + (rhs.shape[d] - 1) * rhs_dilation[d]
        pads.append((lo, hi - (padded - used)))
    dw = conv_general_dilated_p.bind(
        x,
        kernel,
        window_strides=tuple(rhs_dilation),
        padding=tuple(pads),
        lhs_dilation=tuple(lhs_dilation),
        rhs_dilation=tuple(window_strides),
        feature_group_count=g,
    )  # (I, K..., O)
    return transpose(dw, (*range(1, n + 1), 0, n + 1))


@conv_general_dilated_p.def_vjp
def _conv_vjp(
    ct, lhs, rhs, *, out, window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count
):
    if 0 in tuple(ct.shape) or 0 in tuple(lhs.shape) or 0 in tuple(rhs.shape):
        return full(lhs.shape, 0, ct.dtype), full(rhs.shape, 0, ct.dtype)
    args = (ct, lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation)
    return (
        _conv_lhs_cotangent(*args, feature_group_count),
        _conv_rhs_cotangent(*args, feature_group_count),
    )


@conv_general_dilated_p.def_jvp
def _conv_jvp(ts, lhs, rhs, *, out, **params):
    # Bilinear: d(lhs * rhs) = dlhs * rhs + lhs * drhs.
    t_lhs, t_rhs = ts
    t_out = None
    if t_lhs is not None:
        t_out = conv_general_dilated_p.bind(t_lhs, rhs, **params)
    if t_rhs is not None:
        t = conv_general_dilated_p.bind(lhs, t_rhs, **params)
        t_out = t if t_out is None else add(t_out, t)
    return t_out


@conv_general_dilated_p.def_batch
def _conv_batch(args, dims, **params):
    # As JAX: a batched lhs folds into N; a batched rhs folds into the output features
    # (inside each feature group); both batched fold into feature groups.
    from fgrad.lax.batch_util import logical_shape, moveaxis

    (lhs, rhs), (ld, rd) = args, dims
    g = params["feature_group_count"]
    if rd is None:
        lhs = moveaxis(lhs, ld, 0)  # (B, N, *spatial, C)
        b, n = lhs.shape[0], lhs.shape[1]
        out = conv_general_dilated_p.bind(reshape(lhs, (b * n, *lhs.shape[2:])), rhs, **params)
        return reshape(out, (b, n, *out.shape[1:])), 0
    window_and_io = logical_shape(rhs, rd)
    b, (i, o), ns = rhs.shape[rd], window_and_io[-2:], len(window_and_io) - 2
    window = tuple(window_and_io[:-2])
    rhs = moveaxis(rhs, rd, ns + 1)  # (*window, I, B, O)
    if ld is None:
        # Output features ordered (G, B, O/G), so group k still meets only its inputs.
        w = reshape(rhs, (*window, i, b, g, o // g))
        if g > 1:
            w = moveaxis(w, ns + 1, ns + 2)  # (*window, I, G, B, O/G)
        out = conv_general_dilated_p.bind(lhs, reshape(w, (*window, i, b * o)), **params)
        out = reshape(out, (*out.shape[:-1], g, b, o // g))
        if g > 1:
            out = moveaxis(out, ns + 2, ns + 1)  # (N, *spatial, B, G, O/G)
        return reshape(out, (*out.shape[: ns + 1], b, o)), ns + 1
    # Both batched: B * G feature groups; example b owns groups b * G .. b * G + G - 1.
    lhs = moveaxis(lhs, ld, ns + 1)  # (N, *spatial, B, C)
    lhs = reshape(lhs, (*lhs.shape[: ns + 1], b * lhs.shape[-1]))
    w = reshape(rhs, (*window, i, b * o))
    out = conv_general_dilated_p.bind(lhs, w, **{**params, "feature_group_count": b * g})
    return reshape(out, (*out.shape[:-1], b, o)), ns + 1


# ---------------------------------------------------------------- dimension numbers


class ConvDimensionNumbers(NamedTuple):
    """Axis permutations of a convolution's operands, as ``jax.lax.ConvDimensionNumbers``.

    ``lhs_spec`` = (batch axis, feature axis, spatial axes...), ``rhs_spec`` = (out
    feature axis, in feature axis, spatial axes...), ``out_spec`` like ``lhs_spec``.
    """

    lhs_spec: tuple[int, ...]
    rhs_spec: tuple[int, ...]
    out_spec: tuple[int, ...]


def conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers) -> ConvDimensionNumbers:
    """Normalise ``dimension_numbers`` (None, strings or ConvDimensionNumbers), as JAX.

    Spatial axes are ordered as they appear in the rhs spec.

    Example:
        >>> conv_dimension_numbers((1, 5, 5, 3), (3, 3, 3, 8), ("NHWC", "HWIO", "NHWC"))
        ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
    """
    if isinstance(dimension_numbers, ConvDimensionNumbers):
        return dimension_numbers
    if len(lhs_shape) != len(rhs_shape):
        raise TypeError(
            f"convolution needs lhs and rhs of equal rank, got shapes {tuple(lhs_shape)} "
            f"and {tuple(rhs_shape)}"
        )
    if dimension_numbers is None:
        iota = tuple(range(len(lhs_shape)))
        return ConvDimensionNumbers(iota, iota, iota)
    if not isinstance(dimension_numbers, list | tuple) or len(dimension_numbers) != 3:
        raise TypeError(
            f"dimension_numbers must be None, a ConvDimensionNumbers or three strings such "
            f"as ('NHWC', 'HWIO', 'NHWC'), got {dimension_numbers!r}"
        )
    if all(isinstance(s, list | tuple) for s in dimension_numbers):
        return ConvDimensionNumbers(*(tuple(int(a) for a in s) for s in dimension_numbers))
    if not all(isinstance(s, str) for s in dimension_numbers):
        raise TypeError(f"dimension_numbers must be three strings, got {dimension_numbers!r}")
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    for spec in dimension_numbers:
        if len(spec) != len(lhs_shape):
            raise TypeError(
                f"dimension_numbers entry {spec!r} must have one letter per axis of the "
                f"operands (shapes {tuple(lhs_shape)} and {tuple(rhs_shape)})"
            )
    pairs = (("N", "C"), ("O", "I"), ("N", "C"))
    for spec, (a, b) in zip(dimension_numbers, pairs, strict=True):
        if spec.count(a) != 1 or spec.count(b) != 1 or len(set(spec)) != len(spec):
            raise TypeError(
                f"dimension_numbers entry {spec!r} must contain {a!r} and {b!r} exactly "
                f"once and no repeated letters"
            )
    spatial = [set(s) - set(p) for s, p in zip(dimension_numbers, pairs, strict=True)]
    if not spatial[0] == spatial[1] == spatial[2]:
        raise TypeError(
            f"dimension_numbers {dimension_numbers!r} must name the same spatial axes in "
            f"all three specs"
        )
    rhs_spatial = [c for c in rhs_spec if c not in "OI"]

    def perm(spec: str, pair: tuple[str, str]) -> tuple[int, ...]:
        return (spec.index(pair[0]), spec.index(pair[1])) + tuple(
            spec.index(c) for c in rhs_spatial
        )

    return ConvDimensionNumbers(
        perm(lhs_spec, pairs[0]), perm(rhs_spec, pairs[1]), perm(out_spec, pairs[2])
    )


def _shape_error(msg: str, lhs, rhs) -> FgradTypeError:
    return FgradTypeError(
        f"conv_general_dilated: {msg} (lhs shape {tuple(lhs.shape)}, rhs shape "
        f"{tuple(rhs.shape)}) at {user_frame()}"
    )


def _int_tuple(name: str, value, n: int, lhs, rhs) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        raise _shape_error(f"{name} must be a sequence of ints, got {value!r}", lhs, rhs) from None
    if len(out) != n:
        raise _shape_error(f"{name} {value!r} must have one entry per spatial axis ({n})", lhs, rhs)
    return out


def conv_general_dilated(
    lhs,
    rhs,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
):
    """General N-d convolution (a cross-correlation, as XLA's), with ``jax.lax``'s signature.

    Args:
        lhs: input, rank ``n + 2`` (batch, feature and ``n`` spatial axes).
        rhs: kernel, rank ``n + 2`` (out feature, in feature and ``n`` spatial axes).
        window_strides: ``n`` strides.
        padding: "SAME", "SAME_LOWER", "VALID", or ``n`` ``(low, high)`` pairs; negative
            pads crop. String padding is relative to the dilated kernel and cannot be
            combined with ``lhs_dilation`` (as in JAX).
        lhs_dilation: ``n`` input dilations (transposed convolution), default ones.
        rhs_dilation: ``n`` kernel dilations (atrous convolution), default ones.
        dimension_numbers: None (``("NCHW", "OIHW", "NCHW")``-style), three layout
            strings such as ``("NHWC", "HWIO", "NHWC")``, or a ``ConvDimensionNumbers``.
        feature_group_count: split features into this many groups (depthwise when it
            equals the number of input features).
        batch_group_count: must be 1 (fgrad does not support batch groups).
        precision: accepted for compatibility and ignored (the reference computes in the
            operand dtype).
        preferred_element_type: optional result dtype; operands are converted to it.

    Returns:
        The convolution, in the layout of ``dimension_numbers[2]``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> x = fnp.asarray(np.arange(5.0).reshape(1, 1, 5))   # NCH
        >>> w = fnp.asarray(np.array([[[1.0, 0.0, -1.0]]]))     # OIH
        >>> conv_general_dilated(x, w, (1,), "VALID").tolist()
        [[[-2.0, -2.0, -2.0]]]
        >>> conv_general_dilated(x, w, (2,), "SAME").tolist()
        [[[-1.0, -2.0, 3.0]]]
    """
    lhs, rhs = asarray_operand(lhs), asarray_operand(rhs)
    if batch_group_count != 1:
        raise ValueError(
            f"conv_general_dilated: batch_group_count={batch_group_count} is unsupported "
            f"in fgrad (only 1); at {user_frame()}"
        )
    if len(lhs.shape) != len(rhs.shape) or len(lhs.shape) < 2:
        raise _shape_error(
            "lhs and rhs must have the same rank, at least 2 (batch and feature axes plus "
            "the spatial axes)",
            lhs,
            rhs,
        )
    try:
        dnums = conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    except TypeError as e:
        raise _shape_error(str(e), lhs, rhs) from None
    nd = len(lhs.shape)
    n = nd - 2
    for spec in dnums:
        if sorted(spec) != list(range(nd)):
            raise _shape_error(f"dimension_numbers {tuple(dnums)} are not permutations", lhs, rhs)
    lhs_spec, rhs_spec, out_spec = dnums
    user_lhs, user_rhs = lhs, rhs
    # To the canonical layout: lhs (N, *spatial, C), rhs (*spatial, I, O).
    lhs = transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    rhs = transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))

    window_strides = _int_tuple("window_strides", window_strides, n, lhs, rhs)
    if any(s < 1 for s in window_strides):
        raise _shape_error(f"window_strides {window_strides} must be positive", lhs, rhs)
    lhs_dilation = (1,) * n if lhs_dilation is None else lhs_dilation
    rhs_dilation = (1,) * n if rhs_dilation is None else rhs_dilation
    lhs_dilation = _int_tuple("lhs_dilation", lhs_dilation, n, lhs, rhs)
    rhs_dilation = _int_tuple("rhs_dilation", rhs_dilation, n, lhs, rhs)
    if isinstance(padding, str):
        if any(d != 1 for d in lhs_dilation):
            raise ValueError(
                "conv_general_dilated: string padding cannot be combined with lhs_dilation "
                "(transposed convolution); give explicit (low, high) pads instead"
            )
        window = [dilate_dim(k, r) for k, r in zip(rhs.shape[:n], rhs_dilation, strict=True)]
        pads = padtype_to_pads(lhs.shape[1 : n + 1], window, window_strides, padding)
    else:
        try:
            pads = [(int(lo), int(hi)) for lo, hi in padding]
        except (TypeError, ValueError):
            raise _shape_error(
                f"padding must be a string or a sequence of (low, high) pairs, got {padding!r}",
                lhs,
                rhs,
            ) from None
        if len(pads) != n:
            raise _shape_error(
                f"padding {padding!r} must have one (low, high) pair per spatial axis ({n})",
                lhs,
                rhs,
            )
    if preferred_element_type is not None:
        dtype = np.dtype(preferred_element_type)
        lhs = lhs if lhs.dtype == dtype else convert_element_type(lhs, dtype)
        rhs = rhs if rhs.dtype == dtype else convert_element_type(rhs, dtype)
    params = dict(
        window_strides=window_strides,
        padding=tuple((lo, hi) for lo, hi in pads),
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        feature_group_count=int(feature_group_count),
    )
    try:  # check here too, so the message names the shapes in the user's layout
        _conv_shape(ShapedArray(lhs.shape, lhs.dtype), ShapedArray(rhs.shape, rhs.dtype), **params)
    except (TypeError, ValueError) as e:
        raise _shape_error(str(e), user_lhs, user_rhs) from None
    out = conv_general_dilated_p.bind(lhs, rhs, **params)
    # Back from (N, *spatial, C): user axis out_spec[j] holds canonical axis canon[j].
    canon = (0, n + 1, *range(1, n + 1))
    perm = [0] * nd
    for j, axis in enumerate(out_spec):
        perm[axis] = canon[j]
    return transpose(out, tuple(perm))
