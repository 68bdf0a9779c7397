"""Schedules (step count -> value) and ``inject_hyperparams``.

A schedule is a function of the step count, an int32 array held in the optimizer
state, written with fgrad ops so it traces under ``jit``; plain Python ints work
too. Pass one wherever a learning rate (or weight decay) is expected. Step counts
start at 0: the first update uses ``schedule(0)``. Values are computed in float64
and cast to each parameter's dtype where they are used.

``inject_hyperparams`` moves an optimizer's numeric hyperparameters into its state,
where they can be read and changed between steps (``get_hyperparam`` /
``set_hyperparam``) without rebuilding or recompiling the optimizer.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

import fgrad.numpy as fnp
from fgrad.optim.base import (
    GradientTransformation,
    Schedule,
    _float_dtype_of,
    _zero_count,
    safe_increment,
)

__all__ = [
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "WrappedScheduleState",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "inject_hyperparams",
    "join_schedules",
    "linear_schedule",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]


def _count(count: Any) -> Any:
    """The step count as an fgrad array (Python ints become int32)."""
    return fnp.asarray(count)


# ------------------------------------------------------------------ schedules


def constant_schedule(value: Any) -> Schedule:
    """The same value at every step.

    Args:
        value: the value.

    Returns:
        A schedule ``count -> value``.

    Example:
        >>> constant_schedule(0.1)(1000)
        0.1
    """
    return lambda count: value


def polynomial_schedule(
    init_value: Any,
    end_value: Any,
    power: Any,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Polynomial decay from ``init_value`` to ``end_value`` over ``transition_steps``.

    With ``s = clip(count - transition_begin, 0, transition_steps)``:
    ``value = (init - end) * (1 - s / transition_steps)^power + end``. Constant at
    ``init_value`` before ``transition_begin`` and at ``end_value`` after the
    transition. A non-positive ``transition_steps`` gives ``init_value`` always.

    Args:
        init_value: the value before and at the start of the transition.
        end_value: the value after it.
        power: the exponent of the decay (1 is linear).
        transition_steps: the length of the transition.
        transition_begin: the step at which the transition starts.

    Returns:
        A schedule.

    Example:
        >>> sched = polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
        >>> [round(float(sched(n)), 4) for n in (0, 5, 10, 20)]
        [1.0, 0.25, 0.0, 0.0]
    """
    if transition_steps <= 0:
        return lambda count: init_value
    transition_begin = max(transition_begin, 0)

    def schedule(count):
        s = fnp.clip(_count(count) - transition_begin, 0, transition_steps)
        frac = 1 - s / transition_steps
        return (init_value - end_value) * frac**power + end_value

    return schedule


def linear_schedule(
    init_value: Any, end_value: Any, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """Linear change from ``init_value`` to ``end_value`` over ``transition_steps``.

    The course's "decreasing learning rate": ``eta_k = (1 - k/tau) eta_0 + (k/tau)
    eta_tau`` for ``k <= tau``, then constant ``eta_tau``
    (``linear_schedule(eta_0, eta_tau, tau)``). Also a linear warm-up when
    ``end_value > init_value``.

    Args:
        init_value: the value at the start.
        end_value: the value at and after ``transition_begin + transition_steps``.
        transition_steps: the length of the change.
        transition_begin: the step at which it starts.

    Returns:
        A schedule.

    Example:
        >>> sched = linear_schedule(1.0, 0.1, transition_steps=100)
        >>> [round(float(sched(n)), 4) for n in (0, 50, 100, 1000)]
        [1.0, 0.55, 0.1, 0.1]
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(
    init_value: Any, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """Multiplies the value by a factor at each boundary step.

    From step ``b`` on (``count >= b``), the value is multiplied by
    ``boundaries_and_scales[b]``; factors accumulate.

    Args:
        init_value: the value before the first boundary.
        boundaries_and_scales: ``{step: factor}``; factors must be non-negative.

    Returns:
        A schedule.

    Example:
        >>> sched = piecewise_constant_schedule(1.0, {10: 0.1, 20: 0.5})
        >>> [round(float(sched(n)), 4) for n in (0, 9, 10, 19, 20, 100)]
        [1.0, 1.0, 0.1, 0.1, 0.05, 0.05]
    """
    items = sorted((boundaries_and_scales or {}).items())
    if any(s < 0 for _, s in items):
        raise ValueError("piecewise_constant_schedule: scale factors must be non-negative")

    def schedule(count):
        count = _count(count)
        value = init_value
        for boundary, factor in items:
            value = fnp.where(count < boundary, value, value * factor)
        return value

    return schedule


def exponential_decay(
    init_value: Any,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Any = None,
) -> Schedule:
    """Exponential decay: ``init * decay_rate^((count - begin) / transition_steps)``.

    Constant at ``init_value`` until ``transition_begin``. With ``staircase``, the
    exponent is floored (the value drops every ``transition_steps``). With
    ``end_value``, the value is clamped there (a floor when decaying, a ceiling
    when ``decay_rate > 1``). A non-positive ``transition_steps`` or a zero
    ``decay_rate`` gives ``init_value`` always.

    Args:
        init_value: the starting value.
        transition_steps: steps per factor of ``decay_rate``.
        decay_rate: the factor per ``transition_steps``.
        transition_begin: the step at which the decay starts.
        staircase: decay in discrete steps.
        end_value: optional bound on the value.

    Returns:
        A schedule.

    Example:
        >>> sched = exponential_decay(1.0, transition_steps=10, decay_rate=0.5, staircase=True)
        >>> [float(sched(n)) for n in (0, 9, 10, 25)]
        [1.0, 1.0, 0.5, 0.25]
    """
    if transition_steps <= 0 or decay_rate == 0:
        return lambda count: init_value
    transition_begin = max(transition_begin, 0)
    clamp = None
    if end_value is not None:
        clamp = fnp.maximum if decay_rate < 1.0 else fnp.minimum

    def schedule(count):
        steps = _count(count) - transition_begin
        p = steps / transition_steps
        if staircase:
            p = fnp.floor(p)
        value = fnp.where(steps <= 0, init_value, init_value * fnp.power(decay_rate, p))
        if clamp is not None:
            value = clamp(value, end_value)
        return value

    return schedule


def cosine_decay_schedule(
    init_value: Any, decay_steps: int, alpha: Any = 0.0, exponent: Any = 1.0
) -> Schedule:
    """Cosine decay (Loshchilov & Hutter 2017, SGDR) from ``init_value`` over ``decay_steps``.

    With ``s = min(count, decay_steps)``: ``c = (1 + cos(pi s / decay_steps)) / 2``
    and ``value = init * ((1 - alpha) c^exponent + alpha)``; it ends at
    ``alpha * init``.

    Args:
        init_value: the starting value.
        decay_steps: the length of the decay (positive).
        alpha: the final value as a fraction of ``init_value``.
        exponent: the power applied to the cosine factor.

    Returns:
        A schedule.

    Example:
        >>> sched = cosine_decay_schedule(1.0, decay_steps=100, alpha=0.1)
        >>> [round(float(sched(n)), 4) for n in (0, 50, 100, 200)]
        [1.0, 0.55, 0.1, 0.1]
    """
    if not decay_steps > 0:
        raise ValueError(f"cosine_decay_schedule: decay_steps must be positive, got {decay_steps}")

    def schedule(count):
        s = fnp.minimum(_count(count), float(decay_steps))
        cosine = 0.5 * (1 + fnp.cos(math.pi * s / decay_steps))
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs schedules one after another; each restarts its count at its boundary.

    Step ``count`` uses ``schedules[i](count - boundaries[i-1])`` for the last
    boundary ``boundaries[i-1] <= count`` (``schedules[0](count)`` before the first).

    Args:
        schedules: ``n`` schedules.
        boundaries: ``n - 1`` increasing step numbers.

    Returns:
        A schedule.

    Example:
        >>> sched = join_schedules([constant_schedule(1.0), linear_schedule(1.0, 0.0, 10)], [5])
        >>> [round(float(sched(n)), 4) for n in (0, 4, 5, 10, 15)]
        [1.0, 1.0, 1.0, 0.5, 0.0]
    """
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"join_schedules: {len(schedules)} schedules need {len(schedules) - 1} "
            f"boundaries, got {len(boundaries)}"
        )

    def schedule(count):
        count = _count(count)
        value = schedules[0](count)
        for boundary, sched in zip(boundaries, schedules[1:], strict=True):
            value = fnp.where(count < boundary, value, sched(count - boundary))
        return value

    return schedule


def warmup_constant_schedule(init_value: Any, peak_value: Any, warmup_steps: int) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value``, then constant.

    Args:
        init_value: the value at step 0.
        peak_value: the value from ``warmup_steps`` on.
        warmup_steps: the length of the warm-up.

    Returns:
        A schedule.

    Example:
        >>> sched = warmup_constant_schedule(0.0, 1.0, warmup_steps=4)
        >>> [float(sched(n)) for n in (0, 2, 4, 10)]
        [0.0, 0.5, 1.0, 1.0]
    """
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_cosine_decay_schedule(
    init_value: Any,
    peak_value: Any,
    warmup_steps: int,
    decay_steps: int,
    end_value: Any = 0.0,
    exponent: Any = 1.0,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts from step 0 and includes the warm-up, as in optax: the
    cosine part lasts ``decay_steps - warmup_steps`` steps.

    Args:
        init_value: the value at step 0.
        peak_value: the value at the end of the warm-up.
        warmup_steps: the length of the warm-up.
        decay_steps: the total length of warm-up plus decay.
        end_value: the value at and after ``decay_steps``.
        exponent: the power of the cosine factor.

    Returns:
        A schedule.

    Example:
        >>> sched = warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110)
        >>> [round(float(sched(n)), 4) for n in (0, 5, 10, 60, 110)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )


def warmup_exponential_decay_schedule(
    init_value: Any,
    peak_value: Any,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Any = None,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then ``exponential_decay`` from it.

    Args:
        init_value: the value at step 0.
        peak_value: the value at the end of the warm-up.
        warmup_steps: the length of the warm-up.
        transition_steps: as in ``exponential_decay``.
        decay_rate: as in ``exponential_decay``.
        transition_begin: as in ``exponential_decay``, counted after the warm-up.
        staircase: as in ``exponential_decay``.
        end_value: as in ``exponential_decay``.

    Returns:
        A schedule.

    Example:
        >>> sched = warmup_exponential_decay_schedule(0.0, 1.0, 2, 10, 0.5)
        >>> [round(float(sched(n)), 4) for n in (0, 1, 2, 12)]
        [0.0, 0.5, 1.0, 0.5]
    """
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            exponential_decay(
                peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


# ------------------------------------------------------------------ inject_hyperparams


class WrappedScheduleState(NamedTuple):
    """The step count of one scheduled hyperparameter in ``inject_hyperparams``."""

    count: Any


class InjectStatefulHyperparamsState(NamedTuple):
    """State of an ``inject_hyperparams`` optimizer.

    Attributes:
        count: number of updates so far (int32).
        hyperparams: ``{name: scalar array}``, the values used by the last update
            (at init: the values the first update will use, for schedules).
        hyperparams_states: ``{name: WrappedScheduleState}`` for the scheduled
            hyperparameters only.
        inner_state: the inner optimizer's state.
    """

    count: Any
    hyperparams: dict[str, Any]
    hyperparams_states: dict[str, Any]
    inner_state: Any


# optax 0.2.x's inject_hyperparams returns the four-field state above; its older
# three-field InjectHyperparamsState is not used, so the name refers to the same class.
InjectHyperparamsState = InjectStatefulHyperparamsState


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float | np.ndarray | np.generic):
        return True
    return hasattr(v, "dtype") and hasattr(v, "shape")  # fgrad arrays and tracers


def _as_hyperparam(v: Any, dtype: Any) -> Any:
    """A hyperparameter as a scalar array; floats in ``dtype``, ints as given."""
    if isinstance(v, float):  # straight to dtype: no detour through float32
        return fnp.asarray(v, dtype=dtype)
    v = fnp.asarray(v)
    if np.issubdtype(v.dtype, np.floating) and v.dtype != dtype:
        v = v.astype(dtype)
    return v


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Wraps an optimizer factory so its numeric hyperparameters live in the state.

    ``inject_hyperparams(optim.adam)(learning_rate=0.1)`` builds an optimizer whose
    state is an ``InjectStatefulHyperparamsState`` with ``hyperparams["learning_rate"]``
    (and ``b1``, ``b2``, ...) as scalar arrays. Each update rebuilds the inner
    optimizer from those arrays, so a value changed between steps (with
    ``set_hyperparam``) takes effect without recompiling a jitted step. A callable
    argument is a schedule of the step count and is re-evaluated every step, except
    for arguments whose name contains "mask" (mask functions of the params).
    Booleans, None and the names in ``static_args`` are passed through unchanged.

    Args:
        inner_factory: a function returning a ``GradientTransformation``, e.g.
            ``optim.adam``.
        static_args: names of arguments that must stay Python values (pass a
            callable that is not a schedule, such as a mask function, here).
        hyperparam_dtype: dtype of float hyperparameters (default: the widest
            float dtype of the params).

    Returns:
        A factory with ``inner_factory``'s signature.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.inject_hyperparams(optim.sgd)(learning_rate=0.1)
        >>> state = opt.init(fnp.zeros(2))
        >>> state = optim.set_hyperparam(state, "learning_rate", 0.5)
        >>> u, state = opt.update(fnp.ones(2), state)
        >>> u.tolist()
        [-0.5, -0.5]
    """
    static_args = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    unknown = static_args - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"inject_hyperparams: static_args {sorted(unknown)} are not parameters of "
            f"{getattr(inner_factory, '__name__', inner_factory)}; it takes "
            f"{list(signature.parameters)}"
        )

    @functools.wraps(inner_factory)
    def wrapped(*args, **kwargs) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        scheduled, numeric, other = {}, {}, {}
        for name, value in bound.arguments.items():
            if name in static_args or isinstance(value, bool):
                other[name] = value
            elif callable(value) and "mask" in name:
                other[name] = value  # a mask function (of the params), not a schedule
            elif callable(value):
                scheduled[name] = value
            elif _is_number(value):
                numeric[name] = value
            else:
                other[name] = value

        def dtype_for(tree):
            return np.dtype(hyperparam_dtype) if hyperparam_dtype else _float_dtype_of(tree)

        def evaluate(hparams, counts, dtype):
            values = {k: _as_hyperparam(v, dtype) for k, v in hparams.items()}
            for k, sched in scheduled.items():
                values[k] = _as_hyperparam(sched(counts[k].count), dtype)
            return values

        def init_fn(params):
            counts = {k: WrappedScheduleState(count=_zero_count()) for k in scheduled}
            hparams = evaluate(numeric, counts, dtype_for(params))
            return InjectStatefulHyperparamsState(
                count=_zero_count(),
                hyperparams=hparams,
                hyperparams_states=counts,
                inner_state=inner_factory(**other, **hparams).init(params),
            )

        def update_fn(updates, state, params=None):
            dtype = dtype_for(params if params is not None else updates)
            fixed = {k: v for k, v in state.hyperparams.items() if k not in scheduled}
            hparams = evaluate(fixed, state.hyperparams_states, dtype)
            updates, inner_state = inner_factory(**other, **hparams).update(
                updates, state.inner_state, params
            )
            counts = {
                k: WrappedScheduleState(count=safe_increment(s.count))
                for k, s in state.hyperparams_states.items()
            }
            return updates, InjectStatefulHyperparamsState(
                count=safe_increment(state.count),
                hyperparams=hparams,
                hyperparams_states=counts,
                inner_state=inner_state,
            )

        return GradientTransformation(init_fn, update_fn)

    return wrapped
