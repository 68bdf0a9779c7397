"""Scalar Numba expressions for the elementwise primitives (the bodies of fused loops).

``EMITTERS[name](eqn, args, const)`` returns the source of one scalar expression, or
None when that equation cannot be fused (e.g. integer division, whose semantics need
more than one expression). ``args`` are the operand expressions; ``const(value, dtype)``
returns the name of a typed constant, so float32 loops never widen to float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fgrad.core import Eqn

_NP_TYPE = {
    "float16": "np.float16",
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


def np_type(dtype) -> str:
    return _NP_TYPE[np.dtype(dtype).name]


def _is_float(eqn: Eqn) -> bool:
    return np.issubdtype(eqn.outvars[0].aval.dtype, np.floating)


def _out_dtype(eqn: Eqn):
    return eqn.outvars[0].aval.dtype


def _unary_call(fn: str, float_only: bool = True) -> Callable:
    def emit(eqn, args, const):
        if float_only and not _is_float(eqn):
            return None
        return f"{fn}({args[0]})"

    return emit


def _binop(op: str) -> Callable:
    return lambda eqn, args, const: f"({args[0]} {op} {args[1]})"


def _div(eqn, args, const):
    if not _is_float(eqn):
        return None  # integer division rounds toward zero: leave it to the NumPy kernel
    return f"({args[0]} / {args[1]})"


def _rsqrt(eqn, args, const):
    return f"({const(1, _out_dtype(eqn))} / np.sqrt({args[0]}))"


def _logistic(eqn, args, const):
    if _out_dtype(eqn) == np.float32:
        return f"logistic32({args[0]})"
    one = const(1, _out_dtype(eqn))
    return f"({one} / ({one} + np.exp(-{args[0]})))"


def _fast32(fn: str, fast: str) -> Callable:
    """float32: the vectorisable ``fastmath`` version; other floats: libm's."""

    def emit(eqn, args, const):
        if not _is_float(eqn):
            return None
        return f"{fast if _out_dtype(eqn) == np.float32 else fn}({args[0]})"

    return emit


def _erf(eqn, args, const):
    return f"{np_type(_out_dtype(eqn))}(math.erf({args[0]}))"


def _round(eqn, args, const):
    if not _is_float(eqn):
        return None
    x = args[0]
    if eqn.params.get("rounding_method", 0) == 1:
        return f"np.rint({x})"
    half = const(0.5, _out_dtype(eqn))
    return f"(np.sign({x}) * np.floor(np.abs({x}) + {half}))"


def _integer_pow(eqn, args, const):
    y = eqn.params["y"]
    x = args[0]
    if y == 0:
        return const(1, _out_dtype(eqn))
    n = abs(y)
    if n <= 4:
        expr = "(" + " * ".join([x] * n) + ")"
    else:
        expr = f"({x} ** {n})"
    if y < 0:
        if not _is_float(eqn):
            return None
        expr = f"({const(1, _out_dtype(eqn))} / {expr})"
    return expr


def _pow(eqn, args, const):
    return f"({args[0]} ** {args[1]})"


def _select_n(eqn, args, const):
    which, cases = args[0], args[1:]
    if eqn.invars[0].aval.dtype == np.bool_:
        return f"({cases[1]} if {which} else {cases[0]})" if len(cases) == 2 else cases[0]
    expr = cases[-1]
    for i in range(len(cases) - 2, -1, -1):
        expr = f"({cases[i]} if {which} == {i} else {expr})"
    return expr


def _convert(eqn, args, const):
    new = np.dtype(eqn.params["new_dtype"])
    if new == np.bool_:
        return f"({args[0]} != 0)"
    return f"{np_type(new)}({args[0]})"


def _not(eqn, args, const):
    if eqn.outvars[0].aval.dtype == np.bool_:
        return f"(not {args[0]})"
    return f"(~{args[0]})"


def _identity(eqn, args, const):
    return args[0]


EMITTERS: dict[str, Callable] = {
    "neg": lambda eqn, args, const: f"(-{args[0]})",
    "add": _binop("+"),
    "sub": _binop("-"),
    "mul": _binop("*"),
    "div": _div,
    "max": lambda eqn, args, const: f"np.maximum({args[0]}, {args[1]})",
    "min": lambda eqn, args, const: f"np.minimum({args[0]}, {args[1]})",
    "exp": _fast32("np.exp", "exp32"),
    "log": _unary_call("np.log"),
    "log1p": _unary_call("np.log1p"),
    "expm1": _unary_call("np.expm1"),
    "tanh": _fast32("np.tanh", "tanh32"),
    "sin": _unary_call("np.sin"),
    "cos": _unary_call("np.cos"),
    "tan": _unary_call("np.tan"),
    "sqrt": _unary_call("np.sqrt"),
    "rsqrt": _rsqrt,
    "logistic": _logistic,
    "erf": _erf,
    "abs": _unary_call("np.abs", float_only=False),
    "sign": _unary_call("np.sign", float_only=False),
    "floor": _unary_call("np.floor"),
    "ceil": _unary_call("np.ceil"),
    "round": _round,
    "integer_pow": _integer_pow,
    "pow": _pow,
    "eq": _binop("=="),
    "ne": _binop("!="),
    "lt": _binop("<"),
    "le": _binop("<="),
    "gt": _binop(">"),
    "ge": _binop(">="),
    "and": _binop("&"),
    "or": _binop("|"),
    "xor": _binop("^"),
    "not": _not,
    "select_n": _select_n,
    "convert_element_type": _convert,
    "stop_gradient": _identity,
}
