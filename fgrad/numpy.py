"""``fgrad.numpy``: the NumPy-like namespace, written on ``fgrad.lax``.

Everything here is a composition of primitives, so it works eagerly, under ``grad``,
``jvp`` and ``jit`` alike. This module also installs the operators and methods of
fgrad's arrays and tracers (``x + y``, ``x.sum()``, ``x[idx]``, ``x.at[idx].set(v)``).

Dtypes follow NumPy 2's promotion rules (NEP 50): Python scalars are weak
(``x32 * 2.0`` stays float32); creating an array from Python floats/ints gives
float32/int32, as JAX does by default; NumPy arrays and scalars keep their dtype.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np

from fgrad import lax
from fgrad.core import (
    Array,
    FgradTypeError,
    Tracer,
    is_float_dtype,
    python_scalar_dtype,
    user_frame,
)
from fgrad.lax import indexing as _ix
from fgrad.lax.elementwise import add_p as _add_p
from fgrad.lax.elementwise import div_p as _div_p
from fgrad.lax.elementwise import max_p as _max_p
from fgrad.lax.elementwise import min_p as _min_p
from fgrad.lax.elementwise import mul_p as _mul_p
from fgrad.lax.elementwise import sub_p as _sub_p

# ---------------------------------------------------------------- dtypes and constants

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int16, int32, int64 = np.int8, np.int16, np.int32, np.int64
uint8, uint16, uint32, uint64 = np.uint8, np.uint16, np.uint32, np.uint64
bool_ = np.bool_
dtype = np.dtype
finfo, iinfo = np.finfo, np.iinfo
pi, e, inf, nan = math.pi, math.e, math.inf, math.nan
newaxis = None
ndarray = Array
issubdtype = np.issubdtype
floating, integer, number, signedinteger, unsignedinteger = (
    np.floating,
    np.integer,
    np.number,
    np.signedinteger,
    np.unsignedinteger,
)


def _is_python_scalar(x: Any) -> bool:
    return isinstance(x, bool | int | float) and not isinstance(x, np.generic)


def _default_dtype(np_dtype: np.dtype) -> np.dtype:
    """Python-originated float64/int64 data becomes float32/int32 (JAX's defaults)."""
    if np_dtype == np.float64:
        return np.dtype(np.float32)
    if np_dtype == np.int64:
        return np.dtype(np.int32)
    return np_dtype


# ---------------------------------------------------------------- array creation


def asarray(a: Any, dtype: Any = None) -> Any:
    """Convert to an fgrad array (tracers pass through).

    Python floats/ints become float32/int32; NumPy arrays and scalars keep their
    dtype; the data is copied from NumPy so later mutation cannot change it.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> fnp.asarray([1.0, 2.0]).dtype
        dtype('float32')
        >>> fnp.asarray(np.float64(1.5)).dtype
        dtype('float64')
    """
    if isinstance(a, Array | Tracer):
        return a if dtype is None else a.astype(dtype)
    if _is_python_scalar(a):
        return Array(np.asarray(a, dtype=dtype or python_scalar_dtype(a)))
    if isinstance(a, np.ndarray | np.generic):
        return Array(np.array(a, dtype=dtype, copy=True))
    if isinstance(a, list | tuple):
        if builtins.any(isinstance(v, Tracer | Array) for v in _iter_nested(a)):
            return (
                stack([asarray(v) for v in a]).astype(dtype)
                if dtype
                else stack([asarray(v) for v in a])
            )
        arr = np.asarray(a)
        if dtype is None and _all_python(a):
            arr = arr.astype(_default_dtype(arr.dtype))
        return Array(np.array(arr, dtype=dtype, copy=True))
    if hasattr(a, "__array__"):
        return Array(np.array(a, dtype=dtype, copy=True))
    raise TypeError(f"cannot convert {type(a).__name__} to an fgrad array")


def _iter_nested(a):
    for v in a:
        if isinstance(v, list | tuple):
            yield from _iter_nested(v)
        else:
            yield v


def _all_python(a) -> bool:
    return builtins.all(_is_python_scalar(v) for v in _iter_nested(a))


array = asarray


def _arr(x: Any) -> Any:
    return x if isinstance(x, Array | Tracer) else asarray(x)


def zeros(shape, dtype=None) -> Array:
    """Array of zeros (float32 by default)."""
    return full(shape, 0, dtype or float32)


def ones(shape, dtype=None) -> Array:
    """Array of ones (float32 by default)."""
    return full(shape, 1, dtype or float32)


def full(shape, fill_value, dtype=None):
    """Array of ``shape`` filled with ``fill_value``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> fnp.full((2,), 7.0).tolist()
        [7.0, 7.0]
    """
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    if isinstance(fill_value, Tracer):
        v = fill_value if dtype is None else fill_value.astype(dtype)
        return lax.broadcast_in_dim(v, shape, tuple(range(len(shape) - v.ndim, len(shape))))
    if dtype is None:
        dtype = (
            python_scalar_dtype(fill_value)
            if _is_python_scalar(fill_value)
            else np.asarray(fill_value).dtype
        )
    return Array(np.full(shape, fill_value, dtype=dtype))


def zeros_like(a, dtype=None, shape=None):
    """Zeros with the shape and dtype of ``a``."""
    return full(np.shape(a) if shape is None else shape, 0, dtype or _dtype_of(a))


def ones_like(a, dtype=None, shape=None):
    """Ones with the shape and dtype of ``a``."""
    return full(np.shape(a) if shape is None else shape, 1, dtype or _dtype_of(a))


def full_like(a, fill_value, dtype=None, shape=None):
    """``fill_value`` with the shape and dtype of ``a``."""
    return full(np.shape(a) if shape is None else shape, fill_value, dtype or _dtype_of(a))


def empty(shape, dtype=None):
    """Same as ``zeros`` (fgrad arrays are immutable, so there is nothing to leave empty)."""
    return zeros(shape, dtype)


def empty_like(a, dtype=None):
    """Same as ``zeros_like``."""
    return zeros_like(a, dtype)


def _dtype_of(a) -> np.dtype:
    return a.dtype if hasattr(a, "dtype") else asarray(a).dtype


def arange(start, stop=None, step=1, dtype=None) -> Array:
    """Evenly spaced values in ``[start, stop)``; int32 for integer arguments.

    Example:
        >>> import fgrad.numpy as fnp
        >>> fnp.arange(3).tolist()
        [0, 1, 2]
    """
    if stop is None:
        start, stop = 0, start
    out = np.arange(start, stop, step)
    if dtype is None:
        all_py = builtins.all(_is_python_scalar(v) for v in (start, stop, step))
        dtype = _default_dtype(out.dtype) if all_py else out.dtype
    return Array(out.astype(dtype))


def linspace(start, stop, num=50, endpoint=True, dtype=None) -> Array:
    """``num`` evenly spaced values from ``start`` to ``stop`` (float32 by default)."""
    return Array(np.linspace(start, stop, num, endpoint=endpoint).astype(dtype or float32))


def eye(N, M=None, k=0, dtype=None) -> Array:
    """Identity-like matrix (float32 by default)."""
    return Array(np.eye(N, M, k, dtype=dtype or float32))


def identity(n, dtype=None) -> Array:
    """Square identity matrix."""
    return eye(n, dtype=dtype)


def tri(N, M=None, k=0, dtype=None) -> Array:
    """Ones at and below the k-th diagonal."""
    return Array(np.tri(N, M, k, dtype=dtype or float32))


def tril(m, k=0):
    """Lower triangle of the last two axes."""
    m = _arr(m)
    mask = np.tri(m.shape[-2], m.shape[-1], k, dtype=bool)
    return where(mask, m, zeros_like(m))


def triu(m, k=0):
    """Upper triangle of the last two axes."""
    m = _arr(m)
    mask = ~np.tri(m.shape[-2], m.shape[-1], k - 1, dtype=bool)
    return where(mask, m, zeros_like(m))


# ---------------------------------------------------------------- promotion and broadcasting


def result_type(*args) -> np.dtype:
    """Promoted dtype under NumPy 2 (NEP 50) rules; Python scalars are weak."""
    typed = [a if _is_python_scalar(a) else np.dtype(_dtype_of(a)) for a in args]
    return np.result_type(*typed)


def _promote(name: str, *args):
    """Cast to one dtype and broadcast to one shape (rank-0 operands stay rank-0)."""
    if len(args) == 2:
        x, y = args
        tx, ty = type(x), type(y)
        if tx is Array:
            vx = x._v
            sx, dx = vx.shape, vx.dtype
        elif isinstance(x, Tracer):
            sx, dx = x.aval.shape, x.aval.dtype
        else:
            sx = None
        if ty is Array:
            vy = y._v
            sy, dy = vy.shape, vy.dtype
        elif isinstance(y, Tracer):
            sy, dy = y.aval.shape, y.aval.dtype
        else:
            sy = None
        if sx is not None and sy is not None:
            # The hot path: two typed operands of one dtype need no cast.
            if dx == dy:
                if sx == sy or not sx or not sy:
                    return [x, y]
                shape = _broadcast_shape(sx, sy)
                if shape is not None:
                    return [
                        x if sx == shape else broadcast_to(x, shape),
                        y if sy == shape else broadcast_to(y, shape),
                    ]
        elif sx is not None and (ty is float or ty is int):
            # A weak Python scalar takes the array's dtype, except a float with an
            # integer array (NEP 50 widens that: leave it to the general path).
            if dx.kind == "f" or (ty is int and dx.kind in "iu" and _fits(y, dx)):
                return [x, _scalar_const(y, dx)]
        elif sy is not None and (tx is float or tx is int):
            if dy.kind == "f" or (tx is int and dy.kind in "iu" and _fits(x, dy)):
                return [_scalar_const(x, dy), y]
    return _promote_slow(name, *args)


_BROADCAST_SHAPES: dict = {}


def _broadcast_shape(sx: tuple, sy: tuple):
    """NumPy's broadcast of two shapes (cached), or None if they do not broadcast."""
    key = (sx, sy)
    shape = _BROADCAST_SHAPES.get(key)
    if shape is None:
        try:
            shape = np.broadcast_shapes(sx, sy)
        except ValueError:
            return None
        if len(_BROADCAST_SHAPES) >= 1024:
            _BROADCAST_SHAPES.clear()
        _BROADCAST_SHAPES[key] = shape
    return shape


_SCALAR_CONSTS: dict = {}


def _scalar_const(value: Any, dt: np.dtype) -> Array:
    """A Python scalar as a rank-0 Array of dtype ``dt``; Arrays are immutable, so the
    constants of hot loops (``x * 2.0``, ``1.0 - p``) are cached."""
    ty = type(value)
    # 0.0 == -0.0 (and hash alike): the sign is part of the key.
    key = (ty, value, dt, math.copysign(1.0, value) if ty is float else 0)
    a = _SCALAR_CONSTS.get(key)
    if a is None:
        a = Array(np.asarray(value, dtype=dt))
        if len(_SCALAR_CONSTS) >= 1024:
            _SCALAR_CONSTS.clear()
        _SCALAR_CONSTS[key] = a
    return a


def _fits(value: int, dtype: np.dtype) -> bool:
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def _promote_slow(name: str, *args):
    dt = result_type(*args)
    ops = []
    for a in args:
        if _is_python_scalar(a):
            ops.append(Array(np.asarray(a, dtype=dt)))
        else:
            a = _arr(a)
            ops.append(a if a.dtype == dt else lax.convert_element_type(a, dt))
    shapes = [tuple(o.shape) for o in ops]
    nonscalar = {s for s in shapes if s != ()}
    if len(nonscalar) <= 1:
        return ops
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        shown = ", ".join(str(s) for s in shapes)
        raise FgradTypeError(
            f"{name}: incompatible shapes for broadcasting: {shown} at {user_frame()}"
        ) from None
    return [o if tuple(o.shape) in ((), shape) else broadcast_to(o, shape) for o in ops]


def broadcast_to(x, shape):
    """Broadcast ``x`` to ``shape`` with NumPy's rules."""
    x = _arr(x)
    shape = tuple(shape)
    x_shape = tuple(x.shape)
    if x_shape == shape:
        return x
    plan = _BROADCAST_PLANS.get((x_shape, shape))
    if plan is None:
        plan = _broadcast_plan(x_shape, shape)
    squeezed, dims = plan
    if squeezed is not None:
        x = lax.reshape(x, squeezed)
    return lax.broadcast_in_dim(x, shape, dims)


_BROADCAST_PLANS: dict = {}


def _broadcast_plan(x_shape: tuple, shape: tuple):
    """How ``broadcast_to`` maps ``x_shape`` onto ``shape`` (cached): the shape to
    squeeze ``x`` to first (or None) and the broadcast dimensions."""
    try:
        np.broadcast_shapes(x_shape, shape)
        if len(shape) < len(x_shape):
            raise ValueError
    except ValueError:
        raise FgradTypeError(
            f"broadcast_to: cannot broadcast shape {x_shape} to {shape} at {user_frame()}"
        ) from None
    lead = len(shape) - len(x_shape)
    # Axes of size 1 stretched by broadcasting are squeezed first, then re-added.
    keep = [i for i, n in enumerate(x_shape) if not (n == 1 and shape[lead + i] != 1)]
    squeezed = [x_shape[i] for i in keep] if len(keep) != len(x_shape) else None
    plan = (squeezed, tuple(lead + i for i in keep))
    if len(_BROADCAST_PLANS) >= 1024:
        _BROADCAST_PLANS.clear()
    _BROADCAST_PLANS[(x_shape, shape)] = plan
    return plan


def broadcast_arrays(*args):
    """Broadcast all arguments to one shape."""
    shape = np.broadcast_shapes(*[tuple(_arr(a).shape) for a in args])
    return [broadcast_to(a, shape) for a in args]


def _float_operand(name: str, x):
    """Promote integer/bool inputs of transcendental functions to float (as NumPy)."""
    x = _arr(x)
    if not is_float_dtype(x.dtype):
        # NumPy's ufunc choice: the smallest float that holds the integer type exactly
        # (bool/int8 -> float16, int16 -> float32, int32/int64 -> float64).
        x = lax.convert_element_type(x, np.promote_types(x.dtype, np.float16))
    return x


# ---------------------------------------------------------------- elementwise arithmetic


def add(x, y):
    """Elementwise ``x + y`` with broadcasting."""
    return _add_p.bind(*_promote("add", x, y))  # promoted: no lax.add checks needed


def subtract(x, y):
    """Elementwise ``x - y`` with broadcasting."""
    return _sub_p.bind(*_promote("subtract", x, y))


def multiply(x, y):
    """Elementwise ``x * y`` with broadcasting."""
    return _mul_p.bind(*_promote("multiply", x, y))


def divide(x, y):
    """Elementwise true division; integer and bool inputs give float64 (as NumPy)."""
    x, y = _promote("divide", x, y)
    if not is_float_dtype(x.dtype):
        # Unlike the unary functions, NumPy's true_divide has only a float64 loop for them.
        x, y = lax.convert_element_type(x, np.float64), lax.convert_element_type(y, np.float64)
    return _div_p.bind(x, y)


true_divide = divide


def floor_divide(x, y):
    """Elementwise floor division ``x // y``."""
    x, y = _promote("floor_divide", x, y)
    if is_float_dtype(x.dtype):
        return lax.floor(lax.div(x, y))
    q = lax.div(x, y)  # rounds toward zero; step down where the signs differ and inexact
    inexact = lax.ne(lax.mul(q, y), x)
    signs_differ = lax.ne(lax.lt(x, 0), lax.lt(y, 0))
    return where(logical_and(inexact, signs_differ), q - 1, q)


def remainder(x, y):
    """Elementwise remainder with the sign of ``y`` (Python's ``%``)."""
    x, y = _promote("remainder", x, y)
    return x - floor_divide(x, y) * y


mod = remainder


def power(x, y):
    """Elementwise ``x ** y``; a Python-int exponent uses ``integer_pow``."""
    if isinstance(y, int) and not isinstance(y, bool):
        x = _bool_to_int8(_arr(x))
        if y < 0 and not is_float_dtype(x.dtype):
            raise ValueError("Integers to negative integer powers are not allowed (as NumPy)")
        return lax.integer_pow(x, y)
    x, y = _promote("power", x, y)
    if np.issubdtype(x.dtype, np.integer):
        return _integer_power(x, y)
    if not is_float_dtype(x.dtype):
        x, y = _float_operand("power", x), _float_operand("power", y)
    return lax.pow(x, y)


def _integer_power(x, y):
    """``x ** y`` for integer arrays, exactly, by square-and-multiply (NumPy keeps ints)."""
    known = not isinstance(y, Tracer)
    if known and (np.asarray(y) < 0).any():
        raise ValueError("Integers to negative integer powers are not allowed (as NumPy)")
    # One step per bit of the exponent: as many as the largest one needs when it is known.
    bits = int(np.max(np.asarray(y), initial=0)).bit_length() if known else 8 * y.dtype.itemsize
    shape = np.broadcast_shapes(tuple(x.shape), tuple(y.shape))
    base, e = broadcast_to(x, shape), broadcast_to(y, shape)
    result = full(shape, 1, x.dtype)
    for _ in range(bits):
        result = where(lax.ne(lax.bitwise_and(e, 1), 0), result * base, result)
        base, e = base * base, lax.div(e, 2)
    return result


def negative(x):
    """Elementwise ``-x``."""
    return lax.neg(_arr(x))


def positive(x):
    """Elementwise ``+x``."""
    return _arr(x)


def reciprocal(x):
    """Elementwise ``1 / x``."""
    return divide(1.0, x)


def square(x):
    """Elementwise ``x * x``."""
    return lax.integer_pow(_bool_to_int8(_arr(x)), 2)


def _bool_to_int8(x):
    # NumPy squares (and raises to Python-int powers) booleans as int8.
    return lax.convert_element_type(x, np.int8) if x.dtype == np.bool_ else x


def maximum(x, y):
    """Elementwise maximum (at ties the gradient is split evenly, as in JAX)."""
    return _max_p.bind(*_promote("maximum", x, y))


def minimum(x, y):
    """Elementwise minimum (at ties the gradient is split evenly, as in JAX)."""
    return _min_p.bind(*_promote("minimum", x, y))


def _unary_float(name: str, fn):
    def f(x):
        return fn(_float_operand(name, x))

    f.__name__ = name
    f.__doc__ = f"Elementwise ``{name}`` (integer inputs are promoted to float)."
    return f


exp = _unary_float("exp", lax.exp)
log = _unary_float("log", lax.log)
log1p = _unary_float("log1p", lax.log1p)
expm1 = _unary_float("expm1", lax.expm1)
sqrt = _unary_float("sqrt", lax.sqrt)
tanh = _unary_float("tanh", lax.tanh)
sin = _unary_float("sin", lax.sin)
cos = _unary_float("cos", lax.cos)
tan = _unary_float("tan", lax.tan)


def log2(x):
    """Elementwise base-2 logarithm."""
    return log(x) / math.log(2.0)


def log10(x):
    """Elementwise base-10 logarithm."""
    return log(x) / math.log(10.0)


def exp2(x):
    """Elementwise ``2 ** x``."""
    return exp(_float_operand("exp2", x) * math.log(2.0))


def abs(x):  # noqa: A001
    """Elementwise absolute value (derivative 1 at 0, as in JAX)."""
    return lax.abs(_arr(x))


absolute = abs


def sign(x):
    """Elementwise sign."""
    return lax.sign(_arr(x))


def floor(x):
    """Elementwise floor."""
    return lax.floor(_float_operand("floor", x))


def ceil(x):
    """Elementwise ceiling."""
    return lax.ceil(_float_operand("ceil", x))


def round(x, decimals: int = 0):  # noqa: A001
    """Round half to even, as NumPy."""
    x = _arr(x)
    if not is_float_dtype(x.dtype):
        return x
    if decimals:
        f = 10.0**decimals
        return lax.round(x * f, lax.RoundingMethod.TO_NEAREST_EVEN) / f
    return lax.round(x, lax.RoundingMethod.TO_NEAREST_EVEN)


around = round


def logaddexp(x, y):
    """``log(exp(x) + exp(y))`` computed without overflow."""
    x, y = _promote("logaddexp", x, y)
    x, y = _float_operand("logaddexp", x), _float_operand("logaddexp", y)
    hi, lo = maximum(x, y), minimum(x, y)
    # lo - hi rather than -|x - y|: at ties max/min split the gradient evenly, giving
    # JAX's 0.5 each (abs' one-sided derivative would not); equal infinities give 0.
    delta = where(equal(lo, hi), zeros_like(lo), lo - hi)
    return hi + log1p(exp(delta))


def clip(x, min=None, max=None, *, a_min=None, a_max=None):  # noqa: A002
    """Clamp to ``[min, max]`` (either may be None)."""
    lo = min if min is not None else a_min
    hi = max if max is not None else a_max
    x = _arr(x)
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def where(condition, x=None, y=None):
    """Elementwise ``x if condition else y``; with one argument, ``nonzero``."""
    if x is None and y is None:
        return nonzero(condition)
    c = _arr(condition)
    if c.dtype != np.bool_:
        c = lax.ne(c, lax.convert_element_type(Array(np.zeros((), c.dtype)), c.dtype))
    x, y = _promote("where", x, y)
    shape = np.broadcast_shapes(tuple(c.shape), tuple(x.shape), tuple(y.shape))
    c = c if tuple(c.shape) in ((), shape) else broadcast_to(c, shape)
    x = x if tuple(x.shape) == shape else broadcast_to(x, shape)
    y = y if tuple(y.shape) == shape else broadcast_to(y, shape)
    return lax.select_n(c, y, x)


def nonzero(a):
    """Indices of non-zero entries (needs a concrete array: its size is data-dependent)."""
    return tuple(Array(i.astype(np.int32)) for i in np.nonzero(np.asarray(a)))


# ---------------------------------------------------------------- comparisons and logic


def _compare(name, fn):
    def f(x, y):
        return fn(*_promote(name, x, y))

    f.__name__ = name
    f.__doc__ = f"Elementwise ``{name}`` comparison (bool result)."
    return f


equal = _compare("equal", lax.eq)
not_equal = _compare("not_equal", lax.ne)
less = _compare("less", lax.lt)
less_equal = _compare("less_equal", lax.le)
greater = _compare("greater", lax.gt)
greater_equal = _compare("greater_equal", lax.ge)


def _as_bool(x):
    x = _arr(x)
    return x if x.dtype == np.bool_ else not_equal(x, 0)


def logical_and(x, y):
    """Elementwise logical AND."""
    return lax.bitwise_and(*_promote("logical_and", _as_bool(x), _as_bool(y)))


def logical_or(x, y):
    """Elementwise logical OR."""
    return lax.bitwise_or(*_promote("logical_or", _as_bool(x), _as_bool(y)))


def logical_xor(x, y):
    """Elementwise logical XOR."""
    return lax.bitwise_xor(*_promote("logical_xor", _as_bool(x), _as_bool(y)))


def logical_not(x):
    """Elementwise logical NOT."""
    return lax.bitwise_not(_as_bool(x))


def bitwise_and(x, y):
    """Elementwise bitwise AND."""
    return lax.bitwise_and(*_promote("bitwise_and", x, y))


def bitwise_or(x, y):
    """Elementwise bitwise OR."""
    return lax.bitwise_or(*_promote("bitwise_or", x, y))


def bitwise_xor(x, y):
    """Elementwise bitwise XOR."""
    return lax.bitwise_xor(*_promote("bitwise_xor", x, y))


def invert(x):
    """Elementwise bitwise NOT."""
    return lax.bitwise_not(_arr(x))


def isnan(x):
    """Elementwise NaN test."""
    x = _arr(x)
    return lax.ne(x, x) if is_float_dtype(x.dtype) else full_like(x, False, bool_)


def isinf(x):
    """Elementwise infinity test."""
    x = _arr(x)
    if not is_float_dtype(x.dtype):
        return full_like(x, False, bool_)
    return lax.eq(lax.abs(x), Array(np.asarray(np.inf, x.dtype)))


def isfinite(x):
    """Elementwise test for finite values (not NaN, not inf)."""
    x = _arr(x)
    if not is_float_dtype(x.dtype):
        return full_like(x, True, bool_)
    return lax.lt(lax.abs(x), Array(np.asarray(np.inf, x.dtype)))


def isclose(a, b, rtol=1e-05, atol=1e-08):
    """Elementwise ``|a - b| <= atol + rtol * |b|``."""
    return less_equal(abs(subtract(a, b)), atol + rtol * abs(_arr(b)))


def allclose(a, b, rtol=1e-05, atol=1e-08):
    """True when every element is close."""
    return all(isclose(a, b, rtol, atol))


def array_equal(a, b) -> bool:
    """True when shapes and all values are equal."""
    a, b = _arr(a), _arr(b)
    return tuple(a.shape) == tuple(b.shape) and bool(all(equal(a, b)))


# ---------------------------------------------------------------- reductions


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    out = []
    for a in (axis,) if isinstance(axis, int | np.integer) else axis:
        if not -ndim <= a < ndim:
            raise FgradTypeError(
                f"axis {a} is out of range for an array of rank {ndim} at {user_frame()}"
            )
        out.append(int(a) % ndim)
    return tuple(sorted(out))


def _keep(out, x_shape, axes, keepdims):
    if not keepdims:
        return out
    shape = tuple(1 if i in axes else n for i, n in enumerate(x_shape))
    return lax.reshape(out, shape)


_SUM_DTYPES: dict = {}


def _sum_dtype(dt: np.dtype) -> np.dtype:
    """NumPy's accumulator dtype for ``sum`` (bools and small ints widen)."""
    out = _SUM_DTYPES.get(dt)
    if out is None:
        out = _SUM_DTYPES[dt] = np.sum(np.zeros(1, dt)).dtype
    return out


def sum(a, axis=None, dtype=None, keepdims=False):  # noqa: A001
    """Sum over ``axis`` (all axes by default); bools/small ints widen as in NumPy."""
    a = _arr(a)
    out_dtype = dtype or _sum_dtype(a.dtype)
    if a.dtype != out_dtype:
        a = lax.convert_element_type(a, out_dtype)
    axes = _axes(axis, a.ndim)
    return _keep(lax.reduce_sum(a, axes), a.shape, axes, keepdims)


def mean(a, axis=None, dtype=None, keepdims=False):
    """Arithmetic mean over ``axis``."""
    a = _arr(a)
    if dtype is not None:
        a = _astype(a, dtype)
    elif not is_float_dtype(a.dtype):
        a = lax.convert_element_type(a, np.float64)
    axes = _axes(axis, a.ndim)
    n = math.prod([a.shape[i] for i in axes])
    return sum(a, axis, keepdims=keepdims) / float(n)


def var(a, axis=None, ddof=0, keepdims=False):
    """Variance over ``axis`` (``ddof`` as NumPy)."""
    a = _arr(a)
    if not is_float_dtype(a.dtype):
        a = lax.convert_element_type(a, np.float64)
    axes = _axes(axis, a.ndim)
    n = math.prod([a.shape[i] for i in axes])
    centered = a - mean(a, axis, keepdims=True)
    return sum(square(centered), axis, keepdims=keepdims) / float(n - ddof)


def std(a, axis=None, ddof=0, keepdims=False):
    """Standard deviation over ``axis``."""
    return sqrt(var(a, axis, ddof, keepdims))


def max(a, axis=None, keepdims=False, initial=None):  # noqa: A001
    """Maximum over ``axis``."""
    a = _arr(a)
    axes = _axes(axis, a.ndim)
    if initial is None and builtins.any(a.shape[i] == 0 for i in axes):
        raise ValueError("zero-size array to reduction operation max which has no identity")
    out = _keep(lax.reduce_max(a, axes), a.shape, axes, keepdims)
    return out if initial is None else maximum(out, initial)


def min(a, axis=None, keepdims=False, initial=None):  # noqa: A001
    """Minimum over ``axis``."""
    a = _arr(a)
    axes = _axes(axis, a.ndim)
    if initial is None and builtins.any(a.shape[i] == 0 for i in axes):
        raise ValueError("zero-size array to reduction operation min which has no identity")
    out = _keep(lax.reduce_min(a, axes), a.shape, axes, keepdims)
    return out if initial is None else minimum(out, initial)


amax, amin = max, min


def prod(a, axis=None, keepdims=False):
    """Product over ``axis``; bools/small ints widen as in NumPy."""
    a = _arr(a)
    out_dtype = np.prod(np.ones(1, a.dtype)).dtype
    if a.dtype != out_dtype:
        a = lax.convert_element_type(a, out_dtype)
    axes = _axes(axis, a.ndim)
    return _keep(lax.reduce_prod(a, axes), a.shape, axes, keepdims)


def any(a, axis=None, keepdims=False):  # noqa: A001
    """True where any element along ``axis`` is true."""
    a = _as_bool(a)
    axes = _axes(axis, a.ndim)
    return _keep(lax.reduce_max(a, axes), a.shape, axes, keepdims)


def all(a, axis=None, keepdims=False):  # noqa: A001
    """True where every element along ``axis`` is true."""
    a = _as_bool(a)
    axes = _axes(axis, a.ndim)
    return _keep(lax.reduce_min(a, axes), a.shape, axes, keepdims)


def count_nonzero(a, axis=None):
    """Number of non-zero entries."""
    return sum(_as_bool(a), axis)


def argmax(a, axis=None, keepdims=False):
    """Index of the first maximum (over the flattened array when ``axis`` is None)."""
    a = _arr(a)
    if axis is None:
        out = lax.argmax(ravel(a), 0)
        return lax.reshape(out, (1,) * a.ndim) if keepdims else out
    out = lax.argmax(a, axis)
    return _keep(out, a.shape, (axis % a.ndim,), keepdims)


def argmin(a, axis=None, keepdims=False):
    """Index of the first minimum (over the flattened array when ``axis`` is None)."""
    a = _arr(a)
    if axis is None:
        out = lax.argmin(ravel(a), 0)
        return lax.reshape(out, (1,) * a.ndim) if keepdims else out
    out = lax.argmin(a, axis)
    return _keep(out, a.shape, (axis % a.ndim,), keepdims)


def cumsum(a, axis=None, dtype=None):
    """Cumulative sum (over the flattened array when ``axis`` is None); ints widen as NumPy."""
    a = _arr(a)
    dtype = dtype or np.cumsum(np.zeros(1, a.dtype)).dtype
    if a.dtype != dtype:
        a = a.astype(dtype)
    if axis is None:
        a, axis = ravel(a), 0
    return lax.cumsum(a, axis)


def argsort(a, axis=-1, stable=True, descending=False):
    """Stable sorting permutation along ``axis``."""
    del stable
    return lax.argsort(_arr(a), axis, descending)


def sort(a, axis=-1, descending=False):
    """Sorted copy along ``axis``; differentiable (gradients follow the permutation)."""
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    out = take_along_axis(a, lax.argsort(a, axis), axis)
    # Descending is the stable ascending sort reversed, as jnp.sort does (this fixes
    # which of several equal elements each gradient entry goes to).
    return flip(out, axis) if descending else out


def logsumexp(a, axis=None, keepdims=False):
    """``log(sum(exp(a)))`` computed stably (shifted by the stop-gradient max)."""
    a = _float_operand("logsumexp", a)
    axes = _axes(axis, a.ndim)
    m = lax.stop_gradient(max(a, axis, keepdims=True))
    m = where(isfinite(m), m, zeros_like(m))
    out = log(sum(exp(a - m), axis, keepdims=True)) + m
    return (
        out if keepdims else lax.reshape(out, [n for i, n in enumerate(a.shape) if i not in axes])
    )


# ---------------------------------------------------------------- shapes


def reshape(a, newshape=None, order="C", *, shape=None):
    """Reshape (row-major); one dimension may be -1."""
    if order != "C":
        raise ValueError("fgrad.numpy.reshape supports only order='C'")
    a = _arr(a)
    newshape = shape if newshape is None else newshape
    newshape = (newshape,) if isinstance(newshape, int | np.integer) else tuple(newshape)
    if -1 in newshape:
        known = math.prod([d for d in newshape if d != -1])
        if newshape.count(-1) > 1 or known == 0 or a.size % known:
            raise FgradTypeError(
                f"reshape: cannot reshape {tuple(a.shape)} into {newshape} at {user_frame()}"
            )
        newshape = tuple(a.size // known if d == -1 else d for d in newshape)
    return lax.reshape(a, newshape)


def ravel(a):
    """Flatten to one axis."""
    a = _arr(a)
    return lax.reshape(a, (a.size,))


def transpose(a, axes=None):
    """Permute axes (reverse them by default)."""
    a = _arr(a)
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(x % a.ndim for x in axes)
    return lax.transpose(a, axes)


def swapaxes(a, axis1, axis2):
    """Exchange two axes."""
    a = _arr(a)
    perm = list(range(a.ndim))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return lax.transpose(a, perm)


def moveaxis(a, source, destination):
    """Move an axis to a new position."""
    a = _arr(a)
    perm = [i for i in range(a.ndim) if i != source % a.ndim]
    perm.insert(destination % a.ndim, source % a.ndim)
    return lax.transpose(a, perm)


def expand_dims(a, axis):
    """Insert size-1 axes."""
    a = _arr(a)
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return lax.expand_dims(a, axis)


def squeeze(a, axis=None):
    """Remove size-1 axes (all of them by default)."""
    a = _arr(a)
    if axis is None:
        axis = tuple(i for i, n in enumerate(a.shape) if n == 1)
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return lax.squeeze(a, axis)


def atleast_1d(a):
    """View as at least 1-D."""
    a = _arr(a)
    return reshape(a, (1,)) if a.ndim == 0 else a


def atleast_2d(a):
    """View as at least 2-D."""
    a = _arr(a)
    return reshape(a, (1,) * (2 - a.ndim) + tuple(a.shape)) if a.ndim < 2 else a


def concatenate(arrays, axis=0):
    """Join arrays along an existing axis (with dtype promotion)."""
    arrays = [_arr(a) for a in arrays]
    dt = result_type(*arrays)
    arrays = [a.astype(dt) if a.dtype != dt else a for a in arrays]
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    return lax.concatenate(arrays, axis % arrays[0].ndim)


def stack(arrays, axis=0):
    """Join arrays along a new axis."""
    arrays = [_arr(a) for a in arrays]
    nd = arrays[0].ndim + 1
    return concatenate([expand_dims(a, axis % nd) for a in arrays], axis % nd)


def hstack(arrays):
    """Stack along axis 1 (axis 0 for 1-D inputs)."""
    arrays = [atleast_1d(a) for a in arrays]
    return concatenate(arrays, 0 if arrays[0].ndim == 1 else 1)


def vstack(arrays):
    """Stack along axis 0 (1-D inputs become rows)."""
    return concatenate([atleast_2d(a) for a in arrays], 0)


def split(a, indices_or_sections, axis=0):
    """Split into equal sections or at the given indices."""
    a = _arr(a)
    n = a.shape[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(f"split: axis of size {n} does not divide into {indices_or_sections}")
        step = n // indices_or_sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        start = [0] * a.ndim
        stop = list(a.shape)
        start[axis], stop[axis] = lo, builtins.max(lo, hi)
        out.append(lax.slice(a, start, stop))
    return out


def array_split(a, sections, axis=0):
    """Split into ``sections`` nearly equal parts."""
    n = _arr(a).shape[axis]
    q, r = divmod(n, sections)
    bounds = np.cumsum([q + 1] * r + [q] * (sections - r))[:-1]
    return split(a, list(bounds), axis)


def flip(a, axis=None):
    """Reverse the order of elements along ``axis`` (all axes by default)."""
    a = _arr(a)
    axes = _axes(axis, a.ndim)
    idx = tuple(np.s_[::-1] if i in axes else np.s_[:] for i in range(a.ndim))
    return a[idx]


def pad(array, pad_width, mode="constant", constant_values=0):
    """Pad with a constant (``mode="constant"`` only)."""
    if mode != "constant":
        raise ValueError("fgrad.numpy.pad supports mode='constant' only")
    a = _arr(array)
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (a.ndim, 2))
    return lax.pad(a, constant_values, [(int(lo), int(hi), 0) for lo, hi in pw])


def tile(a, reps):
    """Repeat the whole array ``reps`` times along each axis."""
    a = _arr(a)
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    a = reshape(a, (1,) * (len(reps) - a.ndim) + tuple(a.shape))
    reps = (1,) * (a.ndim - len(reps)) + reps
    for ax, r in enumerate(reps):
        if r != 1:
            a = concatenate([a] * r, ax)
    return a


def repeat(a, repeats: int, axis=None):
    """Repeat each element ``repeats`` times along ``axis``."""
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    axis %= a.ndim
    shape = list(a.shape)
    b = expand_dims(a, axis + 1)
    b = broadcast_to(b, shape[: axis + 1] + [repeats] + shape[axis + 1 :])
    shape[axis] *= repeats
    return reshape(b, shape)


def diag(v, k=0):
    """Diagonal of a matrix, or a diagonal matrix from a vector."""
    v = _arr(v)
    if v.ndim == 1:
        n = v.shape[0] + builtins.abs(k)
        return zeros((n, n), v.dtype).at[_diag_index(n, k)].set(v)
    return v[_diag_index_2(v.shape, k)]


def _diag_index(n, k):
    i = np.arange(n - builtins.abs(k))
    return (i, i + k) if k >= 0 else (i - k, i)


def _diag_index_2(shape, k):
    i = np.arange(
        builtins.max(
            0,
            builtins.min(shape[0], shape[1] - k)
            if k >= 0
            else builtins.min(shape[0] + k, shape[1]),
        )
    )
    return (i, i + k) if k >= 0 else (i - k, i)


def trace(a):
    """Sum of the main diagonal."""
    return sum(diag(a))


def shape(a):
    """Shape of ``a``."""
    return tuple(_arr(a).shape)


def ndim(a):
    """Rank of ``a``."""
    return _arr(a).ndim


def size(a):
    """Number of elements of ``a``."""
    return _arr(a).size


# ---------------------------------------------------------------- linear algebra


def matmul(a, b):
    """Matrix product with NumPy's broadcasting of leading (batch) axes."""
    a, b = _arr(a), _arr(b)
    if a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype and a.shape[1] == b.shape[0]:
        return lax.dot_general_p.bind(a, b, contract=((1,), (0,)), batch=((), ()))
    dt = result_type(a, b)
    a, b = a.astype(dt), b.astype(dt)
    if a.ndim == 0 or b.ndim == 0:
        raise FgradTypeError(f"matmul: operands must not be scalars at {user_frame()}")
    va, vb = a.ndim == 1, b.ndim == 1
    if va:
        a = reshape(a, (1, a.shape[0]))
    if vb:
        b = reshape(b, (b.shape[0], 1))
    if a.shape[-1] != b.shape[-2]:
        raise FgradTypeError(
            f"matmul: contracting dimensions differ: {tuple(a.shape)} @ {tuple(b.shape)} "
            f"at {user_frame()}"
        )
    if a.ndim == 2 and b.ndim == 2:
        out = lax.dot_general(a, b, (((1,), (0,)), ((), ())))
    else:
        batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
        a = broadcast_to(a, batch + tuple(a.shape[-2:]))
        b = broadcast_to(b, batch + tuple(b.shape[-2:]))
        nb = len(batch)
        out = lax.dot_general(a, b, (((nb + 1,), (nb,)), (tuple(range(nb)), tuple(range(nb)))))
    if va:
        out = squeeze(out, out.ndim - 2)
    if vb:
        out = squeeze(out, out.ndim - 1)
    return out


def dot(a, b):
    """NumPy's ``dot``: products of scalars, vectors and matrices."""
    a, b = _arr(a), _arr(b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    if b.ndim <= 2:
        return matmul(a, b)
    dt = result_type(a, b)
    return lax.dot_general(a.astype(dt), b.astype(dt), (((a.ndim - 1,), (b.ndim - 2,)), ((), ())))


def vdot(a, b):
    """Dot product of the flattened arrays."""
    return dot(ravel(a), ravel(b))


def inner(a, b):
    """Contraction over the last axes."""
    a, b = _arr(a), _arr(b)
    dt = result_type(a, b)
    return lax.dot_general(a.astype(dt), b.astype(dt), (((a.ndim - 1,), (b.ndim - 1,)), ((), ())))


def outer(a, b):
    """Outer product of the flattened arrays."""
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def tensordot(a, b, axes=2):
    """Contract ``axes`` of a with those of b (as ``np.tensordot``)."""
    a, b = _arr(a), _arr(b)
    if isinstance(axes, int):
        ax_a = tuple(range(a.ndim - axes, a.ndim))
        ax_b = tuple(range(axes))
    else:
        ax_a, ax_b = axes
        ax_a = (ax_a,) if isinstance(ax_a, int) else tuple(ax_a)
        ax_b = (ax_b,) if isinstance(ax_b, int) else tuple(ax_b)
    dt = result_type(a, b)
    return lax.dot_general(a.astype(dt), b.astype(dt), ((ax_a, ax_b), ((), ())))


def einsum(subscripts: str, *operands, optimize=None):
    """Einstein summation for the common one- and two-operand forms (folded left).

    Example:
        >>> import fgrad.numpy as fnp
        >>> fnp.einsum("ij,jk->ik", fnp.ones((2, 3)), fnp.ones((3, 4))).shape
        (2, 4)
    """
    del optimize
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        ins, out = subscripts.split("->")
    else:
        ins = subscripts
        letters = ins.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    specs = ins.split(",")
    if len(specs) != len(operands):
        raise ValueError(f"einsum: {len(specs)} operand specs for {len(operands)} operands")
    if "." in subscripts:
        raise ValueError("einsum: ellipsis ('...') is not supported; write the axes out")
    ops = [_arr(o) for o in operands]
    cur, cur_spec = ops[0], specs[0]
    for i in range(1, len(ops)):
        rest = "".join(specs[i + 1 :]) + out
        cur, cur_spec = _einsum_pair(cur, cur_spec, ops[i], specs[i], rest)
    return _einsum_finish(cur, cur_spec, out)


def _einsum_reduce(x, spec, keep):
    if len(set(spec)) != len(spec):
        raise ValueError(f"einsum: repeated index within one operand ({spec}) is not supported")
    drop = tuple(i for i, c in enumerate(spec) if c not in keep)
    if drop:
        x = lax.reduce_sum(x, drop)
        spec = "".join(c for c in spec if c not in keep and False or c in keep)
    return x, spec


def _einsum_pair(a, sa, b, sb, rest):
    a, sa = _einsum_reduce(a, sa, set(sb) | set(rest))
    b, sb = _einsum_reduce(b, sb, set(sa) | set(rest))
    shared = [c for c in sa if c in sb]
    batch = [c for c in shared if c in rest]
    contract = [c for c in shared if c not in rest]
    dt = result_type(a, b)
    out = lax.dot_general(
        a.astype(dt),
        b.astype(dt),
        (
            (tuple(sa.index(c) for c in contract), tuple(sb.index(c) for c in contract)),
            (tuple(sa.index(c) for c in batch), tuple(sb.index(c) for c in batch)),
        ),
    )
    spec = (
        "".join(batch)
        + "".join(c for c in sa if c not in shared)
        + "".join(c for c in sb if c not in shared)
    )
    return out, spec


def _einsum_finish(x, spec, out):
    x, spec = _einsum_reduce(x, spec, set(out))
    if sorted(spec) != sorted(out):
        raise ValueError(f"einsum: output indices {out!r} not all present in inputs")
    return lax.transpose(x, tuple(spec.index(c) for c in out))


class _Linalg:
    """``fgrad.numpy.linalg``: norms (what training code uses)."""

    @staticmethod
    def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
        """As ``np.linalg.norm``: vector norms of any order; matrix norms None/'fro', 1, inf.

        A matrix norm is taken over two axes (``axis=None`` on a 2-D array, or a pair).
        The spectral and nuclear norms (``ord`` 2, -2, 'nuc') need singular values and
        are not supported.
        """
        x = _float_operand("norm", x)
        if axis is None and ord is None:
            return sqrt(sum(square(x), None, keepdims=keepdims))
        axes = _axes(axis, x.ndim)
        if len(axes) == 2:
            # Unsorted: the first axis holds the rows, as in NumPy.
            pair = (0, 1) if axis is None else tuple(a % x.ndim for a in axis)
            return _matrix_norm(x, ord, pair, keepdims)
        if len(axes) != 1:
            raise ValueError(f"linalg.norm: improper number of axes {axis!r} for ord={ord!r}")
        if ord is None or ord == 2:
            return sqrt(sum(square(x), axis, keepdims=keepdims))
        if ord == np.inf:
            return max(abs(x), axis, keepdims=keepdims)
        if ord == -np.inf:
            return min(abs(x), axis, keepdims=keepdims)
        if ord == 1:
            return sum(abs(x), axis, keepdims=keepdims)
        if ord == 0:  # the number of nonzero entries
            return sum(not_equal(x, 0).astype(x.dtype), axis, keepdims=keepdims)
        if isinstance(ord, str):
            raise ValueError(f"linalg.norm: invalid norm order {ord!r} for vectors")
        return sum(abs(x) ** float(ord), axis, keepdims=keepdims) ** (1.0 / ord)


def _matrix_norm(x, ord, axes, keepdims):
    rows, cols = axes
    if ord is None or ord == "fro":
        out = sqrt(sum(square(x), axes, keepdims=True))
    elif ord in (1, -1):  # max (min) over columns of the column sums
        col_sums = sum(abs(x), rows, keepdims=True)
        out = max(col_sums, cols, keepdims=True) if ord == 1 else min(col_sums, cols, True)
    elif ord in (np.inf, -np.inf):  # max (min) over rows of the row sums
        row_sums = sum(abs(x), cols, keepdims=True)
        out = max(row_sums, rows, keepdims=True) if ord > 0 else min(row_sums, rows, True)
    else:
        raise ValueError(f"linalg.norm: matrix norm ord={ord!r} is not supported")
    return out if keepdims else squeeze(out, tuple(axes))


linalg = _Linalg()


# ---------------------------------------------------------------- indexing


def take(a, indices, axis=None):
    """Elements at ``indices`` along ``axis`` (flattened when None); indices clamp."""
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    axis %= a.ndim
    idx = _arr(indices)
    if axis == 0:
        return _ix.gather(a, idx)
    moved = moveaxis(a, axis, 0)
    out = _ix.gather(moved, idx)
    # gather puts idx's axes first; move them back to where ``axis`` was.
    k = idx.ndim
    perm = list(range(k, k + axis)) + list(range(k)) + list(range(k + axis, out.ndim))
    return lax.transpose(out, perm)


def take_along_axis(arr, indices, axis):
    """Pick ``arr`` entries along ``axis`` with an index array of the same rank."""
    arr, indices = _arr(arr), _arr(indices)
    axis %= arr.ndim
    shape = tuple(indices.shape)
    positions = None
    strides = _row_major_strides(arr.shape)
    for d in range(arr.ndim):
        if d == axis:
            comp = _normalize_traced_index(indices, arr.shape[d])
        else:
            r = np.arange(shape[d]).reshape([-1 if i == d else 1 for i in range(arr.ndim)])
            comp = Array(r.astype(np.int32))
        term = comp * strides[d] if strides[d] != 1 else comp
        positions = term if positions is None else positions + term
    positions = broadcast_to(positions, shape)
    return _ix.gather(ravel(arr), positions)


def _row_major_strides(shape):
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return list(reversed(strides))


def _normalize_traced_index(i, n):
    """Wrap negative indices and clamp, elementwise on a (possibly traced) int array."""
    i = _arr(i)
    if i.dtype != np.int32:
        i = lax.convert_element_type(i, np.int32)
    i = where(less(i, 0), i + n, i)
    return clip(i, 0, builtins.max(n - 1, 0))


def _is_traced_index(c) -> bool:
    return isinstance(c, Tracer)


def _expand_index(idx, ndim):
    """Normalise an index to a tuple with Ellipsis expanded; bool masks become ints."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    out = []
    for c in idx:
        if isinstance(c, Array):
            c = np.asarray(c)
        if isinstance(c, list):
            c = np.asarray(c)
        if isinstance(c, Tracer) and c.dtype == np.bool_:
            val = c.concrete_value()
            if val is None:
                raise FgradTypeError(
                    f"boolean mask indexing needs a concrete mask (its result size depends on "
                    f"the values), but got an abstract tracer under jit at {user_frame()}; "
                    f"use fnp.where(mask, x, 0) instead"
                )
            c = np.asarray(val)
        out.append(c)
    n_real = builtins.sum(
        (c.ndim if isinstance(c, np.ndarray) and c.dtype == np.bool_ else 1)
        for c in out
        if c is not None and c is not Ellipsis
    )
    if builtins.sum(c is Ellipsis for c in out) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in [c for c in out if not isinstance(c, np.ndarray | Tracer)]:
        i = next(j for j, c in enumerate(out) if c is Ellipsis and not isinstance(c, np.ndarray))
        out[i : i + 1] = [builtins.slice(None)] * (ndim - n_real)
    elif n_real < ndim:
        out += [builtins.slice(None)] * (ndim - n_real)
    if n_real > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {n_real} were indexed"
        )
    return tuple(out)


def _is_basic(idx) -> bool:
    return builtins.all(
        c is None
        or isinstance(c, builtins.slice)
        or (isinstance(c, int | np.integer) and not isinstance(c, bool))
        for c in idx
    )


def _basic_getitem(x, idx):
    starts, limits, strides, squeeze_axes, flips = [], [], [], [], []
    new_axes = []
    d = 0
    out_pos = 0
    for c in idx:
        if c is None:
            new_axes.append(out_pos)
            out_pos += 1
            continue
        n = x.shape[d]
        if isinstance(c, builtins.slice):
            start, stop, step = c.indices(n)
            if step < 0:
                flips.append(d)
                # Take the mirrored forward slice, then reverse it.
                count = len(range(start, stop, step))
                last = start + (count - 1) * step if count else 0
                start, stop, step = (last, start + 1, -step) if count else (0, 0, 1)
            starts.append(start)
            limits.append(builtins.max(stop, start))
            strides.append(step)
            out_pos += 1
        else:
            i = int(c)
            if not -n <= i < n:
                raise IndexError(
                    f"index {i} is out of bounds for axis {d} with size {n} at {user_frame()}"
                )
            i %= n
            starts.append(i)
            limits.append(i + 1)
            strides.append(1)
            squeeze_axes.append(d)
        d += 1
    out = lax.slice(x, starts, limits, strides)
    for ax in flips:
        m = out.shape[ax]
        out = take(out, Array(np.arange(m - 1, -1, -1, dtype=np.int32)), ax)
    if squeeze_axes:
        out = lax.squeeze(out, squeeze_axes)
    if new_axes:
        out = lax.expand_dims(out, new_axes)
    return out


def _index_positions(shape, idx):
    """Flat positions selected by ``idx`` over an array of ``shape``, and their shape.

    Concrete indices are resolved by NumPy on an ``arange`` of positions (so every NumPy
    indexing form works); traced integer arrays are combined with strides symbolically.
    """
    if not builtins.any(_is_traced_index(c) for c in idx):
        size = math.prod(shape)
        positions = np.arange(size, dtype=np.int64).reshape(shape)
        try:
            sel = positions[idx]
        except IndexError as e:
            raise IndexError(f"{e} (array shape {tuple(shape)}) at {user_frame()}") from None
        dt = np.int32 if size < 2**31 else np.int64
        return Array(np.asarray(sel, dtype=dt))
    return _traced_positions(shape, idx)


def _traced_positions(shape, idx):
    if builtins.any(c is None for c in idx):
        raise IndexError("fgrad: None (newaxis) cannot be mixed with traced index arrays")
    strides = _row_major_strides(shape)
    adv = [d for d, c in enumerate(idx) if not isinstance(c, builtins.slice)]
    adv_vals = {}
    for d in adv:
        c = idx[d]
        if isinstance(c, np.ndarray) and c.dtype == np.bool_:
            raise IndexError("fgrad: boolean masks cannot be mixed with traced index arrays")
        adv_vals[d] = _normalize_traced_index(
            _arr(c) if not isinstance(c, int | np.integer) else Array(np.asarray(c, np.int32)),
            shape[d],
        )
    bshape = np.broadcast_shapes(*[tuple(adv_vals[d].shape) for d in adv])
    contiguous = adv == list(range(adv[0], adv[-1] + 1))
    slice_dims = [d for d in range(len(shape)) if d not in adv]
    # Output axis layout, following NumPy's rule for where advanced axes go.
    if contiguous:
        before = [d for d in slice_dims if d < adv[0]]
        after = [d for d in slice_dims if d > adv[-1]]
        layout = [("s", d) for d in before] + [("b", None)] + [("s", d) for d in after]
    else:
        layout = [("b", None)] + [("s", d) for d in slice_dims]
    out_rank = len(slice_dims) + len(bshape)
    b_start = next(i for i, (k, _) in enumerate(layout) if k == "b")
    total = None
    pos = 0
    for kind, d in layout:
        if kind == "b":
            for a in adv:
                comp = broadcast_to(adv_vals[a], bshape)
                dims = tuple(range(b_start, b_start + len(bshape)))
                comp = _place(comp, out_rank, dims)
                term = comp * strides[a] if strides[a] != 1 else comp
                total = term if total is None else total + term
            pos += len(bshape)
        else:
            r = np.arange(*idx[d].indices(shape[d])).astype(np.int32) * strides[d]
            term = _place(Array(r), out_rank, (pos,))
            total = term if total is None else total + term
            pos += 1
    out_shape = []
    for kind, d in layout:
        out_shape += list(bshape) if kind == "b" else [len(range(*idx[d].indices(shape[d])))]
    return broadcast_to(total, tuple(out_shape))


def _place(x, rank, dims):
    """Reshape x so its axes sit at ``dims`` of a rank-``rank`` array (size 1 elsewhere)."""
    shape = [1] * rank
    for ax, n in zip(dims, x.shape):
        shape[ax] = n
    return lax.reshape(x, shape)


def _getitem(x, idx):
    if isinstance(idx, Tracer) and np.issubdtype(idx.dtype, np.integer):
        return _ix.gather(x, idx)  # the embedding-lookup fast path
    if isinstance(idx, Array) and np.issubdtype(idx.dtype, np.integer) and x.ndim >= 1:
        return _ix.gather(x, idx)
    full_idx = _expand_index(idx, x.ndim)
    if _is_basic(full_idx):
        return _basic_getitem(x, full_idx)
    positions = _index_positions(tuple(x.shape), full_idx)
    return _ix.gather(ravel(x), positions)


class _IndexUpdateHelper:
    """``x.at``: functional index updates, as in JAX."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __getitem__(self, idx):
        return _IndexUpdateRef(self.array, idx)


class _IndexUpdateRef:
    """``x.at[idx]``: call ``.set/.add/.mul/.min/.max/.get`` to get the updated array.

    Example:
        >>> import fgrad.numpy as fnp
        >>> fnp.zeros(3).at[1].set(5.0).tolist()
        [0.0, 5.0, 0.0]
    """

    __slots__ = ("array", "idx")

    def __init__(self, array, idx):
        self.array = array
        self.idx = idx

    def get(self):
        """``x[idx]``."""
        return _getitem(self.array, self.idx)

    def _scatter(self, values, mode):
        x = self.array
        values = _arr(values) if not _is_python_scalar(values) else values
        idx = self.idx
        if isinstance(idx, Tracer | Array) and np.issubdtype(idx.dtype, np.integer):
            # Leading-axis update: rows of x at idx.
            ishape = tuple(idx.shape) + tuple(x.shape[1:])
            vals = broadcast_to(
                asarray(values, x.dtype) if _is_python_scalar(values) else values.astype(x.dtype),
                ishape,
            )
            return _ix.scatter(x, idx, vals, mode)
        positions = _index_positions(tuple(x.shape), _expand_index(idx, x.ndim))
        vals = values if not _is_python_scalar(values) else asarray(values, x.dtype)
        vals = broadcast_to(vals.astype(x.dtype), tuple(positions.shape))
        flat = _ix.scatter(ravel(x), positions, vals, mode)
        return lax.reshape(flat, tuple(x.shape))

    def set(self, values):
        """Replace the selected entries with ``values``."""
        return self._scatter(values, "set")

    def add(self, values):
        """Add ``values`` to the selected entries (duplicates accumulate)."""
        return self._scatter(values, "add")

    def mul(self, values):
        """Multiply the selected entries by ``values``."""
        return self._scatter(values, "mul")

    multiply = mul

    def divide(self, values):
        """Divide the selected entries by ``values``."""
        return self._scatter(reciprocal(values), "mul")

    def min(self, values):
        """Elementwise minimum of the selected entries and ``values``."""
        return self._scatter(values, "min")

    def max(self, values):
        """Elementwise maximum of the selected entries and ``values``."""
        return self._scatter(values, "max")


# ---------------------------------------------------------------- operators and methods


def _astype(x, dtype):
    dtype = np.dtype(dtype)
    return x if x.dtype == dtype else lax.convert_element_type(x, dtype)


def _rev(fn):
    return lambda self, other: fn(other, self)


def _matmul_method(self, other):
    return matmul(self, other)


def _pow_method(self, other):
    return power(self, other)


def _reshape_method(self, *shape, order="C"):
    if len(shape) == 1 and not isinstance(shape[0], int | np.integer):
        shape = shape[0]
    return reshape(self, shape, order)


def _transpose_method(self, *axes):
    if len(axes) == 1 and not isinstance(axes[0], int | np.integer):
        axes = axes[0]
    return transpose(self, axes or None)


_METHODS = {
    "__add__": add,
    "__radd__": _rev(add),
    "__sub__": subtract,
    "__rsub__": _rev(subtract),
    "__mul__": multiply,
    "__rmul__": _rev(multiply),
    "__truediv__": divide,
    "__rtruediv__": _rev(divide),
    "__floordiv__": floor_divide,
    "__rfloordiv__": _rev(floor_divide),
    "__mod__": remainder,
    "__rmod__": _rev(remainder),
    "__pow__": _pow_method,
    "__rpow__": _rev(power),
    "__matmul__": _matmul_method,
    "__rmatmul__": _rev(matmul),
    "__neg__": negative,
    "__pos__": positive,
    "__abs__": abs,
    "__invert__": invert,
    "__and__": bitwise_and,
    "__rand__": _rev(bitwise_and),
    "__or__": bitwise_or,
    "__ror__": _rev(bitwise_or),
    "__xor__": bitwise_xor,
    "__rxor__": _rev(bitwise_xor),
    "__lt__": less,
    "__le__": less_equal,
    "__gt__": greater,
    "__ge__": greater_equal,
    "__eq__": equal,
    "__ne__": not_equal,
    "__getitem__": _getitem,
    "sum": sum,
    "mean": mean,
    "var": var,
    "std": std,
    "max": max,
    "min": min,
    "prod": prod,
    "any": any,
    "all": all,
    "argmax": argmax,
    "argmin": argmin,
    "cumsum": cumsum,
    "clip": clip,
    "dot": dot,
    "round": round,
    "astype": _astype,
    "reshape": _reshape_method,
    "transpose": _transpose_method,
    "squeeze": squeeze,
    "ravel": ravel,
    "flatten": ravel,
    "swapaxes": swapaxes,
    "take": take,
    "sort": sort,
    "argsort": argsort,
    "T": property(lambda self: transpose(self)),
    "mT": property(lambda self: swapaxes(self, -1, -2)),
    "at": property(lambda self: _IndexUpdateHelper(self)),
    "real": property(lambda self: self),
}


def _install_methods() -> None:
    # Array and Tracer live in core (which cannot import this module), so their
    # operators are attached here, once, at import.
    for cls in (Array, Tracer):
        for name, fn in _METHODS.items():
            setattr(cls, name, fn)
        cls.__hash__ = cls.__hash__  # keep the explicit "unhashable" error


_install_methods()
