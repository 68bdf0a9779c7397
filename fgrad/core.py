"""The core: abstract values, the immutable Array, the IR, primitives and tracing.

Reading order: ``ShapedArray`` (what a value looks like), ``Array`` (an eager value),
``Var``/``Literal``/``Eqn``/``Jaxpr`` (the IR), ``Primitive`` (an operation with its
rules), then the trace machinery: ``MainTrace`` levels, ``Trace``/``Tracer``, and the
one trace defined here, ``JaxprTrace``, which records equations into a jaxpr. Other
transformations (``ad.JVPTrace``, batching) subclass ``Trace`` in their own modules.

Every operation goes through ``Primitive.bind``. With no tracer among its arguments it
runs eagerly on the current backend (``execute``); otherwise the highest-level trace
among the arguments processes it. Levels keep nested transformations apart.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fgrad import tree as tree_util
from fgrad.config import config

_FGRAD_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# ---------------------------------------------------------------- errors and user lines


#: While a backward pass applies a VJP rule, the forward equation it differentiates
#: (a stack of descriptions); equations recorded meanwhile are attributed to it.
_source_context: list[str] = []


class source_context:
    """Attribute equations recorded inside this block to ``where`` (e.g. a VJP rule)."""

    def __init__(self, where: str):
        self.where = where

    def __enter__(self):
        _source_context.append(self.where)

    def __exit__(self, *exc):
        _source_context.pop()
        return False


def user_frame() -> str:
    """Return ``file:line`` of the innermost stack frame outside the fgrad package.

    Inside a backward pass this is the forward line whose VJP rule is running.
    """
    if _source_context:
        return _source_context[-1]
    frame = sys._getframe(1)
    internal = _INTERNAL_CODE
    while frame is not None:
        code = frame.f_code
        # Keyed by id: hashing a code object rehashes its constants each time.
        known = internal.get(id(code))
        if known is None or known[0] is not code:
            filename = code.co_filename
            known = (code, filename.startswith(_FGRAD_DIR) or filename.startswith("<frozen"))
            if len(internal) >= 4096:
                internal.clear()
            internal[id(code)] = known
        if not known[1]:
            return f"{code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


#: id(code object) -> (code, whether it belongs to fgrad); user_frame runs for every
#: traced operation.
_INTERNAL_CODE: dict[int, tuple[Any, bool]] = {}


class FgradTypeError(TypeError):
    """A shape or dtype mismatch found by a primitive's shape rule."""


class ConcretizationError(TypeError):
    """A concrete Python value was needed from an abstract (jit-traced) value."""


class UnexpectedTracerError(RuntimeError):
    """A tracer was used after the transformation that created it had finished."""


# ---------------------------------------------------------------- abstract values

_SHORT_DTYPE = {
    "float16": "f16",
    "float32": "f32",
    "float64": "f64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "bool": "bool",
}


class ShapedArray:
    """The abstract value of an array: its shape and dtype, nothing else."""

    __slots__ = ("shape", "dtype", "_hash")

    def __init__(self, shape: Sequence[int], dtype: Any):
        # Fast path for NumPy's own (tuple-of-int shape, np.dtype): eager ops build
        # several of these per call.
        self.shape = shape if type(shape) is tuple else tuple(int(d) for d in shape)
        self.dtype = (
            dtype if type(dtype) is np.dtype or isinstance(dtype, np.dtype) else np.dtype(dtype)
        )
        self._hash = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ShapedArray)
            and self.shape == other.shape
            and self.dtype == other.dtype
        )

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash((self.shape, self.dtype))
        return h

    def str_short(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{_SHORT_DTYPE.get(self.dtype.name, self.dtype.name)}[{dims}]"

    def __repr__(self) -> str:
        return f"ShapedArray({self.str_short()})"


_FLOAT_DTYPE_CACHE: dict[Any, bool] = {}


def is_float_dtype(dtype: Any) -> bool:
    """True for the floating dtypes, the only differentiable ones."""
    # Called for every var of every backward pass: np.issubdtype costs ~0.4 us, a
    # dict hit ~50 ns.
    try:
        return _FLOAT_DTYPE_CACHE[dtype]
    except (KeyError, TypeError):
        pass
    result = bool(np.issubdtype(np.dtype(dtype), np.floating))
    try:
        if len(_FLOAT_DTYPE_CACHE) < 256:
            _FLOAT_DTYPE_CACHE[dtype] = result
    except TypeError:
        pass
    return result


def get_aval(x: Any) -> ShapedArray:
    """Abstract value of a tracer, Array, NumPy value or Python scalar."""
    if isinstance(x, Tracer):
        return x.aval
    if isinstance(x, Array):
        return ShapedArray(x._v.shape, x._v.dtype)
    if isinstance(x, np.ndarray | np.generic):
        return ShapedArray(x.shape, x.dtype)
    if isinstance(x, bool | int | float):
        return ShapedArray((), python_scalar_dtype(x))
    if getattr(x, "fgrad_backend", None):  # a backend's device buffer
        return ShapedArray(x.shape, x.dtype)
    raise TypeError(f"{type(x).__name__} is not a valid fgrad array value: {x!r}")


def python_scalar_dtype(x: Any) -> np.dtype:
    """Default dtype of a Python scalar: bool, int32 or float32 (DESIGN: 32-bit defaults)."""
    if isinstance(x, bool):
        return np.dtype(np.bool_)
    if isinstance(x, int):
        return np.dtype(np.int32)
    if isinstance(x, float):
        return np.dtype(np.float32)
    raise TypeError(f"not a Python scalar: {x!r}")


# ---------------------------------------------------------------- the eager array

#: An Array may hold a backend's device buffer instead of a NumPy array: any object
#: with ``shape``, ``dtype``, ``fgrad_backend`` (the owning backend's name) and an
#: ``__array__`` that copies it to the host (``fgrad.backends.cuda.CudaArray``).
#: Operations on it run on that backend; ``np.asarray`` copies it back.
DEVICE_ARRAYS = True


class Array:
    """fgrad's immutable array: the result of every eager operation.

    It wraps a read-only NumPy array; ``np.asarray(x)`` returns that buffer without a
    copy. Arithmetic operators, methods (``.sum``, ``.reshape``, ...) and ``.at[...]``
    updates are installed by ``fgrad.numpy``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> x = fnp.asarray([1.0, 2.0])
        >>> (x * 2).tolist()
        [2.0, 4.0]
        >>> np.asarray(x).flags.writeable
        False
    """

    __slots__ = ("_v", "__weakref__")
    __array_priority__ = 100

    def __init__(self, value: Any):
        if type(value) is not np.ndarray and getattr(value, "fgrad_backend", None):
            self._v = value  # a device buffer stays where it lives
            return
        v = value if isinstance(value, np.ndarray) else np.asarray(value)
        if v.flags.writeable:
            v.setflags(False)
        self._v = v

    # ---- NumPy interop
    def __array__(self, dtype=None, copy=None):
        v = self._v
        if type(v) is not np.ndarray:
            v = np.asarray(v)  # a device buffer: copied to the host
        if copy:
            return np.array(v, dtype=dtype, copy=True)
        if dtype is not None and np.dtype(dtype) != v.dtype:
            return v.astype(dtype)
        return v

    @property
    def aval(self) -> ShapedArray:
        return ShapedArray(self._v.shape, self._v.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._v.shape

    @property
    def dtype(self) -> np.dtype:
        return self._v.dtype

    @property
    def ndim(self) -> int:
        return self._v.ndim

    @property
    def size(self) -> int:
        return self._v.size

    @property
    def nbytes(self) -> int:
        return self._v.nbytes

    def __len__(self) -> int:
        if self._v.ndim == 0:
            raise TypeError("len() of unsized object (a 0-d array)")
        return self._v.shape[0]

    def __iter__(self):
        if self._v.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._v.shape[0]))

    def __bool__(self) -> bool:
        return bool(self._v)

    def __int__(self) -> int:
        return int(self._v)

    def __float__(self) -> float:
        return float(self._v)

    def __index__(self) -> int:
        return self._v.__index__()

    def __complex__(self) -> complex:
        return complex(self._v)

    def item(self, *args):
        """Return the element as a Python scalar."""
        return self._v.item(*args)

    def tolist(self):
        """Return the array as nested Python lists."""
        return self._v.tolist()

    def block_until_ready(self) -> Array:
        """Wait for the device computation producing this array (CPU results are
        always ready); return self."""
        if type(self._v) is not np.ndarray:
            self._v.block_until_ready()
        return self

    def __setitem__(self, idx, value):
        raise TypeError(
            "fgrad arrays are immutable: `x[idx] = v` is not supported; "
            f"use the functional form `x = x.at[idx].set(v)` instead (at {user_frame()})"
        )

    def __repr__(self) -> str:
        body = np.array2string(np.asarray(self._v), separator=", ", prefix="Array(")
        return f"Array({body}, dtype={self._v.dtype.name})"

    def __str__(self) -> str:
        return str(self._v)

    def __reduce__(self):
        return (Array, (np.array(self._v),))

    def __hash__(self):
        raise TypeError("unhashable type: fgrad Array (use static_argnums for static values)")


# ---------------------------------------------------------------- the IR


class Var:
    """A typed variable of a jaxpr; named only when the jaxpr is printed."""

    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    def __repr__(self) -> str:
        return f"Var({self.aval.str_short()})"


class Literal:
    """A scalar constant written inline in a jaxpr (e.g. ``0.0`` in ``max c 0.0``)."""

    __slots__ = ("val", "aval")

    def __init__(self, val: Any, aval: ShapedArray):
        self.val = val
        self.aval = aval

    def __repr__(self) -> str:
        return f"Literal({self.val!r})"

    def str_value(self) -> str:
        v = np.asarray(self.val)
        if v.dtype == np.bool_:
            return str(bool(v))
        # str of the NumPy scalar prints the shortest repr for its own precision
        # (0.1 for a float32 0.1, not 0.10000000149011612).
        return str(v[()])


Atom = Var | Literal


class Eqn:
    """One equation: ``outvars = primitive[params](invars)``, with the user's line."""

    __slots__ = ("primitive", "invars", "outvars", "params", "source_info")

    def __init__(self, primitive, invars, outvars, params, source_info=None):
        self.primitive = primitive
        self.invars = list(invars)
        self.outvars = list(outvars)
        self.params = dict(params)
        self.source_info = source_info

    def __repr__(self) -> str:
        return f"Eqn({self.primitive.name}, {len(self.invars)} in, {len(self.outvars)} out)"


class Jaxpr:
    """A typed, first-order program: constvars, invars, equations and outputs."""

    def __init__(self, constvars, invars, eqns, outvars):
        self.constvars = list(constvars)
        self.invars = list(invars)
        self.eqns = list(eqns)
        self.outvars = list(outvars)

    @property
    def in_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.invars]

    @property
    def out_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.outvars]

    def __str__(self) -> str:
        return pp_jaxpr(self)

    __repr__ = __str__


class ClosedJaxpr:
    """A jaxpr together with the values of its constvars; what ``make_jaxpr`` returns."""

    def __init__(self, jaxpr: Jaxpr, consts: Sequence[Any]):
        self.jaxpr = jaxpr
        self.consts = list(consts)

    @property
    def eqns(self) -> list[Eqn]:
        return self.jaxpr.eqns

    @property
    def in_avals(self) -> list[ShapedArray]:
        return self.jaxpr.in_avals

    @property
    def out_avals(self) -> list[ShapedArray]:
        return self.jaxpr.out_avals

    def __call__(self, *args):
        return eval_jaxpr(self.jaxpr, self.consts, *args)

    def __str__(self) -> str:
        return pp_jaxpr(self.jaxpr)

    __repr__ = __str__


def _var_names():
    for n in itertools.count(1):
        for combo in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=n):
            yield "".join(combo)


def _pp_param(value: Any, names: dict, indent: int) -> str:
    if isinstance(value, ClosedJaxpr | Jaxpr):
        inner = value.jaxpr if isinstance(value, ClosedJaxpr) else value
        text = pp_jaxpr(inner, names=None)
        pad = " " * (indent + 2)
        return "\n" + "\n".join(pad + line for line in text.splitlines())
    if isinstance(value, np.dtype | type):
        return np.dtype(value).name
    if isinstance(value, list):
        return "(" + ", ".join(_pp_param(v, names, indent) for v in value) + ")"
    return repr(value) if not isinstance(value, str) else value


def pp_jaxpr(jaxpr: Jaxpr, names: dict | None = None) -> str:
    """Render a jaxpr in the familiar ``{ lambda ; a:f32[3]. let ... in (b,) }`` form."""
    names = {}
    gen = _var_names()

    def name(v: Atom) -> str:
        if isinstance(v, Literal):
            return v.str_value()
        if v not in names:
            names[v] = next(gen)
        return names[v]

    def binder(v: Var) -> str:
        return f"{name(v)}:{v.aval.str_short()}"

    consts = " ".join(binder(v) for v in jaxpr.constvars)
    ins = " ".join(binder(v) for v in jaxpr.invars)
    head = f"{{ lambda {consts}; {ins}. let" if consts else f"{{ lambda ; {ins}. let"
    lines = [head]
    for eqn in jaxpr.eqns:
        outs = " ".join(binder(v) for v in eqn.outvars)
        params = " ".join(f"{k}={_pp_param(v, names, 4)}" for k, v in eqn.params.items())
        prim = f"{eqn.primitive.name}[{params}]" if params else eqn.primitive.name
        args = " ".join(name(v) for v in eqn.invars)
        lines.append(f"    {outs} = {prim} {args}".rstrip())
    outs = ", ".join(name(v) for v in jaxpr.outvars)
    trailing = "," if len(jaxpr.outvars) == 1 else ""
    lines.append(f"  in ({outs}{trailing}) }}")
    return "\n".join(lines)


# ---------------------------------------------------------------- primitives

#: Every primitive by name: the registry tests and docs sweep.
primitives: dict[str, Primitive] = {}


class Primitive:
    """A named operation and its rules, declared once side by side in ``fgrad.lax``.

    Rules (each set with a ``def_*`` method):

    * ``shape_rule(*avals, **params) -> ShapedArray | list[ShapedArray]``: checks the
      operands and gives the output's shape and dtype. Errors raised here become
      ``FgradTypeError`` naming the primitive, the shapes and the user's line.
    * ``impl(*np_arrays, **params)``: the reference implementation in plain NumPy.
    * ``vjp_rule(ct, *primals, out, **params) -> tuple``: cotangents for each input
      (``None`` for zero/non-differentiable), written in fgrad ops so it traces again.
    * ``jvp_rule(tangents, *primals, out, **params) -> tangent_out``: ``tangents`` has
      ``None`` for symbolic zeros; ``out`` is the primal output, already computed.
    * ``batch_rule(args, dims, **params) -> (out, out_dim)`` (see ``fgrad.batching``).
    """

    def __init__(self, name: str, multiple_results: bool = False):
        if name in primitives:
            raise ValueError(f"primitive {name!r} is declared twice")
        self.name = name
        self.multiple_results = multiple_results
        self.shape_rule: Callable | None = None
        self.impl: Callable | None = None
        self.vjp_rule: Callable | None = None
        self.jvp_rule: Callable | None = None
        self.batch_rule: Callable | None = None
        # Not differentiable at all (integer outputs): no VJP/JVP expected.
        self.differentiable = True
        # Has a side effect (printing): compilers must not drop it as dead code.
        self.effectful = False
        # Eager shape-rule results by input signature and params (see ``execute``).
        self._eager_cache: dict = {}
        primitives[name] = self

    def __repr__(self) -> str:
        return self.name

    def def_shape(self, rule: Callable) -> Callable:
        self.shape_rule = rule
        return rule

    def def_impl(self, impl: Callable) -> Callable:
        self.impl = impl
        return impl

    def def_vjp(self, rule: Callable) -> Callable:
        self.vjp_rule = rule
        return rule

    def def_jvp(self, rule: Callable) -> Callable:
        self.jvp_rule = rule
        return rule

    def def_batch(self, rule: Callable) -> Callable:
        self.batch_rule = rule
        return rule

    def abstract_eval(self, *avals: ShapedArray, **params) -> list[ShapedArray]:
        """Run the shape rule; always returns a list of output avals."""
        try:
            out = self.shape_rule(*avals, **params)
        except FgradTypeError:
            raise
        except (TypeError, ValueError) as e:
            shapes = ", ".join(a.str_short() for a in avals)
            raise FgradTypeError(
                f"{self.name}: {e} (operands: {shapes}) at {user_frame()}"
            ) from None
        return list(out) if self.multiple_results else [out]

    def bind(self, *args, **params):
        """Apply the primitive: eagerly, or recorded/transformed by the top trace."""
        for a in args:
            if type(a) is not Array:
                break
        else:  # the eager hot path: only concrete Arrays, so no trace is involved
            if args or not _trace_stack:
                outs = _execute(self, [a._v for a in args], params)[0]
                return outs if self.multiple_results else outs[0]
        top = find_top_trace(args)
        if top is None and not args and _trace_stack:
            top = _staging_trace()  # e.g. iota under jit: record it, don't bake a constant
        if top is None:
            outs = execute(self, args, params)
        else:
            tracers = [top.full_raise(a) for a in args]
            outs = top.process_primitive(self, tracers, params)
        return outs if self.multiple_results else outs[0]


# ---------------------------------------------------------------- backends / execution

_BACKEND_MODULES = {
    "reference": "fgrad.backends.reference",
    "cpu": "fgrad.backends.cpu",
    "cuda": "fgrad.backends.cuda",
}
_loaded_backends: dict[str, Any] = {}


def register_backend(name: str, module_path: str) -> None:
    """Make a backend module importable by name (it must export ``run``)."""
    _BACKEND_MODULES[name] = module_path
    _loaded_backends.pop(name, None)


def get_backend(name: str | None = None):
    """Return the backend module called ``name`` (default: ``config.default_backend``)."""
    name = name or config.default_backend
    mod = _loaded_backends.get(name)
    if mod is None:
        if name not in _BACKEND_MODULES:
            raise ValueError(f"unknown backend {name!r}; known: {sorted(_BACKEND_MODULES)}")
        mod = importlib.import_module(_BACKEND_MODULES[name])
        _loaded_backends[name] = mod
    return mod


def execute(prim: Primitive, args: Sequence[Any], params: dict) -> list[Array]:
    """Run ``prim`` eagerly on concrete values: shape rule, backend kernel, wrap."""
    vals = [a._v if type(a) is Array else np.asarray(a) for a in args]
    return _execute(prim, vals, params)[0]


#: Eager shape-rule results kept per primitive; a full cache is simply emptied.
_EAGER_CACHE_SIZE = 1024


def _eager_key(vals: list, params: dict):
    """The shape-rule cache key: operand shapes and dtypes, then params."""
    n = len(vals)
    if n == 2:
        a, b = vals
        sig = (a.shape, a.dtype, b.shape, b.dtype)
    elif n == 1:
        a = vals[0]
        sig = (a.shape, a.dtype)
    else:
        sig = tuple([x for v in vals for x in (v.shape, v.dtype)])
    if not params:
        return sig
    # The value's type is part of the key: 2 == 2.0 == True must not share an entry.
    return (sig, tuple([(k, p.__class__, p) for k, p in params.items()]))


def _execute(prim: Primitive, vals: list, params: dict):
    """``execute`` on the raw values (NumPy arrays or device buffers).

    Returns ``(outputs as Arrays, output avals)``. The shape rule runs once per input
    signature and params: its result is cached on the primitive (a rule is a pure
    function of the avals and params), so a repeated eager call only checks the key.
    """
    cache = prim._eager_cache
    key = _eager_key(vals, params)
    try:
        out_avals = cache.get(key)
    except TypeError:  # an unhashable param (a list, an array): no caching
        key = out_avals = None
    if out_avals is None:
        out_avals = prim.abstract_eval(*[ShapedArray(v.shape, v.dtype) for v in vals], **params)
        if key is not None:
            if len(cache) >= _EAGER_CACHE_SIZE:
                cache.clear()
            cache[key] = out_avals
    name = config.default_backend
    for v in vals:
        if type(v) is not np.ndarray:  # computation follows data, as in JAX
            name = v.fgrad_backend
            break
    backend = _loaded_backends.get(name) or get_backend(name)
    outs = backend.run(prim, vals, params)
    result = []
    for o, aval in zip(outs, out_avals):
        a = object.__new__(Array)
        if type(o) is not np.ndarray:
            if getattr(o, "fgrad_backend", None):  # a device buffer: kept there
                a._v = o
                result.append(a)
                continue
            o = np.asarray(o)
        if o.dtype != aval.dtype:
            o = o.astype(aval.dtype)
        # Always read-only (compiled kernels are typed by the flag: a mix of read-only
        # and writeable inputs would compile each one twice). setflags(False) with a
        # positional argument costs ~35 ns, ``flags.writeable = False`` ~160 ns.
        o.setflags(False)
        a._v = o
        result.append(a)
    if config.debug_nans or config.debug_infs:
        check_finite(prim, result, [ShapedArray(v.shape, v.dtype) for v in vals])
    return result, out_avals


def check_finite(prim: Primitive, outs: Sequence[Array], in_avals, where: str | None = None):
    """Raise FloatingPointError if a debug flag is on and an output is NaN/inf."""
    for o in outs:
        v = o._v
        if not np.issubdtype(v.dtype, np.floating):
            continue
        bad = None
        if config.debug_nans and np.isnan(v).any():
            bad = "NaN"
        elif config.debug_infs and np.isinf(v).any():
            bad = "inf"
        if bad:
            shapes = ", ".join(a.str_short() for a in in_avals)
            raise FloatingPointError(
                f"debug_nans: primitive {prim.name} produced {bad} "
                f"(inputs: {shapes}) at {where or user_frame()}"
            )


# ---------------------------------------------------------------- traces and tracers


class MainTrace:
    """One active transformation; ``level`` orders nested ones (higher = inner)."""

    __slots__ = ("level", "trace_type", "payload", "alive", "name")

    def __init__(self, level: int, trace_type: type, payload: Any, name: str):
        self.level = level
        self.trace_type = trace_type
        self.payload = payload
        self.alive = True
        self.name = name


_trace_stack: list[MainTrace] = []


class new_main:
    """Context manager opening a new transformation level.

    Example: ``with new_main(JaxprTrace, builder) as main: trace = main_trace(main)``.
    """

    def __init__(self, trace_type: type, payload: Any = None, name: str = ""):
        self.trace_type = trace_type
        self.payload = payload
        self.name = name or trace_type.__name__

    def __enter__(self) -> MainTrace:
        self.main = MainTrace(len(_trace_stack) + 1, self.trace_type, self.payload, self.name)
        _trace_stack.append(self.main)
        return self.main

    def __exit__(self, *exc):
        popped = _trace_stack.pop()
        assert popped is self.main
        popped.alive = False
        return False


def _staging_trace():
    """The innermost abstract JaxprTrace (jit/make_jaxpr), if one is active."""
    for main in reversed(_trace_stack):
        if main.trace_type is JaxprTrace and not main.payload.concrete:
            return JaxprTrace(main)
    return None


def find_top_trace(args: Sequence[Any]):
    top = None
    for a in args:
        if isinstance(a, Tracer):
            main = a._trace.main
            if not main.alive:
                raise_leaked(a)
            if top is None or main.level > top.main.level:
                top = a._trace
    return top


def raise_leaked(t: Tracer):
    raise UnexpectedTracerError(
        f"Encountered a tracer ({t.aval.str_short()}, created at {t.source_info}) "
        f"after the transformation that created it ({t._trace.main.name}) had finished. "
        f"This usually means a traced value escaped through a global, a closure or a "
        f"side effect (e.g. appended to a list) and was used later at {user_frame()}. "
        f"Return values out of transformed functions instead."
    )


class Trace:
    """Base of all transformations: lifts values and processes primitives."""

    def __init__(self, main: MainTrace):
        self.main = main

    def full_raise(self, val: Any) -> Tracer:
        if isinstance(val, Tracer):
            main = val._trace.main
            if main is self.main:
                return val
            if not main.alive:
                raise_leaked(val)
            if main.level > self.main.level:
                raise UnexpectedTracerError(
                    f"a tracer from an inner transformation ({main.name}) reached an "
                    f"outer one ({self.main.name}) at {user_frame()}"
                )
            return self.lift(val)
        return self.pure(val)

    def pure(self, val: Any) -> Tracer:
        raise NotImplementedError

    def lift(self, val: Tracer) -> Tracer:
        return self.pure(val)

    def process_primitive(self, prim: Primitive, tracers, params) -> list[Tracer]:
        raise NotImplementedError


class Tracer:
    """A value inside a transformation. Operators are installed by ``fgrad.numpy``."""

    __slots__ = ("_trace", "source_info")
    __array_priority__ = 1000

    aval: ShapedArray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.aval.shape

    @property
    def dtype(self) -> np.dtype:
        return self.aval.dtype

    @property
    def ndim(self) -> int:
        return self.aval.ndim

    @property
    def size(self) -> int:
        return self.aval.size

    def concrete_value(self) -> Any:
        """The concrete value behind this tracer, or None when it is abstract."""
        return None

    def _concrete(self, what: str):
        if not self._trace.main.alive:
            raise_leaked(self)
        val = self.concrete_value()
        if val is None:
            raise ConcretizationError(
                f"{what} needs a concrete value, but got an abstract tracer "
                f"{self.aval.str_short()} (created at {self.source_info}) inside "
                f"{self._trace.main.name}, at {user_frame()}. Python control flow cannot "
                f"depend on values traced by jit: use lax.cond / lax.switch for branches, "
                f"lax.while_loop / lax.fori_loop for loops, fnp.where for elementwise "
                f"choices, or mark the argument static with static_argnums."
            )
        return val

    def __bool__(self) -> bool:
        return bool(self._concrete("bool() (e.g. an `if` or `while` test)"))

    def __int__(self) -> int:
        return int(self._concrete("int()"))

    def __float__(self) -> float:
        return float(self._concrete("float()"))

    def __index__(self) -> int:
        return int(self._concrete("using a value as an index").__index__())

    def item(self, *args):
        return np.asarray(self._concrete(".item()")).item(*args)

    def tolist(self):
        return np.asarray(self._concrete(".tolist()")).tolist()

    def __array__(self, dtype=None, copy=None):
        v = np.asarray(self._concrete("np.asarray() / conversion to NumPy"))
        return v.astype(dtype) if dtype is not None else v

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object (a 0-d array)")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __setitem__(self, idx, value):
        raise TypeError(
            "fgrad arrays are immutable: `x[idx] = v` is not supported; "
            f"use the functional form `x = x.at[idx].set(v)` instead (at {user_frame()})"
        )

    def __hash__(self):
        raise TypeError(
            f"unhashable type: tracer {self.aval.str_short()}; a traced value cannot be "
            f"a dict key or a static argument"
        )

    def block_until_ready(self):
        return self

    def __repr__(self) -> str:
        return (
            f"Traced<{self.aval.str_short()}>(created at {self.source_info}, "
            f"in {self._trace.main.name})"
        )


# ---------------------------------------------------------------- recording into a jaxpr


class JaxprBuilder:
    """Accumulates equations while a JaxprTrace is active."""

    def __init__(self, concrete: bool):
        # concrete=True: tracers also carry values (vjp, where Python `if` must work).
        self.concrete = concrete
        self.eqns: list[Eqn] = []
        self.tracer_to_var: dict[int, Var] = {}
        self.const_tracers: dict[int, JaxprTracer] = {}
        self.const_vals: dict[int, Any] = {}  # var id -> value (keeps ids alive)
        self.constvars: list[Var] = []
        self.consts: list[Any] = []
        self.invars: list[Var] = []
        # Values seen for every var, for vjp's backward pass (residuals).
        self.values: dict[Var, Any] = {}

    def add_var(self, tracer: JaxprTracer) -> Var:
        var = Var(tracer.aval)
        self.tracer_to_var[id(tracer)] = var
        return var

    def getvar(self, tracer: JaxprTracer) -> Atom:
        return self.tracer_to_var[id(tracer)]


class JaxprTracer(Tracer):
    __slots__ = ("aval", "val")

    def __init__(self, trace: JaxprTrace, aval: ShapedArray, val: Any, source_info: str):
        self._trace = trace
        self.aval = aval
        self.val = val
        self.source_info = source_info

    def concrete_value(self):
        v = self.val
        while isinstance(v, Tracer):
            v = v.concrete_value()
        return v


class JaxprTrace(Trace):
    """Records every primitive into ``main.payload`` (a JaxprBuilder).

    With ``builder.concrete`` the tracers also carry the values computed one level
    down, so Python control flow on values works and vjp keeps them as residuals.
    """

    def new_arg(self, aval: ShapedArray, val: Any = None) -> JaxprTracer:
        builder: JaxprBuilder = self.main.payload
        t = JaxprTracer(self, aval, val, "argument")
        var = builder.add_var(t)
        builder.invars.append(var)
        builder.values[var] = val
        builder.const_tracers[id(t)] = t  # keep alive so id() stays unique
        return t

    def pure(self, val: Any) -> JaxprTracer:
        builder: JaxprBuilder = self.main.payload
        key = id(val)
        t = builder.const_tracers.get(key)
        if t is not None and builder.const_vals.get(key) is val:
            return t
        if not isinstance(val, Array | Tracer):
            val = asarray_operand(val)
        aval = get_aval(val)
        t = JaxprTracer(self, aval, val if builder.concrete else _const_val(val), "constant")
        if aval.shape == () and not isinstance(val, Tracer):
            atom = Literal(asarray_operand(val), aval)
            builder.tracer_to_var[id(t)] = atom
        else:
            var = builder.add_var(t)
            builder.constvars.append(var)
            builder.consts.append(val)
            builder.values[var] = val
        builder.const_tracers[key] = t
        builder.const_vals[key] = val
        builder.const_tracers[id(t)] = t
        return t

    def process_primitive(self, prim, tracers, params):
        builder: JaxprBuilder = self.main.payload
        vals = [t.val for t in tracers]
        if (
            builder.concrete
            and all(type(v) is Array for v in vals)
            and (vals or _staging_trace() is None)
        ):
            # vjp's forward pass on concrete values (the eager hot path): one shape-rule
            # lookup gives the output avals and runs the kernel.
            out_vals, out_avals = _execute(prim, [v._v for v in vals], params)
        else:
            out_avals = prim.abstract_eval(*[t.aval for t in tracers], **params)
            if builder.concrete and all(v is not None for v in vals):
                out_vals = prim.bind(*vals, **params)
                if not prim.multiple_results:
                    out_vals = [out_vals]
            else:
                out_vals = [None] * len(out_avals)
        src = user_frame()
        tracer_to_var = builder.tracer_to_var
        values = builder.values
        const_tracers = builder.const_tracers
        invars = [tracer_to_var[id(t)] for t in tracers]
        outs = []
        outvars = []
        for a, v in zip(out_avals, out_vals):
            t = JaxprTracer(self, a, v, src)
            var = Var(a)
            tid = id(t)
            tracer_to_var[tid] = var
            const_tracers[tid] = t
            values[var] = v
            outs.append(t)
            outvars.append(var)
        eqn = object.__new__(Eqn)  # Eqn(...) without copying the fresh lists and params
        eqn.primitive, eqn.invars, eqn.outvars, eqn.params = prim, invars, outvars, params
        eqn.source_info = src
        builder.eqns.append(eqn)
        return outs


def _const_val(val: Any) -> Any:
    # In abstract mode, constants that are themselves concrete keep their value so that
    # e.g. shape-only helpers can still read them; tracers of outer levels stay opaque.
    return None if isinstance(val, Tracer) else val


def trace_to_jaxpr(
    fun: Callable,
    in_avals: Sequence[ShapedArray],
    in_vals: Sequence[Any] | None = None,
    name: str = "make_jaxpr",
):
    """Trace ``fun`` (flat inputs -> flat outputs) into a Jaxpr.

    Args:
        fun: takes one positional argument per aval and returns a list of outputs.
        in_avals: abstract values of the inputs.
        in_vals: optional concrete values; when given, the trace is concrete and the
            returned builder holds every intermediate value (used by vjp).
        name: transformation name shown in error messages.

    Returns:
        ``(jaxpr, consts, out_vals, builder)``.
    """
    builder = JaxprBuilder(concrete=in_vals is not None)
    with new_main(JaxprTrace, builder, name=name) as main:
        trace = JaxprTrace(main)
        vals = in_vals if in_vals is not None else [None] * len(in_avals)
        args = [trace.new_arg(a, v) for a, v in zip(in_avals, vals)]
        outs = fun(*args)
        out_tracers = [trace.full_raise(o) for o in outs]
        outvars = [builder.getvar(t) for t in out_tracers]
        out_vals = [t.val for t in out_tracers]
    jaxpr = Jaxpr(builder.constvars, builder.invars, builder.eqns, outvars)
    return jaxpr, builder.consts, out_vals, builder


def eval_jaxpr(jaxpr: Jaxpr, consts: Sequence[Any], *args: Any) -> list[Any]:
    """Evaluate a jaxpr by binding each equation's primitive in order.

    Works on concrete values and on tracers alike, which is how jaxprs are
    re-traced by other transformations.
    """
    env: dict[Var, Any] = {}

    def read(v: Atom) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    if len(args) != len(jaxpr.invars):
        raise TypeError(f"jaxpr takes {len(jaxpr.invars)} arguments, got {len(args)}")
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        outs = eqn.primitive.bind(*[read(v) for v in eqn.invars], **eqn.params)
        if not eqn.primitive.multiple_results:
            outs = [outs]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def make_jaxpr(fun: Callable, static_argnums: Sequence[int] = ()) -> Callable:
    """Return a function that traces ``fun`` and gives its IR as a ``ClosedJaxpr``.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> print(fgrad.make_jaxpr(lambda x: fnp.maximum(x, 0.0))(fnp.ones(3)))
        { lambda ; a:f32[3]. let
            b:f32[3] = max a 0.0
          in (b,) }
    """
    static = set((static_argnums,) if isinstance(static_argnums, int) else static_argnums)

    def make(*args, **kwargs):
        dyn = [a for i, a in enumerate(args) if i not in static]
        flat, in_tree = tree_util.tree_flatten(dyn)
        flat = [asarray_operand(x) for x in flat]
        avals = [get_aval(x) for x in flat]

        def flat_fun(*xs):
            it = iter(tree_util.tree_unflatten(in_tree, list(xs)))
            full = [a if i in static else next(it) for i, a in enumerate(args)]
            out = fun(*full, **kwargs)
            return [asarray_operand(o) for o in tree_util.tree_leaves(out)]

        jaxpr, consts, _, _ = trace_to_jaxpr(flat_fun, avals, name="make_jaxpr")
        return ClosedJaxpr(jaxpr, consts)

    return make


def asarray_operand(x: Any, dtype: Any = None) -> Any:
    """Turn a Python/NumPy value into an fgrad operand; tracers and Arrays pass through.

    Python scalars take ``dtype`` when given (weak typing: ``x * 2.0`` keeps x's dtype),
    else the 32-bit defaults; NumPy values are copied (an Array never aliases a
    caller's mutable buffer).
    """
    if isinstance(x, Array | Tracer):
        return x
    if isinstance(x, bool | int | float) and not isinstance(x, np.generic):
        return Array(np.asarray(x, dtype=dtype if dtype is not None else python_scalar_dtype(x)))
    return Array(np.array(x))
