"""Bit-level primitives: shifts, bitcasts, counters, the Threefry-2x32 hash, erf_inv.

These are what ``fgrad.random`` turns keys into numbers with. Each primitive is
declared once with its shape rule and NumPy reference impl side by side. The integer
ones are not differentiable (``differentiable = False``); ``erf_inv`` is smooth and
carries its derivative, so ``normal`` draws differentiate like any other op.

Threefry-2x32 is the counter-based block cipher of Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3" (SC 2011), with 20 rounds, as ``jax.random`` uses it:
the same key and counters give the same bits as JAX, bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fgrad.core import Primitive, ShapedArray
from fgrad.lax.batch_util import elementwise_rule, moveaxis
from fgrad.lax.elementwise import exp
from fgrad.lax.utils import (
    asarray_operand,
    check_same_dtypes,
    elementwise_shape,
    promote_scalars,
    require_float,
)

_UINT32 = np.dtype(np.uint32)


def _require_integer(*avals: ShapedArray) -> None:
    for a in avals:
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"requires integer operands, got {a.dtype.name}")


def _unsigned(dtype: np.dtype) -> np.dtype:
    """The unsigned integer dtype of the same width (uint32 for int32, ...)."""
    return np.dtype(f"uint{np.dtype(dtype).itemsize * 8}")


# ---------------------------------------------------------------- shifts
# XLA semantics: the shift amount is read as unsigned, and a shift by the bit width
# or more gives 0 (logical shifts) or the sign fill (arithmetic shift). C and NumPy
# leave such shifts undefined or platform-dependent, so the impls clamp explicitly.


def _shift_shape(x: ShapedArray, y: ShapedArray) -> ShapedArray:
    _require_integer(x, y)
    dtype = check_same_dtypes("", x, y)
    return ShapedArray(elementwise_shape(x, y), dtype)


def _shift_amount(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y clamped to [0, bits-1] as x's unsigned dtype, mask of too-large shifts)."""
    nbits = x.dtype.itemsize * 8
    uy = np.asarray(y).astype(_unsigned(x.dtype))
    too_big = uy >= nbits
    return np.minimum(uy, nbits - 1).astype(_unsigned(x.dtype)), too_big


def _shift_left_impl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ux = x.astype(_unsigned(x.dtype))
    amount, too_big = _shift_amount(x, y)
    out = np.left_shift(ux, amount)
    return np.where(too_big, np.zeros((), ux.dtype), out).astype(ux.dtype).view(x.dtype)


def _shift_right_logical_impl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ux = x.astype(_unsigned(x.dtype))
    amount, too_big = _shift_amount(x, y)
    out = np.right_shift(ux, amount)
    return np.where(too_big, np.zeros((), ux.dtype), out).astype(ux.dtype).view(x.dtype)


def _shift_right_arithmetic_impl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Shifting by bits-1 already gives the sign fill, so clamping is exact here.
    amount, _ = _shift_amount(x, y)
    sx = x.astype(np.dtype(f"int{x.dtype.itemsize * 8}"))
    return np.right_shift(sx, amount.astype(sx.dtype)).astype(sx.dtype).view(x.dtype)


def _shift(name: str, impl) -> Primitive:
    p = Primitive(name)
    p.def_shape(_shift_shape)
    p.def_impl(impl)
    p.differentiable = False
    p.def_batch(elementwise_rule(p))
    return p


shift_left_p = _shift("shift_left", _shift_left_impl)
shift_right_logical_p = _shift("shift_right_logical", _shift_right_logical_impl)
shift_right_arithmetic_p = _shift("shift_right_arithmetic", _shift_right_arithmetic_impl)


def shift_left(x, y):
    """Elementwise ``x << y`` on integers; shifts of the bit width or more give 0.

    Example:
        >>> import numpy as np
        >>> from fgrad.lax.bits import shift_left
        >>> shift_left(np.uint32([1, 1]), np.uint32(31)).tolist()
        [2147483648, 2147483648]
    """
    return shift_left_p.bind(*promote_scalars(x, y))


def shift_right_logical(x, y):
    """Elementwise logical ``x >> y`` (zeros shifted in); shifts >= the width give 0.

    Example:
        >>> import numpy as np
        >>> from fgrad.lax.bits import shift_right_logical
        >>> shift_right_logical(np.int32(-1), np.int32(28)).item()
        15
    """
    return shift_right_logical_p.bind(*promote_scalars(x, y))


def shift_right_arithmetic(x, y):
    """Elementwise arithmetic ``x >> y`` (the sign bit shifted in)."""
    return shift_right_arithmetic_p.bind(*promote_scalars(x, y))


# ---------------------------------------------------------------- bitcast_convert_type

bitcast_convert_type_p = Primitive("bitcast_convert_type")
bitcast_convert_type_p.differentiable = False


@bitcast_convert_type_p.def_shape
def _bitcast_shape(x: ShapedArray, *, new_dtype) -> ShapedArray:
    old, new = x.dtype.itemsize, np.dtype(new_dtype).itemsize
    if old == new:
        return ShapedArray(x.shape, new_dtype)
    if old > new:  # one wide element becomes a trailing axis of narrow ones
        if old % new:
            raise TypeError(f"cannot bitcast {x.dtype.name} to {np.dtype(new_dtype).name}")
        return ShapedArray(x.shape + (old // new,), new_dtype)
    if new % old or not x.shape or x.shape[-1] != new // old:
        raise TypeError(
            f"bitcasting {x.dtype.name}{list(x.shape)} to {np.dtype(new_dtype).name} needs "
            f"a trailing axis of size {new // old}"
        )
    return ShapedArray(x.shape[:-1], new_dtype)


@bitcast_convert_type_p.def_impl
def _bitcast_impl(x: np.ndarray, *, new_dtype) -> np.ndarray:
    new_dtype = np.dtype(new_dtype)
    out_shape = _bitcast_shape(ShapedArray(x.shape, x.dtype), new_dtype=new_dtype).shape
    # NumPy views reinterpret memory in the machine's (little-endian) order, which is
    # XLA's element order for a wide value split into narrow ones.
    return np.ascontiguousarray(x).view(new_dtype).reshape(out_shape)


@bitcast_convert_type_p.def_batch
def _bitcast_batch(args, dims, *, new_dtype):
    (x,), (d,) = args, dims
    # A wider target dtype consumes the trailing axis, which must not be the batch axis.
    if np.dtype(new_dtype).itemsize > x.dtype.itemsize and d == len(x.shape) - 1:
        x, d = moveaxis(x, d, 0), 0
    return bitcast_convert_type_p.bind(x, new_dtype=new_dtype), d


def bitcast_convert_type(operand, new_dtype):
    """Reinterpret the bits of ``operand`` as ``new_dtype`` (``jax.lax.bitcast_convert_type``).

    Equal widths keep the shape; a wider source gains a trailing axis (float64 ->
    uint32[..., 2]); a narrower source loses its trailing axis, which must hold the
    width ratio.

    Example:
        >>> import numpy as np
        >>> from fgrad.lax.bits import bitcast_convert_type
        >>> hex(bitcast_convert_type(np.float32(1.0), np.uint32).item())
        '0x3f800000'
    """
    operand = asarray_operand(operand)
    new_dtype = np.dtype(new_dtype)
    if operand.dtype == new_dtype:
        return operand
    return bitcast_convert_type_p.bind(operand, new_dtype=new_dtype)


# ---------------------------------------------------------------- iota_2x32_shape
# A row-major counter over ``shape``, as a 64-bit count split into two uint32 arrays
# (high, low): the counters ``random`` feeds to threefry2x32, as JAX's primitive of
# the same name. With no operands it has no tracer to attach to, so under a trace
# it is evaluated once and enters the jaxpr as a constant.

iota_2x32_shape_p = Primitive("iota_2x32_shape", multiple_results=True)
iota_2x32_shape_p.differentiable = False


@iota_2x32_shape_p.def_shape
def _iota_2x32_shape_rule(*, shape) -> list[ShapedArray]:
    return [ShapedArray(shape, _UINT32), ShapedArray(shape, _UINT32)]


@iota_2x32_shape_p.def_impl
def _iota_2x32_shape_impl(*, shape) -> tuple[np.ndarray, np.ndarray]:
    counts = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    hi = (counts >> np.uint64(32)).astype(np.uint32)
    lo = (counts & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return hi, lo


# No operands, so never batched: under vmap it is a constant, like any other.
iota_2x32_shape_p.def_batch(
    lambda args, dims, *, shape: (iota_2x32_shape_p.bind(shape=shape), [None, None])
)


def iota_2x32_shape(shape) -> tuple[Any, Any]:
    """Counters ``0 .. prod(shape)-1`` laid out over ``shape``, as (high, low) uint32.

    Example:
        >>> from fgrad.lax.bits import iota_2x32_shape
        >>> hi, lo = iota_2x32_shape((2, 2))
        >>> hi.tolist(), lo.tolist()
        ([[0, 0], [0, 0]], [[0, 1], [2, 3]])
    """
    return tuple(iota_2x32_shape_p.bind(shape=tuple(int(d) for d in shape)))


# ---------------------------------------------------------------- threefry2x32

threefry2x32_p = Primitive("threefry2x32", multiple_results=True)
threefry2x32_p.differentiable = False

# Rotation constants of Threefry-2x32 (Salmon et al. 2011, table 4), used in groups
# of four rounds, alternately; and the key-schedule parity constant.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


@threefry2x32_p.def_shape
def _threefry2x32_shape(
    k1: ShapedArray, k2: ShapedArray, x1: ShapedArray, x2: ShapedArray
) -> list[ShapedArray]:
    for name, a in zip(("key1", "key2", "x1", "x2"), (k1, k2, x1, x2), strict=True):
        if a.dtype != _UINT32:
            raise TypeError(f"{name} must be uint32, got {a.dtype.name}")
    if x1.shape != x2.shape:
        raise TypeError(f"counters must share one shape, got {x1.shape} and {x2.shape}")
    shape = elementwise_shape(k1, k2, x1, x2)
    return [ShapedArray(shape, _UINT32), ShapedArray(shape, _UINT32)]


@threefry2x32_p.def_impl
def _threefry2x32_impl(k1, k2, x1, x2) -> tuple[np.ndarray, np.ndarray]:
    # Vectorised over all counters at once: each of the 20 rounds is a handful of
    # whole-array uint32 ops, done in place (unsigned arithmetic wraps mod 2**32).
    shape = np.broadcast_shapes(np.shape(k1), np.shape(k2), np.shape(x1), np.shape(x2))
    k1 = np.asarray(k1, _UINT32)
    k2 = np.asarray(k2, _UINT32)
    ks = (k1, k2, np.bitwise_xor(np.bitwise_xor(k1, k2), _PARITY))
    a = np.empty(shape, _UINT32)
    b = np.empty(shape, _UINT32)
    np.add(x1, k1, out=a, dtype=_UINT32)
    np.add(x2, k2, out=b, dtype=_UINT32)
    tmp = np.empty_like(b)
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            np.add(a, b, out=a)
            # b = rotate_left(b, r) ^ a
            np.right_shift(b, np.uint32(32 - r), out=tmp)
            np.left_shift(b, np.uint32(r), out=b)
            np.bitwise_or(b, tmp, out=b)
            np.bitwise_xor(b, a, out=b)
        # Key injection after every four rounds, with the group counter.
        np.add(a, ks[(group + 1) % 3], out=a, casting="unsafe")
        np.add(b, ks[(group + 2) % 3], out=b, casting="unsafe")
        np.add(b, np.uint32(group + 1), out=b, casting="unsafe")
    return a, b


def threefry2x32(key1, key2, x1, x2):
    """The Threefry-2x32 hash (20 rounds) of counters ``(x1, x2)`` under key ``(key1, key2)``.

    All operands are uint32; the keys may be scalars. Returns two uint32 arrays shaped
    like the counters. Equal to JAX's ``threefry2x32_p`` bit for bit.

    Example:
        >>> import numpy as np
        >>> from fgrad.lax.bits import threefry2x32
        >>> u = np.uint32
        >>> [hex(v.item()) for v in threefry2x32(u(0), u(0), u(0), u(0))]
        ['0x6b200159', '0x99ba4efe']
    """
    ops = [asarray_operand(v) for v in (key1, key2, x1, x2)]
    return tuple(threefry2x32_p.bind(*ops))


# Elementwise in all four operands; only the keys may stay rank 0.
threefry2x32_p.def_batch(elementwise_rule(threefry2x32_p, scalar_ok=(0, 1)))


# ---------------------------------------------------------------- erf_inv

erf_inv_p = Primitive("erf_inv")


@erf_inv_p.def_shape
def _erf_inv_shape(x: ShapedArray) -> ShapedArray:
    require_float([x])
    return x


# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011): the
# single-precision polynomials in w = -log(1 - x^2), relative error ~4e-7 for w < 16.6.
_GILES_SMALL_W = (
    2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
    -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
)  # fmt: skip
_GILES_LARGE_W = (
    -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
)  # fmt: skip
_erf_ufunc = np.frompyfunc(math.erf, 1, 1)
_erfc_ufunc = np.frompyfunc(math.erfc, 1, 1)


def _erf(y: np.ndarray) -> np.ndarray:
    return np.asarray(_erf_ufunc(y), dtype=np.float64)


def _erfc(y: np.ndarray) -> np.ndarray:
    return np.asarray(_erfc_ufunc(y), dtype=np.float64)


def _halley_step(y: np.ndarray, a: np.ndarray) -> np.ndarray:
    """One Halley step on erf(y) = a (a, y >= 0); cubic convergence.

    The residual near a = 1 is taken through erfc, where ``1 - a`` is exact, so the
    tail keeps its relative accuracy.
    """
    upper = a > 0.5
    r = np.empty_like(y)
    r[upper] = (1.0 - a[upper]) - _erfc(y[upper])
    lower = ~upper
    r[lower] = _erf(y[lower]) - a[lower]
    d = (2.0 / math.sqrt(math.pi)) * np.exp(-y * y)  # erf'(y); erf''(y) = -2 y erf'(y)
    return y - r / (d + y * r)


def _erf_inv_impl(x: np.ndarray) -> np.ndarray:
    # Reference: Giles' approximation as a start, refined in float64 by Halley steps on
    # math.erf / math.erfc, then rounded to x's dtype (within ~1 ulp of the true value).
    x64 = np.asarray(x, np.float64)
    a = np.abs(x64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inside = a < 1.0
        a_in = np.where(inside, a, 0.0)
        w = -np.log1p(-a_in * a_in)
        small = w < 5.0
        t = np.where(small, w - 2.5, np.sqrt(w) - 3.0)
        p = np.zeros_like(t)
        for c_small, c_large in zip(_GILES_SMALL_W, _GILES_LARGE_W, strict=True):
            p = p * t + np.where(small, c_small, c_large)
        y = p * a_in
        # Beyond the polynomials' range (1 - a < ~6e-8) start from the tail
        # asymptotics erfc(y) ~ exp(-y^2) / (y sqrt(pi)) instead.
        tail = w > 16.0
        if np.any(tail):
            lt = -np.log(1.0 - a_in[tail])
            yt = np.sqrt(lt)
            for _ in range(3):
                yt = np.sqrt(lt - np.log(math.sqrt(math.pi) * yt))
            y[tail] = yt
        y = _halley_step(y, a_in)
        y = _halley_step(y, a_in) if np.any(tail) else y
        out = np.where(inside, y, np.where(a == 1.0, np.inf, np.nan))
    return (np.sign(x64) * out).astype(x.dtype)


erf_inv_p.def_impl(_erf_inv_impl)
# d/dx erfinv(x) = sqrt(pi)/2 * exp(erfinv(x)^2), in fgrad ops so it differentiates again.
erf_inv_p.def_vjp(lambda ct, x, *, out: (ct * ((math.sqrt(math.pi) / 2) * exp(out * out)),))
erf_inv_p.def_jvp(lambda ts, x, *, out: ts[0] * ((math.sqrt(math.pi) / 2) * exp(out * out)))
erf_inv_p.def_batch(elementwise_rule(erf_inv_p))


def erf_inv(x):
    """Elementwise inverse error function: ``erf(erf_inv(x)) == x`` on (-1, 1).

    ``erf_inv(+-1)`` is ``+-inf``; outside [-1, 1] it is NaN.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad.lax.bits import erf_inv
        >>> round(erf_inv(fnp.asarray(0.5)).item(), 6)
        0.476936
    """
    return erf_inv_p.bind(asarray_operand(x))
