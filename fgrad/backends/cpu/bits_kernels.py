"""Numba kernels for the bit-level primitives behind ``fgrad.random``: threefry2x32,
iota_2x32_shape, erf_inv and the three shifts.

Why a module of its own: these are the PRNG's hot path, and the NumPy reference impls
(``fgrad/lax/bits.py``) make many whole-array passes (threefry: ~100 uint32 ops over the
counters) or call Python per element (erf_inv's ``math.erf`` refinement). Here each is
one pass over flat data, with the same arithmetic, so the outputs are identical:

* ``threefry2x32``: the 20-round Threefry-2x32 hash per counter pair, bit-exact with
  the reference (and JAX); keys and counters broadcast by a 0/1 stride per operand;
* ``iota_2x32_shape``: the (high, low) uint32 halves of a 64-bit row-major counter;
* ``erf_inv``: Giles' single-precision polynomial (or the tail asymptotics) refined by
  Halley steps on ``math.erf``/``math.erfc`` in float64, as the reference does, then
  rounded to the operand dtype;
* ``shift_left`` / ``shift_right_logical`` / ``shift_right_arithmetic``: XLA semantics
  (the amount read as unsigned; shifts of the bit width or more give 0, or the sign
  fill for the arithmetic shift), computed on same-width unsigned/signed views, so
  there is one signature per integer width.

``erf_inv_scalar`` is also the scalar function fused loops could call. These kernels
measured faster than (or level with) NumPy at every size (docs/performance.md), so
there is no size threshold.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fgrad.backends import reference

_JIT = dict(cache=True, nogil=True, error_model="numpy")

_U32 = np.dtype(np.uint32)


def _prim(name):
    from fgrad.core import primitives

    return primitives[name]


def _ref(name, args, params=None):
    return reference.run(_prim(name), list(args), params or {})


def _flat(a: np.ndarray, shape) -> tuple[np.ndarray, int]:
    """``a`` as a flat C-contiguous array and its stride (0 for a broadcast scalar)."""
    if a.size == 1:
        return np.ascontiguousarray(a).reshape(1), 0
    if a.shape != tuple(shape):
        a = np.broadcast_to(a, shape)
    return np.ascontiguousarray(a).reshape(-1), 1


# ---------------------------------------------------------------- threefry2x32


@numba.njit(**_JIT)
def _rotl(v, r):
    return np.uint32((v << np.uint32(r)) | (v >> np.uint32(32 - r)))


@numba.njit(**_JIT)
def _threefry(k1, s1, k2, s2, x1, t1, x2, t2, out1, out2):
    parity = np.uint32(0x1BD11BDA)
    for i in range(out1.shape[0]):
        ka = k1[i * s1]
        kb = k2[i * s2]
        kc = np.uint32(ka ^ kb ^ parity)
        a = np.uint32(x1[i * t1] + ka)
        b = np.uint32(x2[i * t2] + kb)
        for group in range(5):
            if group % 2 == 0:
                a = np.uint32(a + b)
                b = _rotl(b, 13) ^ a
                a = np.uint32(a + b)
                b = _rotl(b, 15) ^ a
                a = np.uint32(a + b)
                b = _rotl(b, 26) ^ a
                a = np.uint32(a + b)
                b = _rotl(b, 6) ^ a
            else:
                a = np.uint32(a + b)
                b = _rotl(b, 17) ^ a
                a = np.uint32(a + b)
                b = _rotl(b, 29) ^ a
                a = np.uint32(a + b)
                b = _rotl(b, 16) ^ a
                a = np.uint32(a + b)
                b = _rotl(b, 24) ^ a
            # Key injection with the group counter: ks[(g + 1) % 3], ks[(g + 2) % 3].
            j = (group + 1) % 3
            inj_a = ka if j == 0 else (kb if j == 1 else kc)
            j = (group + 2) % 3
            inj_b = ka if j == 0 else (kb if j == 1 else kc)
            a = np.uint32(a + inj_a)
            b = np.uint32(b + inj_b + np.uint32(group + 1))
        out1[i] = a
        out2[i] = b


def threefry2x32(k1, k2, x1, x2):
    ops = [np.asarray(v) for v in (k1, k2, x1, x2)]
    shape = np.broadcast_shapes(*(o.shape for o in ops))
    size = math.prod(shape)
    if any(o.dtype != _U32 for o in ops):
        return tuple(_ref("threefry2x32", ops))
    flat = [_flat(o, shape) for o in ops]
    out1 = np.empty(size, _U32)
    out2 = np.empty(size, _U32)
    _threefry(*flat[0], *flat[1], *flat[2], *flat[3], out1, out2)
    return out1.reshape(shape), out2.reshape(shape)


# ---------------------------------------------------------------- iota_2x32_shape


@numba.njit(**_JIT)
def _iota_2x32(hi, lo):
    for i in range(hi.shape[0]):
        c = np.uint64(i)
        hi[i] = np.uint32(c >> np.uint64(32))
        lo[i] = np.uint32(c & np.uint64(0xFFFFFFFF))


def iota_2x32_shape(*, shape):
    size = math.prod(shape)
    hi = np.empty(size, _U32)
    lo = np.empty(size, _U32)
    _iota_2x32(hi, lo)
    return hi.reshape(shape), lo.reshape(shape)


# ---------------------------------------------------------------- erf_inv

# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011): the
# single-precision polynomials in w = -log(1 - x^2), as in the reference impl.
_SMALL_W = (
    2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
    -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
)  # fmt: skip
_LARGE_W = (
    -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
)  # fmt: skip
_SQRT_PI = math.sqrt(math.pi)


@numba.njit(**_JIT)
def _halley(y, a):
    """One Halley step on erf(y) = a (a, y >= 0), the residual through erfc near 1."""
    if a > 0.5:
        r = (1.0 - a) - math.erfc(y)
    else:
        r = math.erf(y) - a
    d = (2.0 / _SQRT_PI) * math.exp(-y * y)
    return y - r / (d + y * r)


@numba.njit(**_JIT)
def erf_inv_scalar(x):
    """erf_inv of one float64, as the reference computes it."""
    a = abs(x)
    if not a < 1.0:  # also NaN
        if a == 1.0:
            return math.copysign(math.inf, x)
        return math.nan
    w = -math.log1p(-a * a)
    p = 0.0
    if w < 5.0:
        t = w - 2.5
        for c in _SMALL_W:
            p = p * t + c
    else:
        t = math.sqrt(w) - 3.0
        for c in _LARGE_W:
            p = p * t + c
    y = p * a
    tail = w > 16.0
    if tail:  # beyond the polynomials: erfc(y) ~ exp(-y^2) / (y sqrt(pi))
        lt = -math.log(1.0 - a)
        y = math.sqrt(lt)
        for _ in range(3):
            y = math.sqrt(lt - math.log(_SQRT_PI * y))
    y = _halley(y, a)
    if tail:
        y = _halley(y, a)
    if x < 0:
        return -y
    if x == 0:
        return x
    return y


@numba.njit(**_JIT)
def _erf_inv(x, out):
    for i in range(x.shape[0]):
        out[i] = erf_inv_scalar(np.float64(x[i]))


def erf_inv(x):
    if x.dtype not in (np.float32, np.float64):
        return _ref("erf_inv", [x])[0]
    out = np.empty(x.size, x.dtype)
    _erf_inv(np.ascontiguousarray(x).reshape(-1), out)
    return out.reshape(x.shape)


# ---------------------------------------------------------------- shifts


@numba.njit(**_JIT)
def _shl(x, sx, y, sy, out, nbits):
    # x, y, out: the same-width unsigned view. Shifts of nbits or more give 0.
    for i in range(out.shape[0]):
        amount = y[i * sy]
        if amount >= nbits:
            out[i] = 0
        else:
            out[i] = np.uint64(x[i * sx]) << np.uint64(amount)


@numba.njit(**_JIT)
def _shr_logical(x, sx, y, sy, out, nbits):
    for i in range(out.shape[0]):
        amount = y[i * sy]
        if amount >= nbits:
            out[i] = 0
        else:
            out[i] = np.uint64(x[i * sx]) >> np.uint64(amount)


@numba.njit(**_JIT)
def _shr_arithmetic(x, sx, y, sy, out, nbits):
    # x, out: the signed view; y: the unsigned view of the amount, clamped to nbits - 1
    # (which already gives the sign fill).
    for i in range(out.shape[0]):
        amount = y[i * sy]
        if amount >= nbits:
            amount = nbits - 1
        out[i] = np.int64(x[i * sx]) >> np.int64(amount)


def _shift(name, kernel, signed_data):
    def run(x, y):
        x, y = np.asarray(x), np.asarray(y)
        shape = np.broadcast_shapes(x.shape, y.shape)
        size = math.prod(shape)
        if x.dtype != y.dtype or x.dtype.kind not in "iu":
            return _ref(name, [x, y])[0]
        width = x.dtype.itemsize * 8
        unsigned, signed = np.dtype(f"uint{width}"), np.dtype(f"int{width}")
        data = signed if signed_data else unsigned
        xf, sx = _flat(x, shape)
        yf, sy = _flat(y, shape)
        out = np.empty(size, data)
        kernel(xf.view(data), sx, yf.view(unsigned), sy, out, np.uint64(width))
        return out.view(x.dtype).reshape(shape)

    run.__name__ = name
    return run


shift_left = _shift("shift_left", _shl, False)
shift_right_logical = _shift("shift_right_logical", _shr_logical, False)
shift_right_arithmetic = _shift("shift_right_arithmetic", _shr_arithmetic, True)


KERNELS = {
    "threefry2x32": threefry2x32,
    "iota_2x32_shape": iota_2x32_shape,
    "erf_inv": erf_inv,
    "shift_left": shift_left,
    "shift_right_logical": shift_right_logical,
    "shift_right_arithmetic": shift_right_arithmetic,
}
