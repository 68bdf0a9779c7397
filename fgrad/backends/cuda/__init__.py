"""The CUDA backend: numba.cuda kernels over device-resident arrays.

``run(prim, vals, params)`` executes one primitive eagerly: it compiles the primitive
as a one-equation program (cached per primitive, operand shapes/dtypes and params), so
eager execution and ``jit`` share one code generator. Operands may be NumPy arrays
(copied to the GPU) or device arrays (``runtime.CudaArray``); results are device
arrays, which ``np.asarray`` copies back to the host.

``compile(closed_jaxpr)`` (the ``jit(f, backend="cuda")`` hook) returns a
``program.CudaProgram``: one kernel per fusion group, device kernels for reductions,
contractions, convolutions, pooling, gathers/scatters and random bits, host-driven
loops for control flow, and the reference implementation on the host for the rest.

``numba.cuda`` is imported on first use, never by ``import fgrad``; without a GPU
and driver (and without ``NUMBA_ENABLE_CUDASIM=1``, Numba's CUDA simulator) the first
use raises ``CudaUnavailableError`` saying what is missing. See ``docs/cuda.md``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad.backends.cuda.runtime import (
    CudaArray,
    CudaUnavailableError,
    is_available,
    simulated,
    to_device,
    to_host,
)
from fgrad.core import ClosedJaxpr, Eqn, Jaxpr, Primitive, ShapedArray, Var

__all__ = [
    "CudaArray",
    "CudaUnavailableError",
    "compile",
    "device_put",
    "is_available",
    "run",
    "simulated",
    "to_device",
    "to_host",
]

#: Eager programs kept (least recently used go first).
EAGER_CACHE_SIZE = 1024
_eager: OrderedDict = OrderedDict()


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value  # dtypes, numbers, strings; jaxprs hash by identity (and stay alive here)


def _eager_program(prim: Primitive, avals: list[ShapedArray], params: dict[str, Any]):
    from fgrad.backends.cuda.program import CudaProgram

    try:
        key = (prim, tuple(avals), _freeze(params))
        hash(key)
    except TypeError:
        key = None
    prog = _eager.get(key) if key is not None else None
    if prog is not None:
        _eager.move_to_end(key)
        return prog
    invars = [Var(a) for a in avals]
    outvars = [Var(a) for a in prim.abstract_eval(*avals, **params)]
    eqn = Eqn(prim, invars, outvars, params, "eager")
    prog = CudaProgram(ClosedJaxpr(Jaxpr([], invars, [eqn], outvars), []))
    if key is not None:
        _eager[key] = prog
        while len(_eager) > EAGER_CACHE_SIZE:
            _eager.popitem(last=False)
    return prog


def run(prim: Primitive, vals: Sequence[Any], params: dict[str, Any]) -> list[CudaArray]:
    """Run ``prim`` on the GPU; always returns a list of device arrays."""
    from fgrad.backends.cuda import runtime

    runtime.load()
    avals = [ShapedArray(v.shape, v.dtype) for v in vals]
    prog = _eager_program(prim, avals, params)
    return prog.run_device(*[v if type(v) is CudaArray else np.asarray(v) for v in vals])


def has_kernel(prim: Primitive) -> bool:
    """True: every primitive runs (on the device, or on the host with a copy)."""
    return prim.impl is not None


def compile(closed: ClosedJaxpr):  # noqa: A001 - the backend hook's name
    """Compile a closed jaxpr into a ``CudaProgram`` (see ``program``)."""
    from fgrad.backends.cuda.program import compile as compile_program

    return compile_program(closed)


def device_put(x: Any):
    """``x`` as an fgrad Array in GPU memory (``fgrad.device_put(x, "cuda")``).

    While ``fgrad.core`` keeps only host arrays (``core.DEVICE_ARRAYS`` unset), the
    result stays on the host: eager operations copy their operands over and back, and
    jitted programs keep everything on the device between their own kernels.
    """
    from fgrad import core
    from fgrad.backends.cuda import runtime

    runtime.load()
    if type(x) is core.Array and type(x._v) is CudaArray:
        return x
    if isinstance(x, bool | int | float) and not isinstance(x, np.generic):
        host = np.asarray(x, dtype=core.python_scalar_dtype(x))
    else:
        host = np.asarray(x)
    if getattr(core, "DEVICE_ARRAYS", False):
        return core.Array(to_device(host))
    return core.Array(np.array(host))
