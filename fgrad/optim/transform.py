"""Building blocks: gradient transformations that rescale, accumulate or clip updates.

Each block is a factory returning a ``GradientTransformation`` whose state is a
NamedTuple (or ``EmptyState``), with optax's names, defaults and state layouts. In
the formulas, ``g`` is the incoming update (usually the gradient), ``t`` the step
number counted from 1, and every operation is elementwise per leaf unless it says
"global". A learning-rate block (``scale_by_learning_rate``) is chained after these
to turn them into descent steps; see ``alias.py`` for the named optimizers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import fgrad.numpy as fnp
from fgrad import lax
from fgrad import tree as tree_util
from fgrad.optim import base
from fgrad.optim.base import (
    EmptyState,
    GradientTransformation,
    _bias_correction,
    _canonical_dtype,
    _cast,
    _global_norm_sq,
    _hp,
    _safe_sqrt,
    _tree_full_like,
    _tree_zeros_like,
    _update_moment,
    _zero_count,
    safe_increment,
)
from fgrad.optim.wrappers import masked

__all__ = [
    "AddDecayedWeightsState",
    "ApplyEvery",
    "ClipByGlobalNormState",
    "ClipState",
    "L1PenaltySchedule",
    "ScaleByAdaDeltaState",
    "ScaleByAdamState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "ScaleByTrustRatioState",
    "ScaleState",
    "TraceState",
    "WeightDecaySchedule",
    "add_decayed_weights",
    "add_l1_penalty",
    "apply_every",
    "clip",
    "clip_by_global_norm",
    "global_norm",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_nadam",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_stddev",
    "scale_by_trust_ratio",
    "trace",
]

# Stateless blocks share EmptyState; these names match optax's.
ScaleState = EmptyState
ClipState = EmptyState
ClipByGlobalNormState = EmptyState
AddDecayedWeightsState = EmptyState
ScaleByTrustRatioState = EmptyState


# ------------------------------------------------------------------ scaling


def scale(step_size: Any) -> GradientTransformation:
    """Multiplies every update by a constant: ``u = step_size * g``.

    Args:
        step_size: a Python float or a scalar array.

    Returns:
        A stateless ``GradientTransformation``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = scale(-0.5)
        >>> opt.update(fnp.asarray([2.0, 4.0]), opt.init(None))[0].tolist()
        [-1.0, -2.0]
    """

    def update_fn(updates, state, params=None):
        del params
        return tree_util.tree_map(lambda g: _hp(step_size, g) * g, updates), state

    return GradientTransformation(base.init_empty_state, update_fn)


class ScaleByScheduleState(NamedTuple):
    """State of ``scale_by_schedule``: the number of steps taken (int32)."""

    count: Any


def scale_by_schedule(step_size_fn: base.Schedule) -> GradientTransformation:
    """Multiplies the updates by a schedule of the step count: ``u = s(count) * g``.

    The step size is computed from the int32 ``count`` in the state with fgrad ops,
    so it traces under ``jit``; it is cast to each update's dtype. The first update
    uses ``s(0)``.

    Args:
        step_size_fn: a schedule, ``count -> scalar`` (see ``fgrad.optim.schedules``).

    Returns:
        A ``GradientTransformation`` with state ``ScaleByScheduleState(count)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = scale_by_schedule(lambda count: 1.0 / (count + 1))
        >>> state = opt.init(None)
        >>> for _ in range(3):
        ...     u, state = opt.update(fnp.asarray([6.0]), state)
        >>> u.tolist(), int(state.count)
        ([2.0], 3)
    """

    def init_fn(params):
        del params
        return ScaleByScheduleState(count=_zero_count())

    def update_fn(updates, state, params=None):
        del params
        step_size = step_size_fn(state.count)
        updates = tree_util.tree_map(lambda g: _hp(step_size, g) * g, updates)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(
    learning_rate: base.ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> GradientTransformation:
    """Scales by a learning rate (a float or a schedule), negated for descent.

    ``u = -lr * g`` (or ``lr * g`` with ``flip_sign=False``). A callable
    ``learning_rate`` is a schedule of the step count (``scale_by_schedule``);
    anything else is a constant (``scale``); ``None`` gives ``identity()``.

    Args:
        learning_rate: a float, a scalar array, a schedule, or None.
        flip_sign: negate, so that ``apply_updates`` descends the gradient.

    Returns:
        A ``GradientTransformation``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = scale_by_learning_rate(0.1)
        >>> opt.update(fnp.asarray([1.0, -2.0]), opt.init(None))[0].tolist()
        [-0.10000000149011612, 0.20000000298023224]
    """
    if learning_rate is None:
        return base.identity()
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


# ------------------------------------------------------------------ momentum


class TraceState(NamedTuple):
    """State of ``trace``: the momentum buffer, shaped like the params."""

    trace: Any


def trace(
    decay: Any, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Momentum (heavy ball, Polyak 1964) or Nesterov momentum, in optax's form.

    ``v <- g + decay * v``; the update is ``v``, or ``g + decay * v`` (the new ``v``)
    with ``nesterov=True`` (Sutskever et al. 2013). Chained with a learning rate
    ``-eta`` this is the textbook ``w <- w - eta * v``; the course's form
    ``v' <- mu v' - eta g, w <- w + v'`` is the same trajectory with ``v' = -eta v``.

    Args:
        decay: the momentum coefficient ``mu``.
        nesterov: use Nesterov's look-ahead update.
        accumulator_dtype: dtype of the buffer (default: each param's dtype).

    Returns:
        A ``GradientTransformation`` with state ``TraceState(trace)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = trace(decay=0.5)
        >>> state = opt.init(fnp.zeros(1))
        >>> u, state = opt.update(fnp.asarray([1.0]), state)
        >>> u, state = opt.update(fnp.asarray([1.0]), state)
        >>> u.tolist()
        [1.5]
    """
    accumulator_dtype = _canonical_dtype(accumulator_dtype)

    def init_fn(params):
        return TraceState(trace=_tree_zeros_like(params, accumulator_dtype))

    def update_fn(updates, state, params=None):
        del params

        def step(g, t):
            return g + _hp(decay, g) * _cast(t, g.dtype)

        new_trace = tree_util.tree_map(step, updates, state.trace)
        updates = tree_util.tree_map(step, updates, new_trace) if nesterov else new_trace
        new_trace = tree_util.tree_map(
            lambda v, old: _cast(v, accumulator_dtype or old.dtype), new_trace, state.trace
        )
        return updates, TraceState(trace=new_trace)

    return GradientTransformation(init_fn, update_fn)


# ------------------------------------------------------------------ adaptive methods


class ScaleByAdamState(NamedTuple):
    """State of ``scale_by_adam`` / ``scale_by_adamax``: step count and two moments."""

    count: Any
    mu: Any
    nu: Any


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam's rescaling (Kingma & Ba 2015), with optional Nesterov momentum (Dozat 2016).

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, bias-corrected
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``, and
    ``u = m_hat / (sqrt(v_hat + eps_root) + eps)``. With ``nesterov=True`` (NAdam),
    ``m_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)``.

    Args:
        b1: decay of the first moment.
        b2: decay of the second moment.
        eps: added to the denominator outside the square root.
        eps_root: added inside the square root (useful when differentiating
            through the optimizer).
        mu_dtype: dtype of the first moment (default: each param's dtype).
        nesterov: use the NAdam first-moment estimate.

    Returns:
        A ``GradientTransformation`` with state ``ScaleByAdamState(count, mu, nu)``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> opt = scale_by_adam()
        >>> u, state = opt.update(fnp.asarray([0.1, -2.0]), opt.init(fnp.zeros(2)))
        >>> np.round(np.asarray(u, np.float64), 4).tolist()  # the first step is about sign(g)
        [1.0, -1.0]
    """
    mu_dtype = _canonical_dtype(mu_dtype)

    def init_fn(params):
        return ScaleByAdamState(
            count=_zero_count(),
            mu=_tree_zeros_like(params, mu_dtype),
            nu=_tree_zeros_like(params),
        )

    def update_fn(updates, state, params=None):
        del params
        mu = _update_moment(updates, state.mu, b1, 1)
        nu = _update_moment(updates, state.nu, b2, 2)
        count = safe_increment(state.count)
        if nesterov:
            # Dozat 2016: look one step ahead with the momentum of the next step.
            mu_next = _bias_correction(mu, b1, safe_increment(count))
            g_hat = _bias_correction(updates, b1, count)
            mu_hat = tree_util.tree_map(
                lambda m, g: _hp(b1, g) * _cast(m, g.dtype) + (1 - _hp(b1, g)) * g,
                mu_next,
                g_hat,
            )
        else:
            mu_hat = _bias_correction(mu, b1, count)
        nu_hat = _bias_correction(nu, b2, count)

        def direction(m, v):
            return m / (fnp.sqrt(v + _hp(eps_root, v)) + _hp(eps, v))

        updates = tree_util.tree_map(direction, mu_hat, nu_hat)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def scale_by_nadam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NAdam's rescaling (Dozat 2016): ``scale_by_adam(..., nesterov=True)``.

    optax spells this ``scale_by_adam(nesterov=True)``; both work here.

    Args:
        b1: decay of the first moment.
        b2: decay of the second moment.
        eps: added to the denominator outside the square root.
        eps_root: added inside the square root.
        mu_dtype: dtype of the first moment.

    Returns:
        A ``GradientTransformation`` with state ``ScaleByAdamState(count, mu, nu)``.

    Example:
        >>> opt = scale_by_nadam()
        >>> type(opt.init({"w": 0.0})).__name__
        'ScaleByAdamState'
    """
    return scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=True)


def scale_by_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> GradientTransformation:
    """AdaMax's rescaling (Kingma & Ba 2015, Sec. 7): Adam with an infinity norm.

    ``m <- b1 m + (1 - b1) g``, ``v <- max(|g| + eps, b2 v)``,
    ``u = m / ((1 - b1^t) v)``.

    Args:
        b1: decay of the first moment.
        b2: decay of the infinity norm.
        eps: added to ``|g|`` so the denominator is never zero.

    Returns:
        A ``GradientTransformation`` with state ``ScaleByAdamState(count, mu, nu)``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> opt = scale_by_adamax()
        >>> u, _ = opt.update(fnp.asarray([3.0]), opt.init(fnp.zeros(1)))
        >>> np.round(np.asarray(u, np.float64), 6).tolist()
        [1.0]
    """

    def init_fn(params):
        return ScaleByAdamState(
            count=_zero_count(), mu=_tree_zeros_like(params), nu=_tree_zeros_like(params)
        )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        mu = _update_moment(updates, state.mu, b1, 1)
        nu = tree_util.tree_map(
            lambda g, v: _cast(fnp.maximum(fnp.abs(g) + _hp(eps, g), _hp(b2, v) * v), v.dtype),
            updates,
            state.nu,
        )
        mu_hat = _bias_correction(mu, b1, count)
        updates = tree_util.tree_map(lambda m, v: m / v, mu_hat, nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByRssState(NamedTuple):
    """State of ``scale_by_rss``: the running sum of squared gradients."""

    sum_of_squares: Any


def scale_by_rss(initial_accumulator_value: Any = 0.1, eps: Any = 1e-7) -> GradientTransformation:
    """Adagrad's rescaling (Duchi et al. 2011): divide by the root of summed squares.

    ``r <- r + g^2``, ``u = g / sqrt(r + eps)`` where ``r > 0`` (else 0); ``r``
    starts at ``initial_accumulator_value``.

    Args:
        initial_accumulator_value: the starting value of ``r``.
        eps: added inside the square root.

    Returns:
        A ``GradientTransformation`` with state ``ScaleByRssState(sum_of_squares)``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> opt = scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
        >>> u, state = opt.update(fnp.asarray([3.0, 0.0]), opt.init(fnp.zeros(2)))
        >>> u.tolist(), state.sum_of_squares.tolist()
        ([1.0, 0.0], [9.0, 0.0])
    """

    def init_fn(params):
        return ScaleByRssState(sum_of_squares=_tree_full_like(params, initial_accumulator_value))

    def update_fn(updates, state, params=None):
        del params
        sum_of_squares = tree_util.tree_map(
            lambda g, r: _cast(g * g + r, r.dtype), updates, state.sum_of_squares
        )

        def rescale(g, r):
            positive = r > 0
            # The inner where keeps rsqrt away from r + eps <= 0 (no inf/nan to mask).
            safe = fnp.where(positive, r + _hp(eps, r), 1.0)
            return fnp.where(positive, lax.rsqrt(safe), 0.0) * g

        updates = tree_util.tree_map(rescale, updates, sum_of_squares)
        return updates, ScaleByRssState(sum_of_squares=sum_of_squares)

    return GradientTransformation(init_fn, update_fn)


class ScaleByRmsState(NamedTuple):
    """State of ``scale_by_rms``: the moving average of squared gradients."""

    nu: Any


class ScaleByRmsWithCountState(NamedTuple):
    """State of ``scale_by_rms(bias_correction=True)``: step count and ``nu``."""

    count: Any
    nu: Any


def _rms_scaling(nu_hat: Any, eps: Any, eps_in_sqrt: bool, mean: Any = None) -> Any:
    """``1/sqrt(v + eps)`` or ``1/(sqrt(v) + eps)``, where v is ``nu`` minus ``mean^2``."""

    def scaling(v, m=None):
        if m is not None:
            v = v - m * m
        if eps_in_sqrt:
            return lax.rsqrt(v + _hp(eps, v))
        return 1 / (fnp.sqrt(v) + _hp(eps, v))

    if mean is None:
        return tree_util.tree_map(scaling, nu_hat)
    return tree_util.tree_map(scaling, nu_hat, mean)


def scale_by_rms(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSProp's rescaling (Tieleman & Hinton 2012): divide by a running RMS.

    ``v <- decay v + (1 - decay) g^2`` (``v`` starts at ``initial_scale``) and
    ``u = g / sqrt(v + eps)``; with ``eps_in_sqrt=False``, ``u = g / (sqrt(v) + eps)``.
    With ``bias_correction``, ``v`` is divided by ``1 - decay^t`` first.

    Args:
        decay: the decay rate ``rho`` of the moving average.
        eps: the stabiliser (inside the root by default, as optax).
        initial_scale: the starting value of ``v``.
        eps_in_sqrt: put ``eps`` inside the square root.
        bias_correction: correct ``v`` for its zero start (adds a step count).

    Returns:
        A ``GradientTransformation`` with state ``ScaleByRmsState(nu)``, or
        ``ScaleByRmsWithCountState(count, nu)`` with bias correction.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> opt = scale_by_rms(decay=0.75, eps=0.0)
        >>> u, state = opt.update(fnp.asarray([2.0]), opt.init(fnp.zeros(1)))
        >>> state.nu.tolist(), u.tolist()  # v = 0.25 * 4, u = 2 / sqrt(1)
        ([1.0], [2.0])
    """

    def init_fn(params):
        nu = _tree_full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRmsWithCountState(count=_zero_count(), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update_fn(updates, state, params=None):
        del params
        nu = _update_moment(updates, state.nu, decay, 2)
        if bias_correction:
            count = safe_increment(state.count)
            nu_hat = _bias_correction(nu, decay, count)
        else:
            nu_hat = nu
        scaling = _rms_scaling(nu_hat, eps, eps_in_sqrt)
        updates = tree_util.tree_map(lambda s, g: s * g, scaling, updates)
        if bias_correction:
            return updates, ScaleByRmsWithCountState(count=count, nu=nu)
        return updates, ScaleByRmsState(nu=nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByRStdDevState(NamedTuple):
    """State of ``scale_by_stddev``: moving averages of ``g`` and ``g^2``."""

    mu: Any
    nu: Any


class ScaleByRStdDevWithCountState(NamedTuple):
    """State of ``scale_by_stddev(bias_correction=True)``."""

    count: Any
    mu: Any
    nu: Any


def scale_by_stddev(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """Centred RMSProp's rescaling (Graves 2013): divide by a running std. deviation.

    ``m <- decay m + (1 - decay) g``, ``v <- decay v + (1 - decay) g^2`` and
    ``u = g / sqrt(v - m^2 + eps)`` (or ``g / (sqrt(v - m^2) + eps)``).

    Args:
        decay: the decay rate of both moving averages.
        eps: the stabiliser.
        initial_scale: the starting value of ``v``.
        eps_in_sqrt: put ``eps`` inside the square root.
        bias_correction: correct ``m`` and ``v`` for their zero start.

    Returns:
        A ``GradientTransformation`` with state ``ScaleByRStdDevState(mu, nu)``
        (``ScaleByRStdDevWithCountState`` with bias correction).

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = scale_by_stddev(decay=0.5, eps=0.0)
        >>> u, state = opt.update(fnp.asarray([2.0]), opt.init(fnp.zeros(1)))
        >>> u.tolist()  # m = 1, v = 2, u = 2 / sqrt(2 - 1)
        [2.0]
    """

    def init_fn(params):
        mu = _tree_zeros_like(params)
        nu = _tree_full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=_zero_count(), mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        mu = _update_moment(updates, state.mu, decay, 1)
        nu = _update_moment(updates, state.nu, decay, 2)
        if bias_correction:
            count = safe_increment(state.count)
            mu_hat = _bias_correction(mu, decay, count)
            nu_hat = _bias_correction(nu, decay, count)
        else:
            mu_hat, nu_hat = mu, nu
        scaling = _rms_scaling(nu_hat, eps, eps_in_sqrt, mean=mu_hat)
        updates = tree_util.tree_map(lambda s, g: s * g, scaling, updates)
        if bias_correction:
            return updates, ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        return updates, ScaleByRStdDevState(mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByAdaDeltaState(NamedTuple):
    """State of ``scale_by_adadelta``: running averages of ``g^2`` and of ``u^2``."""

    e_g: Any
    e_x: Any


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
    """AdaDelta's rescaling (Zeiler 2012): a unit-consistent step without a rate.

    ``E[g^2] <- rho E[g^2] + (1 - rho) g^2``,
    ``u = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g`` (with the previous
    ``E[dx^2]``), then ``E[dx^2] <- rho E[dx^2] + (1 - rho) u^2``.

    Args:
        rho: the decay rate of both averages.
        eps: the stabiliser inside both square roots.

    Returns:
        A ``GradientTransformation`` with state ``ScaleByAdaDeltaState(e_g, e_x)``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> opt = scale_by_adadelta(rho=0.0, eps=1e-6)
        >>> u, _ = opt.update(fnp.asarray([1.0]), opt.init(fnp.zeros(1)))
        >>> np.round(np.asarray(u, np.float64), 6).tolist()  # sqrt(1e-6) / sqrt(1 + 1e-6) * 1
        [0.001]
    """

    def init_fn(params):
        return ScaleByAdaDeltaState(e_g=_tree_zeros_like(params), e_x=_tree_zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        e_g = _update_moment(updates, state.e_g, rho, 2)

        def step(g, eg, ex):
            e = _hp(eps, g)
            return fnp.sqrt(ex + e) / fnp.sqrt(eg + e) * g

        updates = tree_util.tree_map(step, updates, e_g, state.e_x)
        e_x = _update_moment(updates, state.e_x, rho, 2)
        return updates, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init_fn, update_fn)


def _safe_norm(x: Any, min_norm: Any) -> Any:
    """``max(||x||, min_norm)`` whose gradient is finite where ``||x|| <= min_norm``."""
    norm = fnp.sqrt(fnp.sum(fnp.square(x)))
    small = norm <= min_norm
    # Replace x where the norm is clamped so the sqrt below never sees 0.
    x_safe = fnp.where(small, fnp.ones_like(x), x)
    return fnp.where(small, min_norm, fnp.sqrt(fnp.sum(fnp.square(x_safe))))


def scale_by_trust_ratio(
    min_norm: Any = 0.0, trust_coefficient: Any = 1.0, eps: Any = 0.0
) -> GradientTransformation:
    """LARS/LAMB's layer-wise trust ratio (You et al. 2017; You et al. 2019).

    For each leaf: ``u = g * c ||p|| / (||g|| + eps)``, with both norms clamped
    below at ``min_norm``; the ratio is 1 where either norm is zero.

    Args:
        min_norm: the smallest norm used.
        trust_coefficient: the factor ``c``.
        eps: added to the update norm.

    Returns:
        A stateless ``GradientTransformation`` (needs ``params``).

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = scale_by_trust_ratio()
        >>> p, g = fnp.asarray([3.0, 4.0]), fnp.asarray([0.0, 0.5])
        >>> opt.update(g, opt.init(p), p)[0].tolist()  # ||p|| / ||g|| = 10
        [0.0, 5.0]
    """

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(f"scale_by_trust_ratio: {base.NO_PARAMS_MSG}")

        def rescale(u, p):
            p_norm = _safe_norm(p, min_norm)
            u_norm = _safe_norm(u, min_norm)
            either_zero = fnp.logical_or(p_norm == 0.0, u_norm == 0.0)
            # The denominator is replaced where the ratio is unused: no 0/0 even there.
            denominator = fnp.where(either_zero, 1.0, u_norm + eps)
            safe_ratio = fnp.where(either_zero, 1.0, trust_coefficient * p_norm / denominator)
            return u * _cast(safe_ratio, u.dtype)

        return tree_util.tree_map(rescale, updates, params), state

    return GradientTransformation(base.init_empty_state, update_fn)


# ------------------------------------------------------------------ penalties


class WeightDecaySchedule(NamedTuple):
    """State of ``add_decayed_weights`` with a scheduled rate: the step count."""

    count: Any


def _add_param_term(name, coeff, term, mask, state_cls) -> GradientTransformation:
    """``u = g + coeff * term(p)``; ``coeff`` may be a schedule (then counted)."""

    def init_fn(params):
        del params
        return state_cls(count=_zero_count()) if callable(coeff) else EmptyState()

    def update_fn(updates, state, params=None):
        if callable(coeff):
            new_state = state_cls(count=safe_increment(state.count))
            c = coeff(state.count)
        else:
            new_state = state
            c = coeff
            if base._is_scalar(c) and c == 0:
                return updates, new_state  # nothing to add: params not needed
        if params is None:
            raise ValueError(f"{name}: {base.NO_PARAMS_MSG}")
        updates = tree_util.tree_map(lambda g, p: g + _hp(c, g) * term(p), updates, params)
        return updates, new_state

    tx = GradientTransformation(init_fn, update_fn)
    return tx if mask is None else masked(tx, mask)


def add_decayed_weights(weight_decay: base.ScalarOrSchedule = 0.0, mask: Any = None):
    """Adds decoupled weight decay (Loshchilov & Hutter 2019): ``u = g + wd * p``.

    Placed *after* an adaptive rescaling (as in ``adamw``), the decay is not
    divided by the second moment: that is the "decoupled" part.

    Args:
        weight_decay: the rate ``wd``, a float or a schedule of the step count.
        mask: a pytree of bools with the params' structure (or a prefix of it),
            or a function ``params -> mask``; only leaves marked True decay (e.g.
            weights, not biases). See ``masked``.

    Returns:
        A ``GradientTransformation`` (``EmptyState``, ``WeightDecaySchedule(count)``
        for a schedule; wrapped in ``MaskedState`` with a mask).

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = add_decayed_weights(0.5, mask={"w": True, "b": False})
        >>> p = {"w": fnp.asarray([2.0]), "b": fnp.asarray([2.0])}
        >>> g = {"w": fnp.asarray([1.0]), "b": fnp.asarray([1.0])}
        >>> u, _ = opt.update(g, opt.init(p), p)
        >>> u["w"].tolist(), u["b"].tolist()
        ([2.0], [1.0])
    """
    return _add_param_term(
        "add_decayed_weights", weight_decay, lambda p: p, mask, WeightDecaySchedule
    )


class L1PenaltySchedule(NamedTuple):
    """State of ``add_l1_penalty`` with a scheduled coefficient: the step count."""

    count: Any


def add_l1_penalty(l1_coeff: base.ScalarOrSchedule = 0.0, mask: Any = None):
    """Adds the (sub)gradient of an L1 penalty ``l1 * sum |p|``: ``u = g + l1 * sign(p)``.

    optax has no L1 block; this is fgrad's addition, shaped like
    ``add_decayed_weights``. ``sign(0) = 0`` is the subgradient used at zero.
    Chained before a learning rate it is the course's L1 regularisation.

    Args:
        l1_coeff: the coefficient, a float or a schedule of the step count.
        mask: as in ``add_decayed_weights``.

    Returns:
        A ``GradientTransformation`` (``EmptyState``, ``L1PenaltySchedule(count)``
        for a schedule; wrapped in ``MaskedState`` with a mask).

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = add_l1_penalty(0.1)
        >>> p = fnp.asarray([-2.0, 0.0, 3.0])
        >>> u, _ = opt.update(fnp.zeros(3), opt.init(p), p)
        >>> u.tolist()
        [-0.10000000149011612, 0.0, 0.10000000149011612]
    """
    return _add_param_term("add_l1_penalty", l1_coeff, fnp.sign, mask, L1PenaltySchedule)


# ------------------------------------------------------------------ clipping


def clip(max_delta: Any) -> GradientTransformation:
    """Clips every update elementwise to ``[-max_delta, max_delta]``.

    Args:
        max_delta: the largest magnitude allowed.

    Returns:
        A stateless ``GradientTransformation``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = clip(1.0)
        >>> opt.update(fnp.asarray([-3.0, 0.5, 2.0]), opt.init(None))[0].tolist()
        [-1.0, 0.5, 1.0]
    """

    def update_fn(updates, state, params=None):
        del params

        def clip_leaf(g):
            d = _hp(max_delta, g)
            return fnp.minimum(fnp.maximum(g, -d), d)

        return tree_util.tree_map(clip_leaf, updates), state

    return GradientTransformation(base.init_empty_state, update_fn)


def global_norm(updates: Any) -> Any:
    """The L2 norm of all leaves of a pytree taken together.

    Args:
        updates: a pytree of arrays.

    Returns:
        A scalar array ``sqrt(sum_leaves sum(x^2))`` (its gradient is 0, not NaN,
        at an all-zero tree).

    Example:
        >>> import fgrad.numpy as fnp
        >>> global_norm({"a": fnp.asarray([3.0]), "b": fnp.asarray([4.0])})
        Array(5., dtype=float32)
    """
    return _safe_sqrt(_global_norm_sq(updates))


def clip_by_global_norm(max_norm: Any) -> GradientTransformation:
    """Rescales all updates together so their global norm is at most ``max_norm``.

    ``u = g * max_norm / ||g||`` when ``||g|| > max_norm`` (Pascanu et al. 2013),
    else ``u = g``. A zero gradient passes through without a ``0/0``: both the
    value and gradients taken through this transformation stay finite.

    Args:
        max_norm: the largest global norm allowed.

    Returns:
        A stateless ``GradientTransformation``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = clip_by_global_norm(1.0)
        >>> opt.update({"a": fnp.asarray([3.0]), "b": fnp.asarray([4.0])}, opt.init(None))[0]
        {'a': Array([0.6], dtype=float32), 'b': Array([0.8], dtype=float32)}
        >>> opt.update(fnp.zeros(2), opt.init(None))[0].tolist()
        [0.0, 0.0]
    """

    def update_fn(updates, state, params=None):
        del params
        norm = _safe_sqrt(_global_norm_sq(updates))
        too_big = norm > max_norm  # implies norm > 0, so the division below is safe
        denominator = fnp.where(too_big, norm, 1.0)
        factor = fnp.where(too_big, max_norm / denominator, 1.0)
        return tree_util.tree_map(lambda g: g * _cast(factor, g.dtype), updates), state

    return GradientTransformation(base.init_empty_state, update_fn)


# ------------------------------------------------------------------ accumulation


class ApplyEvery(NamedTuple):
    """State of ``apply_every``: position in the cycle and the gradient sum."""

    count: Any
    grad_acc: Any


def apply_every(k: int = 1) -> GradientTransformation:
    """Accumulates updates over ``k`` steps and emits their sum every ``k``-th step.

    Steps in between return zeros, so parameters change only every ``k`` steps
    (gradient accumulation for an effective batch ``k`` times larger; scale the
    learning rate by ``1/k`` for the mean). See ``MultiSteps`` for the variant that
    also holds the inner optimizer's state still in between.

    Args:
        k: the accumulation period.

    Returns:
        A ``GradientTransformation`` with state ``ApplyEvery(count, grad_acc)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> opt = apply_every(2)
        >>> state = opt.init(fnp.zeros(1))
        >>> u1, state = opt.update(fnp.asarray([1.0]), state)
        >>> u2, state = opt.update(fnp.asarray([2.0]), state)
        >>> u1.tolist(), u2.tolist()
        ([0.0], [3.0])
    """

    def init_fn(params):
        return ApplyEvery(count=_zero_count(), grad_acc=_tree_zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        c = state.count % k
        keep = c != 0  # a new cycle starts from zero
        grad_acc = tree_util.tree_map(
            lambda g, a: _cast(fnp.where(keep, a + g, g), a.dtype), updates, state.grad_acc
        )
        emit = c == k - 1
        updates = tree_util.tree_map(
            lambda g, a: _cast(fnp.where(emit, a, 0.0), g.dtype), updates, grad_acc
        )
        return updates, ApplyEvery(count=safe_increment(state.count) % k, grad_acc=grad_acc)

    return GradientTransformation(init_fn, update_fn)
