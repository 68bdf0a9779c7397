"""``fgrad.random``: counter-based pseudo-random numbers with explicit keys, as ``jax.random``.

There is no global generator. A key is a plain ``uint32[2]`` array (``key(seed)`` or
``PRNGKey(seed)``); every draw is a pure function of a key, and ``split``/``fold_in``
derive fresh keys. Reusing a key reproduces the same numbers, so split before each use:

    >>> from fgrad import random
    >>> key = random.key(0)
    >>> key, sub = random.split(key)
    >>> random.uniform(sub, (2,)).shape
    (2,)

The bits come from the ``threefry2x32`` primitive (Threefry-2x32, 20 rounds, Salmon et
al. 2011) over a row-major counter, exactly as JAX's default implementation with
``jax_threefry_partitionable`` on (its default since JAX 0.5). For the same key:

* ``key``/``PRNGKey``, ``split``, ``fold_in``, ``bits``, ``uniform`` on [0, 1) (float16,
  float32, float64: the float64 mantissa comes from 64-bit draws, as in JAX),
  ``bernoulli``, ``randint``, ``permutation`` and ``choice`` equal ``jax.random`` bit
  for bit (``choice`` and ``randint`` with default dtypes as in JAX's default 32-bit
  mode);
* ``uniform`` with other bounds differs by at most one rounding: XLA fuses
  ``u * (maxval - minval) + minval`` into a fused multiply-add, NumPy rounds twice;
* ``normal``, ``truncated_normal`` and ``gumbel`` agree to float rounding: JAX's
  float32 ``erf_inv`` is a polynomial good to a few ulp, fgrad's is within 1 ulp;
  ``categorical`` (an argmax over Gumbel noise) agrees except at near-ties.

Defaults follow JAX's default (32-bit) mode: floats are float32, integers int32 and
``bits`` uint32.

Keys are ordinary integer arrays: they flow through pytrees, ``grad`` (never
differentiated), ``jit`` and ``vmap``.
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad import lax
from fgrad import numpy as fnp
from fgrad.config import config
from fgrad.core import Array, Tracer, user_frame
from fgrad.lax import bits as _bits

__all__ = [
    "PRNGKey",
    "bernoulli",
    "bits",
    "categorical",
    "choice",
    "fold_in",
    "gumbel",
    "key",
    "key_data",
    "normal",
    "permutation",
    "randint",
    "split",
    "truncated_normal",
    "uniform",
]

_UINT_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}

# ---------------------------------------------------------------- keys


def _check_key(name: str, key: Any):
    """Return ``key`` as an fgrad operand, or raise a clear error if it is not one key."""
    if isinstance(key, np.ndarray):
        key = Array(np.array(key))
    if not isinstance(key, Array | Tracer):
        hint = (
            f" (to make a key from the seed, use fgrad.random.key({key!r}))"
            if isinstance(key, int | np.integer)
            else ""
        )
        raise TypeError(
            f"random.{name} expects a PRNG key, a uint32[2] array from "
            f"fgrad.random.key(seed), but got {type(key).__name__} {key!r}{hint}"
        )
    if key.dtype != np.uint32 or not key.shape or key.shape[-1] != 2:
        raise TypeError(
            f"random.{name} expects a PRNG key, a uint32[2] array from "
            f"fgrad.random.key(seed), but got an array of dtype {np.dtype(key.dtype).name} "
            f"and shape {tuple(key.shape)}"
        )
    if key.ndim != 1:
        raise ValueError(
            f"random.{name} takes a single key, but was given a key array of shape "
            f"{tuple(key.shape)}; use fgrad.vmap over the keys (or index one of them)"
        )
    # fold_in derives a new key without consuming its input (as JAX's checker).
    if config.debug_key_reuse and type(key) is Array and name != "fold_in":
        _note_key_use(name, key)
    return key


class KeyReuseError(ValueError):
    """With ``config.debug_key_reuse``: a PRNG key was consumed twice."""


#: id(key) -> (weak reference to the key, where it was first used). Entries vanish with
#: their keys, so this holds only keys that are still alive (a bounded record).
_key_uses: dict[int, tuple[weakref.ref, str]] = {}


def _note_key_use(name: str, key: Array) -> None:
    """Record that ``key`` was consumed; a second use raises, naming both."""
    caller = sys._getframe(3).f_code.co_filename
    if caller == __file__:
        return  # one random function calling another with the key it was given
    where = f"random.{name} at {user_frame()}"
    previous = _key_uses.get(id(key))
    if previous is not None and previous[0]() is key:
        raise KeyReuseError(
            f"PRNG key reuse: this key was already used by {previous[1]}, and is used "
            f"again by {where}; the two draws would be correlated. Split it first: "
            f"key, subkey = fgrad.random.split(key)"
        )
    ident = id(key)
    _key_uses[ident] = (weakref.ref(key, lambda _, i=ident: _key_uses.pop(i, None)), where)


def _key_halves(key):
    """The two uint32 words of a key, as scalars."""
    k1 = lax.reshape(lax.slice(key, (0,), (1,)), ())
    k2 = lax.reshape(lax.slice(key, (1,), (2,)), ())
    return k1, k2


def _canonical_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int | np.integer):
        return (int(shape),)
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of integers, got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must be non-negative, got {shape}")
    return shape


def key(seed) -> Any:
    """Make a PRNG key, a ``uint32[2]`` array, from an integer seed (same as ``PRNGKey``).

    As in JAX, a 64-bit seed fills both words (high, low); a 32-bit one fills the low
    word. Python ints are read as int64, so negative seeds work.

    Args:
        seed: a Python int, or an integer scalar array (may be traced under ``jit``).

    Returns:
        The key, ``uint32[2]``.

    Example:
        >>> from fgrad import random
        >>> random.key(42).tolist()
        [0, 42]
        >>> random.key(-1).tolist()
        [4294967295, 4294967295]
    """
    if isinstance(seed, bool | int) and not isinstance(seed, np.generic):
        if not -(2**63) <= seed < 2**63:
            raise OverflowError(f"seed {seed} does not fit in a 64-bit integer")
        return Array(np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], np.uint32))
    if isinstance(seed, np.generic | np.ndarray):
        seed = Array(np.array(seed))
    if not isinstance(seed, Array | Tracer):
        raise TypeError(f"random.key expects an integer seed, got {type(seed).__name__}")
    if seed.shape:
        raise TypeError(
            f"random.key accepts a scalar seed, got shape {tuple(seed.shape)}; "
            f"use fgrad.vmap for batches of seeds"
        )
    if not np.issubdtype(seed.dtype, np.integer):
        raise TypeError(f"random.key expects an integer seed, got dtype {seed.dtype.name}")
    # High word: logical shift by 32 (0 for seeds of 32 bits or fewer); low word: the
    # seed's low 32 bits.
    hi = _bits.shift_right_logical(seed, np.array(32, seed.dtype))
    hi = lax.convert_element_type(hi, np.uint32)
    lo = lax.convert_element_type(seed, np.uint32)
    return lax.concatenate([lax.reshape(hi, (1,)), lax.reshape(lo, (1,))], 0)


PRNGKey = key


def key_data(keys):
    """The raw ``uint32`` data of a key: the key itself (fgrad keys are raw arrays)."""
    return keys


def _threefry_bits(key, shape: tuple[int, ...]):
    """The two uint32 streams of Threefry-2x32 over a row-major counter of ``shape``."""
    k1, k2 = _key_halves(key)
    hi, lo = _bits.iota_2x32_shape(shape)
    return _bits.threefry2x32(k1, k2, hi, lo)


def _random_bits(key, bit_width: int, shape: tuple[int, ...]):
    b1, b2 = _threefry_bits(key, shape)
    if bit_width == 64:
        hi = lax.convert_element_type(b1, np.uint64)
        lo = lax.convert_element_type(b2, np.uint64)
        return lax.bitwise_or(_bits.shift_left(hi, np.uint64(32)), lo)
    out = lax.bitwise_xor(b1, b2)
    if bit_width == 32:
        return out
    return lax.convert_element_type(out, _UINT_DTYPES[bit_width])


def split(key, num: int | Sequence[int] = 2):
    """Split a key into ``num`` new keys (a leading axis, or a shape of keys).

    Args:
        key: a PRNG key.
        num: how many keys (an int), or the shape of the key array (a tuple).

    Returns:
        ``uint32[num, 2]`` (or ``uint32[*num, 2]``).

    Example:
        >>> from fgrad import random
        >>> random.split(random.key(0)).tolist()
        [[1797259609, 2579123966], [928981903, 3453687069]]
    """
    key = _check_key("split", key)
    shape = _canonical_shape(num)
    b1, b2 = _threefry_bits(key, shape)
    nd = len(shape)
    return lax.concatenate([lax.expand_dims(b1, (nd,)), lax.expand_dims(b2, (nd,))], nd)


def fold_in(key, data):
    """Derive a new key from ``key`` and an integer (a step count, a layer index, ...).

    Args:
        key: a PRNG key.
        data: a 32-bit unsigned integer (Python int in [0, 2**32) or an integer scalar
            array, whose bits are read as uint32).

    Returns:
        A new key, a deterministic function of both arguments.

    Example:
        >>> from fgrad import random
        >>> random.fold_in(random.key(42), 3).tolist()
        [3134548294, 894150801]
    """
    key = _check_key("fold_in", key)
    if isinstance(data, bool | int) and not isinstance(data, np.generic):
        if not 0 <= data < 2**32:
            raise OverflowError(f"fold_in data {data} is out of bounds for uint32")
        data = Array(np.array(data, np.uint32))
    data = fnp.asarray(data)
    if data.shape:
        raise TypeError(
            f"fold_in accepts a scalar, but was given an array of shape {tuple(data.shape)}; "
            f"use fgrad.vmap for batching"
        )
    if not np.issubdtype(data.dtype, np.integer):
        raise TypeError(f"fold_in data must be an integer, got dtype {data.dtype.name}")
    data = lax.convert_element_type(data, np.uint32)
    # Threefry of the counter pair (0, data): JAX hashes the 64-bit seed of ``data``.
    k1, k2 = _key_halves(key)
    b1, b2 = _bits.threefry2x32(k1, k2, np.uint32(0), data)
    return lax.concatenate([lax.reshape(b1, (1,)), lax.reshape(b2, (1,))], 0)


# ---------------------------------------------------------------- raw bits and uniform


def bits(key, shape: Sequence[int] = (), dtype=np.uint32):
    """Uniformly random unsigned integers (all bits independent and fair).

    Args:
        key: a PRNG key.
        shape: output shape.
        dtype: uint8, uint16, uint32 (default) or uint64.

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> from fgrad import random
        >>> random.bits(random.key(42), (3,)).tolist()
        [2098992034, 2919706841, 2646866425]
    """
    key = _check_key("bits", key)
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.unsignedinteger):
        raise ValueError(f"dtype argument to `bits` must be an unsigned int dtype, got {dtype}")
    return _random_bits(key, dtype.itemsize * 8, _canonical_shape(shape))


def _float_dtype(name: str, dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype argument to `{name}` must be a float dtype, got {dtype}")
    return dtype


def _param(x: Any, dtype: np.dtype, shape: tuple[int, ...], name: str, what: str):
    """A distribution parameter cast to ``dtype``; it must broadcast to ``shape``."""
    x = fnp.asarray(x) if not isinstance(x, Array | Tracer) else x
    if x.dtype != dtype:
        x = lax.convert_element_type(x, dtype)
    if not _broadcasts(x.shape, shape) or np.broadcast_shapes(tuple(x.shape), shape) != shape:
        raise ValueError(
            f"random.{name}: {what} of shape {tuple(x.shape)} does not broadcast to the "
            f"requested shape {shape}"
        )
    return x


def _broadcasts(a: Sequence[int], b: Sequence[int]) -> bool:
    try:
        np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        return False
    return True


def _is_unit_interval(minval, maxval) -> bool:
    py = (bool, int, float)
    return isinstance(minval, py) and isinstance(maxval, py) and minval == 0 and maxval == 1


def _unit_uniform(key, shape: tuple[int, ...], dtype: np.dtype):
    # Mantissa trick: random bits under the exponent of 1.0 give a float uniform on
    # [1, 2); subtracting 1 gives [0, 1) with nmant bits of resolution.
    finfo = np.finfo(dtype)
    nbits, nmant = finfo.bits, finfo.nmant
    rng_bits = nbits if nmant >= 8 else 8
    raw = _random_bits(key, rng_bits, shape)
    uint = _UINT_DTYPES[nbits]
    if rng_bits != nbits:
        raw = lax.convert_element_type(raw, uint)
    one_bits = np.array(1.0, dtype).view(uint)
    float_bits = lax.bitwise_or(
        _bits.shift_right_logical(raw, np.array(rng_bits - nmant, uint)), one_bits
    )
    return lax.sub(_bits.bitcast_convert_type(float_bits, dtype), np.array(1.0, dtype))


def _uniform(key, shape: tuple[int, ...], dtype: np.dtype, minval, maxval):
    """Uniform on [minval, maxval): ``u * (maxval - minval) + minval``, as JAX."""
    floats = _unit_uniform(key, shape, dtype)
    out = fnp.add(fnp.multiply(floats, fnp.subtract(maxval, minval)), minval)
    # Rounding in the affine map can land just below minval; clamp there, as JAX does.
    return fnp.broadcast_to(fnp.maximum(minval, out), shape)


def uniform(key, shape: Sequence[int] = (), dtype=np.float32, minval=0.0, maxval=1.0):
    """Uniform floats on ``[minval, maxval)``.

    Args:
        key: a PRNG key.
        shape: output shape.
        dtype: a float dtype (float32 default; float16 and float64 too).
        minval: lower bound (inclusive), broadcastable to ``shape``.
        maxval: upper bound (exclusive), broadcastable to ``shape``.

    Returns:
        An array of ``shape`` and ``dtype``, equal to ``jax.random.uniform`` bit for bit.

    Example:
        >>> from fgrad import random
        >>> random.uniform(random.key(0), (3,)).tolist()
        [0.9476670026779175, 0.9785798788070679, 0.33229148387908936]
    """
    key = _check_key("uniform", key)
    dtype = _float_dtype("uniform", dtype)
    shape = _canonical_shape(shape)
    if _is_unit_interval(minval, maxval):
        return _unit_uniform(key, shape, dtype)
    minval = _param(minval, dtype, shape, "uniform", "minval")
    maxval = _param(maxval, dtype, shape, "uniform", "maxval")
    return _uniform(key, shape, dtype, minval, maxval)


# ---------------------------------------------------------------- continuous distributions


def normal(key, shape: Sequence[int] = (), dtype=np.float32):
    """Standard normal floats.

    Drawn as ``sqrt(2) * erf_inv(u)`` with ``u`` uniform on (-1, 1), as JAX does, so
    the result equals ``jax.random.normal`` up to the rounding of ``erf_inv``.

    Args:
        key: a PRNG key.
        shape: output shape.
        dtype: a float dtype (float32 default).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> from fgrad import random
        >>> [round(v, 5) for v in random.normal(random.key(0), (3,)).tolist()]
        [1.62264, 2.02526, -0.43359]
    """
    key = _check_key("normal", key)
    dtype = _float_dtype("normal", dtype)
    shape = _canonical_shape(shape)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))
    u = _uniform(key, shape, dtype, Array(lo), Array(np.array(1.0, dtype)))
    return lax.mul(np.array(np.sqrt(2), dtype), _bits.erf_inv(u))


def _next_toward(x, direction: float):
    """``nextafter(x, direction)`` for a float array and direction +inf or -inf."""
    itype = np.dtype(f"int{x.dtype.itemsize * 8}")
    b = _bits.bitcast_convert_type(x, itype)
    up = direction > 0
    # IEEE floats in sign-magnitude order: stepping away from zero adds 1 to the bit
    # pattern, towards zero subtracts 1; from +-0 the step is to the smallest denormal.
    away = fnp.where(x > 0, up, not up)
    stepped = fnp.where(away, b + 1, b - 1)
    tiny = np.array(np.nextafter(0.0, direction), x.dtype)
    out = fnp.where(x == 0, tiny, _bits.bitcast_convert_type(stepped, x.dtype))
    return fnp.where(fnp.isfinite(x), out, x)


def truncated_normal(key, lower, upper, shape: Sequence[int] | None = None, dtype=np.float32):
    """Standard normal floats conditioned on ``lower < x < upper``.

    Inverse-CDF sampling: ``u`` uniform between ``erf(lower/sqrt2)`` and
    ``erf(upper/sqrt2)``, then ``sqrt(2) * erf_inv(u)``, clipped into the open interval.

    Args:
        key: a PRNG key.
        lower: lower bound(s), broadcastable with ``upper`` and ``shape``.
        upper: upper bound(s).
        shape: output shape (default: the broadcast shape of the bounds).
        dtype: a float dtype (float32 default).

    Returns:
        An array of ``shape`` and ``dtype`` with values in ``(lower, upper)``.

    Example:
        >>> import numpy as np
        >>> from fgrad import random
        >>> x = np.asarray(random.truncated_normal(random.key(0), -2.0, 2.0, (1000,)))
        >>> bool((x > -2).all() and (x < 2).all())
        True
    """
    key = _check_key("truncated_normal", key)
    dtype = _float_dtype("truncated_normal", dtype)
    lower = fnp.asarray(lower) if not isinstance(lower, Array | Tracer) else lower
    upper = fnp.asarray(upper) if not isinstance(upper, Array | Tracer) else upper
    bshape = np.broadcast_shapes(tuple(lower.shape), tuple(upper.shape))
    shape = bshape if shape is None else _canonical_shape(shape)
    lower = _param(lower, dtype, shape, "truncated_normal", "lower")
    upper = _param(upper, dtype, shape, "truncated_normal", "upper")
    sqrt2 = np.array(np.sqrt(2), dtype)
    a = lax.erf(fnp.divide(lower, sqrt2))
    b = lax.erf(fnp.divide(upper, sqrt2))
    u = _uniform(key, shape, dtype, a, b)
    out = lax.mul(sqrt2, _bits.erf_inv(u))
    lo = _next_toward(lax.stop_gradient(lower), math.inf)
    hi = _next_toward(lax.stop_gradient(upper), -math.inf)
    return fnp.clip(out, lo, hi)


def gumbel(key, shape: Sequence[int] = (), dtype=np.float32, mode: str = "low"):
    """Standard Gumbel floats, ``-log(-log(u))``.

    Args:
        key: a PRNG key.
        shape: output shape.
        dtype: a float dtype (float32 default).
        mode: ``"low"`` (one uniform per value) or ``"high"`` (two, for a wider range
            of large values), as in JAX.

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> from fgrad import random
        >>> random.gumbel(random.key(0), (2, 3)).shape
        (2, 3)
    """
    key = _check_key("gumbel", key)
    dtype = _float_dtype("gumbel", dtype)
    shape = _canonical_shape(shape)
    finfo = np.finfo(dtype)
    if mode == "low":
        u = _uniform(
            key, shape, dtype, Array(np.array(finfo.tiny, dtype)), Array(np.ones((), dtype))
        )
        return -fnp.log(-fnp.log(u))
    if mode == "high":
        both = _unit_uniform(key, (2, *shape), dtype)
        high, low = both[0], both[1]
        x = fnp.where(high >= 0.5, high, high + 2.0**-finfo.nmant * low + finfo.tiny)
        return -fnp.log(-fnp.log1p(-x))
    raise ValueError(f"gumbel mode must be 'low' or 'high', got {mode!r}")


# ---------------------------------------------------------------- discrete distributions


def bernoulli(key, p=0.5, shape: Sequence[int] | None = None, mode: str = "low"):
    """Booleans that are True with probability ``p``.

    Args:
        key: a PRNG key.
        p: probability of True, a float or float array (a Python float is float32).
        shape: output shape (default: ``p``'s shape); ``p`` must broadcast to it.
        mode: ``"low"`` compares one uniform with ``p``; ``"high"`` adds a second for
            accuracy when ``p`` is below ~1e-7, as in JAX.

    Returns:
        A bool array of ``shape``.

    Example:
        >>> from fgrad import random
        >>> random.bernoulli(random.key(0), 0.5, (4,)).tolist()
        [False, False, True, True]
    """
    key = _check_key("bernoulli", key)
    p = fnp.asarray(p) if not isinstance(p, Array | Tracer) else p
    if not np.issubdtype(p.dtype, np.floating):
        raise TypeError(f"bernoulli probability `p` must have a floating dtype, got {p.dtype}")
    shape = tuple(p.shape) if shape is None else _canonical_shape(shape)
    p = _param(p, p.dtype, shape, "bernoulli", "p")
    dtype = np.dtype(p.dtype)
    if mode == "low":
        return fnp.less(_unit_uniform(key, shape, dtype), p)
    if mode == "high":
        both = _unit_uniform(key, (2, *shape), dtype)
        u1, u2 = both[0], both[1] * 2.0 ** -np.finfo(dtype).nmant
        return fnp.less(u2, p - u1)
    raise ValueError(f"got mode={mode!r}, expected 'high' or 'low'")


def _int_param(x: Any):
    """An integer bound as an fgrad array: Python ints as int64 (no overflow), floats
    truncated to int64, arrays as they are."""
    if isinstance(x, Array | Tracer):
        return x if np.issubdtype(x.dtype, np.integer) else x.astype(np.int64)
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.int64)
    if isinstance(x, int) and not isinstance(x, np.generic):
        a = np.asarray(x, np.int64)
    return Array(a)


def _convert_and_clip_integer(x, dtype: np.dtype):
    """Cast an integer array to ``dtype``, saturating at its range instead of wrapping."""
    src, dst = np.iinfo(x.dtype), np.iinfo(dtype)
    lo = Array(np.array(max(src.min, dst.min), x.dtype))
    hi = Array(np.array(min(src.max, dst.max), x.dtype))
    return fnp.clip(x, lo, hi).astype(dtype)


def _rem(x, y):
    """Remainder of unsigned integers, ``x - (x // y) * y``."""
    return lax.sub(x, lax.mul(lax.div(x, y), y))


def randint(key, shape: Sequence[int], minval, maxval, dtype=np.int32):
    """Uniform integers on ``[minval, maxval)``.

    Uses JAX's algorithm (two words of random bits reduced modulo the span), so the
    results equal ``jax.random.randint``; the modulo bias is below ``span / 2**32``.

    Args:
        key: a PRNG key.
        shape: output shape.
        minval: lower bound (inclusive), an int or int array broadcastable to ``shape``.
        maxval: upper bound (exclusive); bounds are clipped to ``dtype``'s range.
        dtype: an integer dtype (int32 default).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> from fgrad import random
        >>> random.randint(random.key(0), (5,), 0, 10).tolist()
        [9, 0, 2, 3, 1]
    """
    key = _check_key("randint", key)
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"randint only accepts integer dtypes, got {dtype}")
    shape = _canonical_shape(shape)
    info = np.iinfo(dtype)
    minval, maxval = _int_param(minval), _int_param(maxval)
    if info.bits < 32:
        # Narrow types are sampled as int32 (less modulo bias), then cast.
        minval = fnp.clip(minval.astype(np.int32), int(info.min), int(info.max))
        maxval = fnp.clip(maxval.astype(np.int32), int(info.min), int(info.max) + 1)
        return _randint(key, shape, minval, maxval, np.dtype(np.int32)).astype(dtype)
    return _randint(key, shape, minval, maxval, dtype)


def _randint(key, shape, minval, maxval, dtype: np.dtype):
    for name, v in (("minval", minval), ("maxval", maxval)):
        if not _broadcasts(v.shape, shape) or np.broadcast_shapes(tuple(v.shape), shape) != shape:
            raise ValueError(
                f"random.randint: {name} of shape {tuple(v.shape)} does not broadcast to "
                f"the requested shape {shape}"
            )
    dtype_max = _convert_and_clip_integer(Array(np.array(np.iinfo(dtype).max, dtype)), maxval.dtype)
    maxval_out_of_range = fnp.greater(maxval, dtype_max)
    minval = fnp.broadcast_to(_convert_and_clip_integer(minval, dtype), shape)
    maxval = fnp.broadcast_to(_convert_and_clip_integer(maxval, dtype), shape)
    maxval_out_of_range = fnp.broadcast_to(maxval_out_of_range, shape)

    nbits = np.iinfo(dtype).bits
    unsigned = np.dtype(_UINT_DTYPES[nbits])
    k1, k2 = split(key)
    higher_bits = _random_bits(k1, nbits, shape)
    lower_bits = _random_bits(k2, nbits, shape)

    one = Array(np.ones(shape, unsigned))
    # The span wraps like unsigned arithmetic; an empty range gives span 1 (-> minval).
    span = lax.convert_element_type(fnp.subtract(maxval, minval), unsigned)
    span = lax.select(fnp.less_equal(maxval, minval), one, span)
    # maxval above the dtype's max was clipped to it: widen by one so it is reachable.
    widen = fnp.logical_and(maxval_out_of_range, fnp.greater(maxval, minval))
    span = lax.select(widen, lax.add(span, one), span)
    # offset = (hi * 2**nbits + lo) mod span, computed without overflowing nbits.
    multiplier = _rem(Array(np.full(shape, 2 ** (nbits // 2), unsigned)), span)
    multiplier = _rem(lax.mul(multiplier, multiplier), span)
    offset = lax.add(lax.mul(_rem(higher_bits, span), multiplier), _rem(lower_bits, span))
    offset = _rem(offset, span)
    return lax.add(minval, lax.convert_element_type(offset, dtype))


def categorical(key, logits, axis: int = -1, shape: Sequence[int] | None = None, replace=True):
    """Sample category indices with probabilities ``softmax(logits, axis)``.

    Gumbel-max trick: ``argmax(logits + gumbel noise)``; without replacement, the
    Gumbel top-k trick (Kool et al. 2019).

    Args:
        key: a PRNG key.
        logits: unnormalised log-probabilities.
        axis: the axis holding the categories.
        shape: output shape; it must end with the batch shape (``logits.shape``
            without ``axis``), leading axes draw independent samples. Default: the
            batch shape.
        replace: sample with replacement (default) or without.

    Returns:
        An int32 array of ``shape``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import random
        >>> logits = fnp.log(fnp.asarray([0.1, 0.2, 0.7]))
        >>> random.categorical(random.key(0), logits, shape=(6,)).tolist()
        [1, 2, 2, 1, 2, 2]
    """
    key = _check_key("categorical", key)
    logits = fnp.asarray(logits) if not isinstance(logits, Array | Tracer) else logits
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float32)
    ndim = logits.ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for logits of rank {ndim}")
    axis_pos = axis % ndim
    batch_shape = tuple(d for i, d in enumerate(logits.shape) if i != axis_pos)
    if shape is None:
        shape = batch_shape
    else:
        shape = _canonical_shape(shape)
        tail = shape[len(shape) - len(batch_shape) :] if batch_shape else ()
        if (
            len(shape) < len(batch_shape)
            or not _broadcasts(tail, batch_shape)
            or (np.broadcast_shapes(tail, batch_shape) != tail)
        ):
            raise ValueError(
                f"random.categorical: shape {shape} must end with the batch shape "
                f"{batch_shape} (logits.shape without axis {axis})"
            )
    prefix = shape[: len(shape) - len(batch_shape)]
    if replace:
        logits_shape = list(shape[len(shape) - len(batch_shape) :])
        logits_shape.insert(axis_pos, logits.shape[axis_pos])
        noise = gumbel(key, (*prefix, *logits_shape), logits.dtype)
        expanded = lax.expand_dims(logits, tuple(range(len(prefix)))) if prefix else logits
        return fnp.argmax(noise + expanded, axis=axis_pos + len(prefix))
    k = math.prod(prefix)
    n = logits.shape[axis_pos]
    if k > n:
        raise ValueError(
            f"Number of samples without replacement ({k}) cannot exceed number of categories ({n})."
        )
    perturbed = fnp.moveaxis(logits + gumbel(key, tuple(logits.shape), logits.dtype), axis_pos, -1)
    top = lax.argsort(perturbed, axis=-1, descending=True)[..., :k]
    # (batch..., k) -> (k, batch...) -> shape
    top = fnp.moveaxis(top, -1, 0)
    return fnp.reshape(top, shape)


# ---------------------------------------------------------------- permutations and choice


def _shuffle(key, x, axis: int):
    # One stable sort by 32-bit random keys per round; more rounds for big arrays so
    # ties (equal keys, which keep their order) stay rare (JAX's rule: exponent 3).
    uint32max = np.iinfo(np.uint32).max
    num_rounds = int(np.ceil(3 * np.log(max(1, x.size)) / np.log(uint32max)))
    for _ in range(num_rounds):
        keys = split(key)
        key, subkey = keys[0], keys[1]
        sort_keys = _random_bits(subkey, 32, tuple(x.shape))
        order = lax.argsort(sort_keys, axis=axis)
        x = fnp.take_along_axis(x, order, axis)
    return x


def permutation(key, x, axis: int = 0, independent: bool = False):
    """A random permutation of ``arange(x)``, or of ``x``'s entries along ``axis``.

    Args:
        key: a PRNG key.
        x: an int n (permute ``arange(n)``) or an array.
        axis: the axis to permute along.
        independent: shuffle each slice along ``axis`` independently (default: one
            permutation of whole slices).

    Returns:
        The permuted array.

    Example:
        >>> from fgrad import random
        >>> random.permutation(random.key(0), 5).tolist()
        [0, 1, 4, 3, 2]
    """
    key = _check_key("permutation", key)
    if isinstance(x, int | np.integer) or (isinstance(x, np.ndarray | Array) and x.ndim == 0):
        if not np.issubdtype(np.asarray(x).dtype, np.integer):
            raise TypeError("x must be an integer or at least 1-dimensional")
        return _shuffle(key, fnp.arange(int(x)), 0)
    x = fnp.asarray(x) if not isinstance(x, Array | Tracer) else x
    if x.ndim == 0:
        raise TypeError("x must be an integer or at least 1-dimensional")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of rank {x.ndim}")
    axis %= x.ndim
    if independent or x.ndim == 1:
        return _shuffle(key, x, axis)
    order = _shuffle(key, fnp.arange(x.shape[axis]), 0)
    return fnp.take(x, order, axis)


def choice(key, a, shape: Sequence[int] = (), replace: bool = True, p=None, axis: int = 0):
    """Random samples from ``a`` (an array, or ``arange(a)`` for an int).

    Args:
        key: a PRNG key.
        a: an int n or an array; samples are taken along ``axis``.
        shape: shape of the samples.
        replace: with replacement (default) or without.
        p: optional probabilities of the entries (1-D, length ``a.shape[axis]``).
        axis: the axis of ``a`` to sample along.

    Returns:
        The samples: ``shape`` for an int ``a``, else ``a.shape`` with ``axis``
        replaced by ``shape``.

    Example:
        >>> from fgrad import random
        >>> random.choice(random.key(0), 10, (3,), replace=False).tolist()
        [0, 1, 8]
    """
    key = _check_key("choice", key)
    shape = _canonical_shape(shape)
    is_int = isinstance(a, int | np.integer) or (
        isinstance(a, np.ndarray | Array) and np.ndim(a) == 0
    )
    if is_int:
        n_inputs = int(a)
        arr = None
    else:
        arr = fnp.asarray(a) if not isinstance(a, Array | Tracer) else a
        if not -arr.ndim <= axis < arr.ndim:
            raise ValueError(f"axis {axis} is out of bounds for an array of rank {arr.ndim}")
        axis %= arr.ndim
        n_inputs = arr.shape[axis]
    n_draws = math.prod(shape)
    if n_draws == 0:
        out_shape = shape if arr is None else arr.shape[:axis] + shape + arr.shape[axis + 1 :]
        return fnp.zeros(out_shape, np.int32 if arr is None else arr.dtype)
    if n_inputs <= 0:
        raise ValueError("a must be greater than 0 unless no samples are taken")
    if not replace and n_draws > n_inputs:
        raise ValueError(
            f"Cannot take a larger sample (size {n_draws}) than population (size {n_inputs}) "
            f"when 'replace=False'"
        )
    if p is None:
        if replace:
            ind = randint(key, shape, 0, n_inputs)
            result = ind if arr is None else fnp.take(arr, ind, axis)
        else:
            perm = permutation(key, n_inputs if arr is None else arr, axis)
            result = _take_first(perm, n_draws, 0 if arr is None else axis)
    else:
        p = fnp.asarray(p) if not isinstance(p, Array | Tracer) else p
        if not np.issubdtype(p.dtype, np.floating):
            p = p.astype(np.float32)
        if tuple(p.shape) != (n_inputs,):
            raise ValueError(
                f"p must be None or a 1D vector with the same size as a.shape[axis]. "
                f"p has shape {tuple(p.shape)} and a.shape[axis] is {n_inputs}."
            )
        if replace:
            p_cuml = fnp.cumsum(p)
            r = p_cuml[-1] * (1 - uniform(key, shape, p.dtype))
            # searchsorted(p_cuml, r, side="left"): how many cumulative sums are < r.
            ind = fnp.sum(fnp.less(p_cuml, fnp.expand_dims(r, -1)), axis=-1).astype(np.int32)
        else:
            g = gumbel(key, (n_inputs,), p.dtype) + fnp.log(p)
            ind = lax.argsort(g, axis=0, descending=True)[:n_draws]
        result = ind if arr is None else fnp.take(arr, ind, axis)
    if arr is None:
        return fnp.reshape(result, shape)
    return fnp.reshape(result, arr.shape[:axis] + shape + arr.shape[axis + 1 :])


def _take_first(x, n: int, axis: int):
    """The first ``n`` entries of ``x`` along ``axis``."""
    limit = list(x.shape)
    limit[axis] = n
    return lax.slice(x, (0,) * x.ndim, tuple(limit))
