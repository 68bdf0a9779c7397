"""The pieces every optimizer is built from: ``GradientTransformation`` and friends.

An optimizer is a pair of pure functions bundled in a ``GradientTransformation``:

* ``init(params) -> state``: the initial optimizer state, a pytree of arrays;
* ``update(updates, state, params=None) -> (updates, new_state)``: transforms a
  pytree of gradients into a pytree of parameter updates.

``apply_updates(params, updates)`` adds the updates to the parameters. States are
plain pytrees (NamedTuples, tuples, dicts of arrays and int32 step counters), so they
flatten, jit, save and load like params. Nothing here branches in Python on an array's
value, so every update traces under ``jit``.

This module also holds the small tree helpers the other modules share (bias
correction, moment updates, a saturating step counter, a tree-wide select).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

import fgrad.numpy as fnp
from fgrad import tree as tree_util

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "OptState",
    "Params",
    "Schedule",
    "ScalarOrSchedule",
    "Updates",
    "apply_updates",
    "identity",
    "init_empty_state",
    "safe_increment",
    "set_to_zero",
    "stateless",
]

Params = Any  # a pytree of arrays
Updates = Any  # a pytree with the structure of the params
OptState = Any  # a pytree of arrays
Schedule = Callable[[Any], Any]  # step count (int32 array) -> scalar
ScalarOrSchedule = float | Any | Schedule

NO_PARAMS_MSG = (
    "this transformation needs the current parameters: call "
    "`update(updates, state, params)` with `params`"
)

_INT32_MAX = np.iinfo(np.int32).max


class GradientTransformation(NamedTuple):
    """An optimizer: a pair of pure functions ``(init, update)``.

    Attributes:
        init: ``init(params) -> state`` builds the initial state.
        update: ``update(updates, state, params=None) -> (updates, new_state)``
            maps gradients (or the updates of an earlier transformation) to new
            updates and the next state.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.sgd(0.1)
        >>> params = {"w": fnp.asarray([1.0, 2.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": fnp.asarray([1.0, -1.0])}, state, params)
        >>> optim.apply_updates(params, updates)["w"].tolist()
        [0.8999999761581421, 2.0999999046325684]
    """

    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]


class EmptyState(NamedTuple):
    """The state of a stateless transformation: a pytree node with no leaves."""


def init_empty_state(params: Params) -> EmptyState:
    """Ignores ``params`` and returns ``EmptyState()``.

    Args:
        params: unused.

    Returns:
        ``EmptyState()``.

    Example:
        >>> init_empty_state({"w": 1.0})
        EmptyState()
    """
    del params
    return EmptyState()


def identity() -> GradientTransformation:
    """The transformation that returns its updates unchanged.

    Returns:
        A stateless ``GradientTransformation``.

    Example:
        >>> opt = identity()
        >>> opt.update({"w": 1.0}, opt.init({"w": 0.0}))
        ({'w': 1.0}, EmptyState())
    """

    def update_fn(updates, state, params=None):
        del params
        return updates, state

    return GradientTransformation(init_empty_state, update_fn)


def set_to_zero() -> GradientTransformation:
    """Replaces every update by zeros (freezes parameters, e.g. in ``multi_transform``).

    Returns:
        A stateless ``GradientTransformation``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = set_to_zero()
        >>> opt.update(fnp.asarray([1.0, 2.0]), opt.init(None))[0].tolist()
        [0.0, 0.0]
    """

    def update_fn(updates, state, params=None):
        del params
        return tree_util.tree_map(fnp.zeros_like, updates), state

    return GradientTransformation(init_empty_state, update_fn)


def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
    """Wraps ``f(updates, params) -> updates`` as a stateless transformation.

    Args:
        f: a function of the whole updates tree and the params (which may be None).

    Returns:
        A ``GradientTransformation`` whose state is ``EmptyState()``.

    Example:
        >>> opt = stateless(lambda u, p: {k: 2 * v for k, v in u.items()})
        >>> opt.update({"w": 1.5}, opt.init(None))[0]
        {'w': 3.0}
    """

    def update_fn(updates, state, params=None):
        del state
        return f(updates, params), EmptyState()

    return GradientTransformation(init_empty_state, update_fn)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, leaf by leaf, keeping each parameter's dtype.

    Args:
        params: a pytree of arrays.
        updates: a pytree with the same structure (from an optimizer's ``update``).

    Returns:
        The new parameters. A leaf whose sum was promoted (e.g. a float32 parameter
        plus a float64 update) is cast back to the parameter's dtype.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> p = {"w": fnp.asarray([1.0, 2.0])}
        >>> u = {"w": fnp.asarray(np.array([0.5, 0.5]))}  # float64 updates
        >>> apply_updates(p, u)["w"]
        Array([1.5, 2.5], dtype=float32)
    """

    def add(p, u):
        new = fnp.add(p, u)
        dtype = p.dtype if hasattr(p, "dtype") else new.dtype
        return new if new.dtype == dtype else new.astype(dtype)

    return tree_util.tree_map(add, params, updates)


def safe_increment(count: Any) -> Any:
    """``count + 1`` for an int32 step counter, saturating instead of overflowing.

    Args:
        count: an int32 scalar array.

    Returns:
        ``count + 1``, or ``count`` when it is already the largest int32.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> safe_increment(fnp.asarray(np.int32(1)))
        Array(2, dtype=int32)
        >>> safe_increment(fnp.asarray(np.int32(2**31 - 1)))
        Array(2147483647, dtype=int32)
    """
    count = fnp.asarray(count)
    # Adding the comparison (0 or 1) never overflows, unlike count + 1 followed by a select.
    return count + (count < _INT32_MAX).astype(count.dtype)


# ------------------------------------------------------------------ shared helpers
# Private: used by the transformation modules, not part of the public API.


def _zero_count() -> Any:
    """A fresh int32 step counter."""
    return fnp.zeros((), fnp.int32)


def _is_scalar(h: Any) -> bool:
    return isinstance(h, int | float) and not isinstance(h, bool | np.generic)


def _hp(h: Any, like: Any) -> Any:
    """A hyperparameter ready to combine with the array ``like``.

    Python scalars are weakly typed, so they pass through; arrays (injected or
    scheduled hyperparameters) are cast to ``like``'s dtype so a float64 step size
    never promotes float32 parameters or states.
    """
    if _is_scalar(h):
        return h
    h = fnp.asarray(h)
    return h if h.dtype == like.dtype else h.astype(like.dtype)


def _cast(x: Any, dtype: Any) -> Any:
    """``x`` as ``dtype`` (no-op when it already is, or when dtype is None)."""
    if dtype is None or x.dtype == dtype:
        return x
    return x.astype(dtype)


def _canonical_dtype(dtype: Any) -> Any:
    return None if dtype is None else np.dtype(dtype)


def _tree_zeros_like(tree: Any, dtype: Any = None) -> Any:
    return tree_util.tree_map(lambda x: fnp.zeros_like(x, dtype=dtype), tree)


def _tree_full_like(tree: Any, value: Any) -> Any:
    return tree_util.tree_map(lambda x: fnp.full_like(x, value), tree)


def _update_moment(updates: Any, moments: Any, decay: Any, order: int) -> Any:
    """Exponential moving average of ``g**order``: ``(1 - decay) g^order + decay m``."""

    def ema(g, m):
        d = _hp(decay, m)
        gk = g if order == 1 else g**order
        return _cast((1 - d) * gk + d * m, m.dtype)

    return tree_util.tree_map(ema, updates, moments)


def _bias_correction(moments: Any, decay: Any, count: Any) -> Any:
    """Divides each moment by ``1 - decay**count`` (Kingma & Ba 2015, Sec. 3)."""
    correction = 1 - decay**count
    return tree_util.tree_map(lambda m: m / _cast(correction, m.dtype), moments)


def _tree_select(pred: Any, on_true: Any, on_false: Any) -> Any:
    """Leafwise ``where(pred, on_true, on_false)`` with ``on_false``'s dtypes.

    Both trees are computed; this is how a data-dependent choice (skip a step,
    emit accumulated gradients) stays traceable under ``jit`` without ``lax.cond``.
    """

    def select(t, f):
        return _cast(fnp.where(pred, t, f), f.dtype)

    return tree_util.tree_map(select, on_true, on_false)


def _global_norm_sq(tree: Any) -> Any:
    """Sum of squares of all leaves (a scalar; float32 zero for an empty tree)."""
    leaves = tree_util.tree_leaves(tree)
    if not leaves:
        return fnp.zeros((), fnp.float32)
    total = fnp.sum(fnp.square(leaves[0]))
    for x in leaves[1:]:
        total = total + fnp.sum(fnp.square(x))
    return total


def _safe_sqrt(x: Any) -> Any:
    """``sqrt(x)`` whose gradient at ``x == 0`` is 0, not ``0 * inf = nan``."""
    positive = x > 0
    return fnp.where(positive, fnp.sqrt(fnp.where(positive, x, 1.0)), 0.0)


def _float_dtype_of(tree: Any) -> Any:
    """The widest floating dtype among the leaves of ``tree`` (float32 if none)."""
    best = None
    for x in tree_util.tree_leaves(tree):
        dt = getattr(x, "dtype", None)
        if dt is None or not np.issubdtype(dt, np.floating):
            continue
        if best is None or np.dtype(dt).itemsize > best.itemsize:
            best = np.dtype(dt)
    return best or np.dtype(np.float32)
