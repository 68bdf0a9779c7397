"""Wrappers: transformations that run another transformation in a modified way.

``masked`` applies an inner transformation to part of the tree; ``apply_if_finite``
skips steps with non-finite gradients; ``MultiSteps`` accumulates gradients over
several mini-steps; ``lookahead`` keeps slow and fast weights. Data-dependent choices
(skip or not, emit or not) are made with a tree-wide ``where`` over both outcomes, so
the wrappers trace under ``jit`` without ``lax.cond``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

import fgrad.numpy as fnp
from fgrad import tree as tree_util
from fgrad.optim import base
from fgrad.optim.base import (
    GradientTransformation,
    _canonical_dtype,
    _cast,
    _tree_select,
    _tree_zeros_like,
    _zero_count,
    safe_increment,
)

__all__ = [
    "ApplyIfFiniteState",
    "LookaheadParams",
    "LookaheadState",
    "MaskedNode",
    "MaskedState",
    "MultiSteps",
    "MultiStepsState",
    "apply_if_finite",
    "lookahead",
    "masked",
    "skip_large_updates",
    "skip_not_finite",
]


# ------------------------------------------------------------------ masked


class MaskedNode(NamedTuple):
    """Stands in for a masked-out subtree: an empty node, so tree maps skip it."""


class MaskedState(NamedTuple):
    """State of ``masked``: the inner transformation's state."""

    inner_state: Any


def _mask_leaves(mask_tree: Any, tree: Any, what: str) -> tuple[list, list, Any]:
    """Pairs each mask leaf (as a bool) with the subtree of ``tree`` it governs."""
    mask_leaves, mask_def = tree_util.tree_flatten(mask_tree)
    try:
        subtrees = mask_def.flatten_up_to(tree)
    except ValueError as e:
        # fgrad.tree reports "structures differ at <path>: expected <mask>, got <tree>
        # (missing keys [...], extra keys [...])"; say which side is which.
        detail = (
            str(e)
            .replace("expected ", "the mask has ")
            .replace("got ", f"the {what} have ")
            .replace("missing keys", f"keys missing from the {what}")
            .replace("extra keys", "keys missing from the mask")
        )
        raise ValueError(
            f"masked: the mask does not match the {what}: {detail}. The mask must have the "
            f"{what}' structure, or a prefix of it, with a bool at each leaf."
        ) from None
    flags = []
    for path, m in tree_util.tree_leaves_with_path(mask_tree):
        try:
            flags.append(bool(m))
        except (TypeError, ValueError) as e:
            where = tree_util.keystr(path) or "the root"
            raise TypeError(
                f"masked: the mask leaf at {where} must be a Python bool, got {m!r} ({e})"
            ) from None
    return flags, subtrees, mask_def


def _apply_mask(mask_tree: Any, tree: Any, what: str) -> Any:
    """``tree`` with every subtree whose mask is False replaced by ``MaskedNode()``."""
    flags, subtrees, mask_def = _mask_leaves(mask_tree, tree, what)
    return mask_def.unflatten(
        [s if f else MaskedNode() for f, s in zip(flags, subtrees, strict=True)]
    )


def masked(inner: GradientTransformation, mask: Any) -> GradientTransformation:
    """Applies ``inner`` only to the leaves where ``mask`` is True; others pass through.

    The masked-out leaves are replaced by ``MaskedNode()`` (an empty node) before
    ``inner`` sees the tree, so ``inner``'s state only holds arrays for the selected
    leaves. A mask whose structure does not match is an error that names the
    first differing key path.

    Args:
        inner: the transformation to apply to the selected leaves.
        mask: a pytree of Python bools with the params' structure, or a prefix of
            it (one bool for a whole subtree), or a function ``params -> mask``.

    Returns:
        A ``GradientTransformation`` with state ``MaskedState(inner_state)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.masked(optim.scale(10.0), {"w": True, "b": False})
        >>> g = {"w": fnp.asarray([1.0]), "b": fnp.asarray([1.0])}
        >>> u, _ = opt.update(g, opt.init(g))
        >>> u["w"].tolist(), u["b"].tolist()
        ([10.0], [1.0])
    """

    def mask_for(tree):
        return mask(tree) if callable(mask) else mask

    def init_fn(params):
        return MaskedState(inner_state=inner.init(_apply_mask(mask_for(params), params, "params")))

    def update_fn(updates, state, params=None):
        mask_tree = mask_for(updates)
        flags, old, mask_def = _mask_leaves(mask_tree, updates, "updates")
        masked_updates = mask_def.unflatten(
            [s if f else MaskedNode() for f, s in zip(flags, old, strict=True)]
        )
        masked_params = None if params is None else _apply_mask(mask_tree, params, "params")
        new_updates, new_inner = inner.update(masked_updates, state.inner_state, masked_params)
        new = mask_def.flatten_up_to(new_updates)
        merged = [n if f else o for f, n, o in zip(flags, new, old, strict=True)]
        return mask_def.unflatten(merged), MaskedState(inner_state=new_inner)

    return GradientTransformation(init_fn, update_fn)


# ------------------------------------------------------------------ apply_if_finite


class ApplyIfFiniteState(NamedTuple):
    """State of ``apply_if_finite``.

    Attributes:
        notfinite_count: consecutive non-finite steps so far (int32).
        last_finite: whether the last update was finite (bool).
        total_notfinite: all non-finite (skipped or not) steps so far (int32).
        inner_state: the inner transformation's state.
    """

    notfinite_count: Any
    last_finite: Any
    total_notfinite: Any
    inner_state: Any


def _all_finite(tree: Any) -> Any:
    """A bool scalar: every element of every leaf is finite."""
    result = fnp.asarray(True)
    for x in tree_util.tree_leaves(tree):
        result = fnp.logical_and(result, fnp.all(fnp.isfinite(x)))
    return result


def apply_if_finite(
    inner: GradientTransformation, max_consecutive_errors: int
) -> GradientTransformation:
    """Skips steps whose updates contain NaN or inf, and counts them.

    A skipped step returns zero updates and leaves ``inner``'s state unchanged.
    After more than ``max_consecutive_errors`` bad steps in a row the update is
    applied anyway (so a diverged run shows NaNs instead of silently stalling).
    ``state.total_notfinite`` counts every non-finite step.

    Args:
        inner: the transformation to protect.
        max_consecutive_errors: how many bad steps in a row to skip.

    Returns:
        A ``GradientTransformation`` with state ``ApplyIfFiniteState``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.apply_if_finite(optim.sgd(0.1), max_consecutive_errors=3)
        >>> state = opt.init(fnp.zeros(2))
        >>> u, state = opt.update(fnp.asarray([np.nan, 1.0]), state)
        >>> u.tolist(), int(state.total_notfinite), bool(state.last_finite)
        ([0.0, 0.0], 1, False)
    """

    def init_fn(params):
        return ApplyIfFiniteState(
            notfinite_count=_zero_count(),
            last_finite=fnp.asarray(True),
            total_notfinite=_zero_count(),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None):
        finite = _all_finite(updates)
        notfinite_count = fnp.where(finite, 0, safe_increment(state.notfinite_count)).astype(
            fnp.int32
        )
        # Both outcomes are computed; NumPy's warnings about the non-finite inputs of
        # the discarded one would only be noise.
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            new_updates, new_inner = inner.update(updates, state.inner_state, params)
        apply = fnp.logical_or(finite, notfinite_count > max_consecutive_errors)
        zeros = tree_util.tree_map(fnp.zeros_like, new_updates)
        out_updates = _tree_select(apply, new_updates, zeros)
        inner_state = _tree_select(apply, new_inner, state.inner_state)
        total = fnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))
        return out_updates, ApplyIfFiniteState(
            notfinite_count=notfinite_count,
            last_finite=finite,
            total_notfinite=total.astype(fnp.int32),
            inner_state=inner_state,
        )

    return GradientTransformation(init_fn, update_fn)


# ------------------------------------------------------------------ MultiSteps


def skip_not_finite(updates: Any, gradient_step: Any, params: Any) -> tuple[Any, dict]:
    """A ``MultiSteps`` skip test: skip when any update is NaN or inf.

    Args:
        updates: the incoming gradients.
        gradient_step: unused.
        params: unused.

    Returns:
        ``(should_skip, {"should_skip": ..., "num_not_finite": ...})``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> skip, info = skip_not_finite(fnp.asarray([np.inf, 1.0]), None, None)
        >>> bool(skip), int(info["num_not_finite"])
        (True, 1)
    """
    del gradient_step, params
    count = fnp.zeros((), fnp.int32)
    for x in tree_util.tree_leaves(updates):
        count = count + fnp.sum(fnp.logical_not(fnp.isfinite(x))).astype(fnp.int32)
    should_skip = count > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": count}


def skip_large_updates(
    updates: Any, gradient_step: Any, params: Any, max_squared_norm: float
) -> tuple[Any, dict]:
    """A ``MultiSteps`` skip test: skip when ``||updates||^2 >= max_squared_norm``.

    Bind ``max_squared_norm`` with ``functools.partial``. NaN norms are skipped.

    Args:
        updates: the incoming gradients.
        gradient_step: unused.
        params: unused.
        max_squared_norm: the threshold on the squared global norm.

    Returns:
        ``(should_skip, {"should_skip": ..., "norm_squared": ...})``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> skip, _ = skip_large_updates(fnp.asarray([3.0, 4.0]), None, None, 20.0)
        >>> bool(skip)
        True
    """
    del gradient_step, params
    norm_sq = base._global_norm_sq(updates)
    should_skip = fnp.logical_not(norm_sq < max_squared_norm)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_sq}


class MultiStepsState(NamedTuple):
    """State of ``MultiSteps``.

    Attributes:
        mini_step: position within the current accumulation (int32).
        gradient_step: number of inner-optimizer steps taken (int32).
        inner_opt_state: the inner optimizer's state.
        acc_grads: the accumulated gradients (mean or sum).
        skip_state: what ``should_skip_update_fn`` reported last.
    """

    mini_step: Any
    gradient_step: Any
    inner_opt_state: Any
    acc_grads: Any
    skip_state: Any = ()


class MultiSteps:
    """Gradient accumulation: run ``opt`` once every ``k`` mini-steps.

    Each call to ``update`` adds the gradients to an accumulator (their running
    mean by default); every ``k``-th call passes the accumulated gradients to
    ``opt`` and returns its updates; the calls in between return zeros and leave
    ``opt``'s state untouched. A mini-step for which ``should_skip_update_fn``
    returns True is ignored entirely.

    Args:
        opt: the inner optimizer.
        every_k_schedule: ``k``, or a function of the inner step count giving it.
        use_grad_mean: accumulate the mean (True) or the sum of the gradients.
        should_skip_update_fn: ``(updates, gradient_step, params) -> (bool, info)``,
            e.g. ``skip_not_finite``.
        accumulator_dtype: dtype of the accumulator (float32 as optax).

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.MultiSteps(optim.sgd(1.0), every_k_schedule=2)
        >>> state = opt.init(fnp.zeros(1))
        >>> u1, state = opt.update(fnp.asarray([1.0]), state)
        >>> u2, state = opt.update(fnp.asarray([3.0]), state)
        >>> u1.tolist(), u2.tolist(), bool(opt.has_updated(state))
        ([0.0], [-2.0], True)
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[Any], Any],
        use_grad_mean: bool = True,
        should_skip_update_fn: Callable | None = None,
        accumulator_dtype: Any = fnp.float32,
    ):
        self._opt = opt
        if callable(every_k_schedule):
            self._every_k_schedule = every_k_schedule
        else:
            self._every_k_schedule = lambda step: every_k_schedule
        self._use_grad_mean = use_grad_mean
        self._should_skip_update_fn = should_skip_update_fn
        self._accumulator_dtype = _canonical_dtype(accumulator_dtype)

    @property
    def inner_opt(self) -> GradientTransformation:
        """The wrapped optimizer."""
        return self._opt

    def _skip(self, updates, gradient_step, params):
        if self._should_skip_update_fn is None:
            return fnp.asarray(False), ()
        return self._should_skip_update_fn(updates, gradient_step, params)

    def init(self, params: Any) -> MultiStepsState:
        """Builds the initial ``MultiStepsState``.

        Args:
            params: the parameters.

        Returns:
            The state, with a zero accumulator and ``opt``'s initial state.
        """
        gradient_step = _zero_count()
        _, skip_state = self._skip(_tree_zeros_like(params), gradient_step, params)
        return MultiStepsState(
            mini_step=_zero_count(),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=_tree_zeros_like(params, self._accumulator_dtype),
            skip_state=skip_state,
        )

    def update(self, updates: Any, state: MultiStepsState, params: Any = None):
        """Accumulates ``updates``; every ``k``-th call also steps the inner optimizer.

        Args:
            updates: the gradients of this mini-step.
            state: the ``MultiStepsState``.
            params: the parameters (passed on to ``opt``).

        Returns:
            ``(updates, new_state)``; the updates are zero except on emitting steps.
        """
        k = self._every_k_schedule(state.gradient_step)
        should_skip, skip_state = self._skip(updates, state.gradient_step, params)

        def accumulate(g, acc):
            if self._use_grad_mean:
                n = _cast(fnp.asarray(state.mini_step + 1), g.dtype)
                return _cast(acc, g.dtype) + (g - _cast(acc, g.dtype)) / n
            return g + _cast(acc, g.dtype)

        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # see apply_if_finite
            acc_grads = tree_util.tree_map(accumulate, updates, state.acc_grads)
            inner_updates, inner_state = self._opt.update(acc_grads, state.inner_opt_state, params)
        emit = state.mini_step == k - 1
        stepped = MultiStepsState(
            mini_step=(safe_increment(state.mini_step) % k).astype(fnp.int32),
            gradient_step=fnp.where(
                emit, safe_increment(state.gradient_step), state.gradient_step
            ).astype(fnp.int32),
            inner_opt_state=_tree_select(emit, inner_state, state.inner_opt_state),
            acc_grads=tree_util.tree_map(
                lambda a, old: fnp.where(emit, fnp.zeros_like(a), a).astype(old.dtype),
                acc_grads,
                state.acc_grads,
            ),
            skip_state=skip_state,
        )
        zeros = tree_util.tree_map(fnp.zeros_like, inner_updates)
        out_updates = _tree_select(emit, inner_updates, zeros)
        # A skipped mini-step leaves everything but skip_state as it was.
        kept = state._replace(skip_state=skip_state)
        new_state = _tree_select(should_skip, kept, stepped)
        out_updates = _tree_select(should_skip, zeros, out_updates)
        return out_updates, new_state

    def has_updated(self, state: MultiStepsState) -> Any:
        """Whether the last ``update`` call stepped the inner optimizer (a bool array).

        Args:
            state: the ``MultiStepsState``.

        Returns:
            ``mini_step == 0 and gradient_step > 0``.
        """
        return fnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """This accumulator as a plain ``GradientTransformation(init, update)``.

        Returns:
            ``GradientTransformation(self.init, self.update)``.
        """
        return GradientTransformation(self.init, self.update)


# ------------------------------------------------------------------ lookahead


class LookaheadState(NamedTuple):
    """State of ``lookahead``: the fast optimizer's state and the sync counter."""

    fast_state: Any
    steps_since_sync: Any


class LookaheadParams(NamedTuple):
    """The parameters ``lookahead`` works on: fast weights and slow weights."""

    fast: Any
    slow: Any

    @classmethod
    def init_synced(cls, params: Any) -> LookaheadParams:
        """Fast and slow weights both equal to ``params``.

        Args:
            params: the initial parameters.

        Returns:
            ``LookaheadParams(fast=params, slow=params)``.
        """
        return cls(fast=params, slow=params)


def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: float,
    reset_state: bool = False,
) -> GradientTransformation:
    """The Lookahead optimizer (Zhang et al. 2019): k fast steps, then one slow step.

    The fast weights take ``sync_period`` steps of ``fast_optimizer``; then the
    slow weights move ``slow <- slow + alpha (fast - slow)`` and the fast weights
    restart from the new slow weights. Params and updates are ``LookaheadParams``;
    evaluate the model at ``params.slow``.

    Args:
        fast_optimizer: the inner optimizer for the fast weights.
        sync_period: ``k``, the number of fast steps per slow step (>= 1).
        slow_step_size: ``alpha`` in [0, 1].
        reset_state: reset the fast optimizer's state at every sync.

    Returns:
        A ``GradientTransformation`` with state ``LookaheadState``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.lookahead(optim.sgd(1.0), sync_period=2, slow_step_size=0.5)
        >>> params = optim.LookaheadParams.init_synced(fnp.asarray([0.0]))
        >>> state = opt.init(params)
        >>> for _ in range(2):  # gradients with respect to the fast weights
        ...     u, state = opt.update(fnp.asarray([-1.0]), state, params)
        ...     params = optim.apply_updates(params, u)
        >>> params.fast.tolist(), params.slow.tolist()
        ([1.0], [1.0])
    """
    if sync_period < 1:
        raise ValueError(f"lookahead: sync_period must be >= 1, got {sync_period}")

    def init_fn(params):
        fast = params.fast if isinstance(params, LookaheadParams) else params
        return LookaheadState(fast_state=fast_optimizer.init(fast), steps_since_sync=_zero_count())

    def update_fn(updates, state, params=None):
        if not isinstance(params, LookaheadParams):
            raise ValueError(
                "lookahead: `params` must be a LookaheadParams(fast, slow); build it with "
                "LookaheadParams.init_synced(params)"
            )
        fast_updates, fast_state = fast_optimizer.update(
            updates.fast if isinstance(updates, LookaheadParams) else updates,
            state.fast_state,
            params.fast,
        )
        sync = state.steps_since_sync == sync_period - 1
        # diff = what fast - slow would be after this fast step.
        diff = tree_util.tree_map(lambda f, u, s: f + u - s, params.fast, fast_updates, params.slow)
        slow_updates = tree_util.tree_map(
            lambda d: fnp.where(sync, slow_step_size * d, fnp.zeros_like(d)), diff
        )
        new_fast_updates = tree_util.tree_map(
            lambda u, d: fnp.where(sync, u - (1 - slow_step_size) * d, u), fast_updates, diff
        )
        if reset_state:
            fast_state = _tree_select(sync, fast_optimizer.init(params.fast), fast_state)
        steps = (state.steps_since_sync + 1) % sync_period
        return (
            LookaheadParams(fast=new_fast_updates, slow=slow_updates),
            LookaheadState(fast_state=fast_state, steps_since_sync=steps.astype(fnp.int32)),
        )

    return GradientTransformation(init_fn, update_fn)
