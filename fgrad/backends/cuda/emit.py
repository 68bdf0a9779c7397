"""Scalar CUDA expressions for the elementwise primitives (the bodies of fused kernels).

The CPU emitters (``fgrad.backends.cpu.emit.EMITTERS``) are reused where their source is
plain operators, conditionals and NumPy scalar casts, which Numba compiles for the GPU
as well. NumPy functions such as ``np.exp`` or ``np.abs`` are not all supported in CUDA
device code (``np.exp``, ``np.sqrt``, ``np.floor`` are not, in Numba 0.68), so the
primitives that call them get their own emitters here, calling the names bound in
``runtime.namespace()`` (``exp``, ``sqrt``, ``floor``, ...: ``math.*`` and libdevice
on the GPU). ``EMITTERS[name](eqn, args, const)`` has the CPU emitters' signature and
returns None when the equation cannot be a kernel expression (it then runs on the host).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fgrad.backends.cpu.emit import EMITTERS as CPU_EMITTERS
from fgrad.core import Eqn

# Reused verbatim: operators, comparisons, conditionals and casts only.
_PORTABLE = (
    "neg add sub mul pow eq ne lt le gt ge and or xor not select_n "
    "convert_element_type stop_gradient integer_pow"
).split()

_NP_TYPE = {
    "float32": "np.float32",
    "float64": "np.float64",
    "int8": "np.int8",
    "int16": "np.int16",
    "int32": "np.int32",
    "int64": "np.int64",
    "uint8": "np.uint8",
    "uint16": "np.uint16",
    "uint32": "np.uint32",
    "uint64": "np.uint64",
    "bool": "np.bool_",
}

#: dtypes that live on the device (float16 runs on the host).
DEVICE_DTYPES = frozenset(np.dtype(t) for t in _NP_TYPE if t != "bool") | {np.dtype(np.bool_)}


def np_type(dtype) -> str:
    return _NP_TYPE[np.dtype(dtype).name]


def _out(eqn: Eqn) -> np.dtype:
    return eqn.outvars[0].aval.dtype


def _in(eqn: Eqn, i: int = 0) -> np.dtype:
    return eqn.invars[i].aval.dtype


def _float_call(fn: str) -> Callable:
    def emit(eqn, args, const):
        if _out(eqn).kind != "f":
            return None
        return f"{fn}({args[0]})"

    return emit


def _chooser(op: str) -> Callable:
    # np.maximum / np.minimum propagate NaN from either operand.
    def emit(eqn, args, const):
        x, y = args
        return f"({x} if ({x} {op} {y} or {x} != {x}) else {y})"

    return emit


def _rsqrt(eqn, args, const):
    return f"({const(1, _out(eqn))} / sqrt({args[0]}))"


def _logistic(eqn, args, const):
    one = const(1, _out(eqn))
    return f"({one} / ({one} + exp(-{args[0]})))"


def _erf_inv(eqn, args, const):
    if _out(eqn).kind != "f":
        return None
    return f"erf_inv64(np.float64({args[0]}))"


def _abs(eqn, args, const):
    x, dt = args[0], _out(eqn)
    if dt.kind == "f":
        return f"fabs({x})"
    if dt.kind == "u" or dt == np.bool_:
        return x
    return f"({x} if {x} >= {const(0, dt)} else -{x})"


def _sign(eqn, args, const):
    x, dt = args[0], _out(eqn)
    if dt == np.bool_:
        return x
    one, zero = const(1, dt), const(0, dt)
    if dt.kind == "u":
        return f"({one} if {x} > {zero} else {zero})"
    minus = const(-1, dt)
    # Zero and NaN map to themselves, as np.sign does.
    return f"({one} if {x} > {zero} else ({minus} if {x} < {zero} else {x}))"


def _round(eqn, args, const):
    x, dt = args[0], _out(eqn)
    if dt.kind != "f":
        return None
    if eqn.params.get("rounding_method", 0) == 1:
        return f"rint({x})"
    return f"copysign(floor(fabs({x}) + {const(0.5, dt)}), {x})"


def _div(eqn, args, const):
    x, y = args
    dt = _out(eqn)
    if dt.kind == "f":
        return f"({x} / {y})"
    if dt.kind not in "iu":
        return None
    zero = const(0, dt)
    if dt.kind == "u":
        return f"({zero} if {y} == {zero} else {x} // {y})"
    # C semantics: the quotient rounds toward zero; division by zero gives 0 (as the
    # reference implementation).
    q = f"(({x} if {x} >= {zero} else -{x}) // ({y} if {y} >= {zero} else -{y}))"
    return f"({zero} if {y} == {zero} else ({q} if ({x} < {zero}) == ({y} < {zero}) else -{q}))"


def _shift(kind: str) -> Callable:
    def emit(eqn, args, const):
        x, y = args
        dt = _out(eqn)
        if dt.kind not in "iu":
            return None
        bits = dt.itemsize * 8
        mask = const((1 << bits) - 1, np.uint64)
        ux = f"(np.uint64({x}) & {mask})"  # x's bits as an unsigned number
        uy = f"(np.uint64({y}) & {mask})"
        nbits = const(bits, np.uint64)
        zero = const(0, np.uint64)  # both branches uint64: Numba unifies int/uint as float
        if kind == "left":
            return f"({zero} if {uy} >= {nbits} else (({ux} << {uy}) & {mask}))"
        if kind == "right_logical":
            return f"({zero} if {uy} >= {nbits} else ({ux} >> {uy}))"
        # Arithmetic: x's bits as a signed number; shifting by bits-1 gives the sign fill.
        sx = f"np.int64({x})"
        if dt.kind == "u" and bits < 64:
            wrap, half = const(1 << bits, np.int64), const(1 << (bits - 1), np.int64)
            sx = f"({sx} - {wrap} if {sx} >= {half} else {sx})"
        top, top_u = const(bits - 1, np.int64), const(bits - 1, np.uint64)
        return f"({sx} >> ({top} if {uy} >= {top_u} else np.int64({uy})))"

    return emit


EMITTERS: dict[str, Callable] = {name: CPU_EMITTERS[name] for name in _PORTABLE}
EMITTERS.update(
    {
        "div": _div,
        "max": _chooser(">"),
        "min": _chooser("<"),
        "exp": _float_call("exp"),
        "log": _float_call("log"),
        "log1p": _float_call("log1p"),
        "expm1": _float_call("expm1"),
        "tanh": _float_call("tanh"),
        "sin": _float_call("sin"),
        "cos": _float_call("cos"),
        "tan": _float_call("tan"),
        "sqrt": _float_call("sqrt"),
        "floor": _float_call("floor"),
        "ceil": _float_call("ceil"),
        "erf": _float_call("erf"),
        "rsqrt": _rsqrt,
        "logistic": _logistic,
        "erf_inv": _erf_inv,
        "abs": _abs,
        "sign": _sign,
        "round": _round,
        "shift_left": _shift("left"),
        "shift_right_logical": _shift("right_logical"),
        "shift_right_arithmetic": _shift("right_arithmetic"),
    }
)


def expression(eqn: Eqn, args: list[str], const: Callable) -> str | None:
    """The scalar expression of ``eqn`` cast to its output dtype, or None."""
    emitter = EMITTERS.get(eqn.primitive.name)
    if emitter is None or len(eqn.outvars) != 1:
        return None
    dtypes = [v.aval.dtype for v in list(eqn.invars) + list(eqn.outvars)]
    if any(d not in DEVICE_DTYPES for d in dtypes):
        return None
    expr = emitter(eqn, args, const)
    if expr is None:
        return None
    return f"{np_type(_out(eqn))}({expr})"
