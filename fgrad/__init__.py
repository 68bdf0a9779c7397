"""fgrad: a small JAX-style functional transformation library.

Write pure functions over pytrees of arrays; transform them with ``grad``, ``jvp``,
``vmap`` and ``jit``. See README.md and docs/ for a tour.
"""

from fgrad import data, distributed, io, lax, nn, optim, random, tree
from fgrad import numpy as numpy  # noqa: PLC0414 - the jnp-like namespace
from fgrad.ad import grad, hessian, jacfwd, jacrev, jvp, linearize, value_and_grad, vjp
from fgrad.batching import vmap
from fgrad.config import config
from fgrad.core import (
    Array,
    ClosedJaxpr,
    ConcretizationError,
    FgradTypeError,
    Jaxpr,
    UnexpectedTracerError,
    make_jaxpr,
)
from fgrad.custom_derivatives import (
    checkpoint,
    custom_jvp,
    custom_vjp,
    print_saved_residuals,
    remat,
    saved_residuals,
)
from fgrad.debugging import debug_print
from fgrad.device import device_put
from fgrad.jit import RetraceWarning, jit
from fgrad.lax import stop_gradient

__version__ = "0.1.0"

__all__ = [
    "Array",
    "ClosedJaxpr",
    "checkpoint",
    "custom_jvp",
    "custom_vjp",
    "data",
    "debug_print",
    "device_put",
    "distributed",
    "print_saved_residuals",
    "random",
    "remat",
    "saved_residuals",
    "ConcretizationError",
    "FgradTypeError",
    "Jaxpr",
    "UnexpectedTracerError",
    "config",
    "grad",
    "hessian",
    "io",
    "jacfwd",
    "jit",
    "RetraceWarning",
    "jacrev",
    "jvp",
    "lax",
    "linearize",
    "make_jaxpr",
    "nn",
    "numpy",
    "optim",
    "stop_gradient",
    "tree",
    "value_and_grad",
    "vjp",
    "vmap",
]
