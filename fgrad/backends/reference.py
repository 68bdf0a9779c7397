"""The reference backend: every primitive's plain-NumPy implementation.

The implementations live beside each primitive's declaration in ``fgrad.lax`` (so a
primitive is one edit); this module is the backend that runs them, and the oracle
every other backend is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad.core import Primitive


def run(prim: Primitive, vals: Sequence[np.ndarray], params: dict[str, Any]) -> list[np.ndarray]:
    """Run ``prim`` on NumPy arrays; always returns a list of outputs."""
    if prim.impl is None:
        raise NotImplementedError(f"primitive {prim.name} has no reference implementation")
    out = prim.impl(*vals, **params)
    return list(out) if prim.multiple_results else [out]


def has_kernel(prim: Primitive) -> bool:
    """True when the reference backend can run ``prim``."""
    return prim.impl is not None


def compile(closed):  # noqa: A001 - the backend hook's name
    """A "compiled" program that interprets the jaxpr with the NumPy kernels."""
    from fgrad.core import Literal

    jaxpr, consts = closed.jaxpr, [np.asarray(c) for c in closed.consts]

    def program(*args):
        with np.errstate(all="ignore"):  # inf and NaN are results, not warnings
            return interpret(*args)

    def interpret(*args):
        env = dict(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))

        def read(v):
            return np.asarray(v.val) if isinstance(v, Literal) else env[v]

        for eqn in jaxpr.eqns:
            outs = run(eqn.primitive, [read(v) for v in eqn.invars], eqn.params)
            for v, o in zip(eqn.outvars, outs):
                env[v] = np.asarray(o, v.aval.dtype)
        return [np.array(read(v)) for v in jaxpr.outvars]

    return program
