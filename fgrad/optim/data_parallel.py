"""``data_parallel``: average the gradients over MPI ranks before any optimizer.

A data-parallel training step differs from a single-process one in one line::

    opt = optim.data_parallel(optim.adam(1e-3))   # was: optim.adam(1e-3)

Each rank computes gradients on its shard of the global batch; ``update`` replaces
them by their mean over the ranks (``fgrad.distributed.allreduce_mean``, identical bits
on every rank) and hands that to the inner transformation. Because every rank starts
from the same parameters and state and applies the same averaged update, parameters
stay bit-identical across ranks without ever being sent again.

The allreduce is a host (MPI) operation, so ``update`` must be called **outside**
``fgrad.jit``: jit the gradient computation, call ``opt.update`` on its result. The
inner update itself is compiled with ``fgrad.jit`` (``jit_inner=True``), so nothing
is lost by running the wrapper eagerly. Called on traced values, ``update`` raises a
``TypeError`` that says so (in a single process too, so a script that works on one
process works under ``mpiexec``).
"""

from __future__ import annotations

from typing import Any

from fgrad.optim.base import GradientTransformation

__all__ = ["data_parallel"]


def data_parallel(
    inner: GradientTransformation, *, jit_inner: bool = True
) -> GradientTransformation:
    """Wraps ``inner`` so its ``update`` first averages the gradients over all ranks.

    Args:
        inner: any ``GradientTransformation`` (``sgd``, ``adam``, a ``chain``...).
        jit_inner: compile the inner update with ``fgrad.jit`` (one compile per
            gradient signature). ``False`` runs it eagerly, for an inner transformation
            that cannot be traced.

    Returns:
        A ``GradientTransformation`` whose state is exactly ``inner``'s state (so
        checkpoints and name-based lookups are unchanged). Its
        ``update(grads, state, params=None, *, weight=None)`` computes
        ``allreduce_mean(grads, weight)`` and then ``inner.update``; pass
        ``weight=<examples in this rank's shard>`` when shards can be uneven, so the
        average is the gradient of the mean loss over the whole global batch. Must be
        called outside ``jit``. In a single process the gradients pass through
        unchanged.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> from fgrad.optim.data_parallel import data_parallel
        >>> opt = data_parallel(optim.sgd(0.1))
        >>> params = {"w": fnp.asarray([1.0, 2.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": fnp.asarray([1.0, -1.0])}, state, params)
        >>> optim.apply_updates(params, updates)["w"].tolist()  # one process: plain SGD
        [0.8999999761581421, 2.0999999046325684]
    """
    # Imported here: ``fgrad.optim`` must not pull in the jit machinery or
    # ``fgrad.distributed`` (and, through it, MPI) just by being imported.
    from fgrad import distributed
    from fgrad.jit import jit

    inner_update = jit(inner.update) if jit_inner else inner.update

    def update_fn(updates: Any, state: Any, params: Any = None, *, weight: float | None = None):
        updates = distributed.allreduce_mean(updates, weight=weight)
        return inner_update(updates, state, params)

    return GradientTransformation(inner.init, update_fn)
