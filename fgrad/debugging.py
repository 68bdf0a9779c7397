"""``debug_print``: print real values from inside ``jit``, ``grad`` and ``vmap``.

A Python ``print`` inside a jitted function runs once, at trace time, and shows
tracers. ``debug_print`` is instead a primitive with an effect: it is recorded in the
jaxpr, kept by the compiler's dead-code elimination, and prints the concrete values
every time the program runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fgrad import tree as tree_util
from fgrad.core import Primitive
from fgrad.lax.utils import asarray_operand

debug_print_p = Primitive("debug_print", multiple_results=True)
debug_print_p.effectful = True  # never removed as dead code
debug_print_p.def_shape(lambda *avals, **params: [])


@debug_print_p.def_impl
def _debug_print_impl(*vals, fmt, treedef):
    args, kwargs = tree_util.tree_unflatten(treedef, [np.asarray(v) for v in vals])
    print(fmt.format(*args, **kwargs))
    return []


debug_print_p.def_vjp(lambda cts, *args, out, **params: (None,) * len(args))
debug_print_p.def_jvp(lambda ts, *args, out, **params: [])


@debug_print_p.def_batch
def _debug_print_batch(args, dims, *, fmt, treedef):
    # Print the whole batch at once, batch axis first.
    from fgrad.lax.batch_util import moveaxis

    moved = [x if d is None else moveaxis(x, d, 0) for x, d in zip(args, dims)]
    debug_print_p.bind(*moved, fmt=fmt, treedef=treedef)
    return [], []


def debug_print(fmt: str, *args: Any, **kwargs: Any) -> None:
    """Print ``fmt.format(*args, **kwargs)`` with concrete values, also under jit.

    Args:
        fmt: a ``str.format`` template, e.g. ``"loss {} at step {step}"``.
        *args, **kwargs: arrays (or pytrees of arrays) to format.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> f = fgrad.jit(lambda x: (fgrad.debug_print("x = {}", x), x * 2.0)[1])
        >>> _ = f(fnp.asarray(3.0))
        x = 3.0
    """
    leaves, treedef = tree_util.tree_flatten((args, kwargs))
    debug_print_p.bind(*[asarray_operand(x) for x in leaves], fmt=fmt, treedef=treedef)
