"""Named optimizers, each a ``chain`` of building blocks with optax's defaults.

Every alias takes its learning rate as a float or a schedule of the step count and
returns a ``GradientTransformation`` whose updates are *added* to the params
(``apply_updates``): the learning-rate block negates them. The state is the tuple of
the chain members' states, as in optax, so ``state[0].mu`` and
``tree_get(state, "mu")`` both work.
"""

from __future__ import annotations

from typing import Any

from fgrad.optim import transform
from fgrad.optim.base import GradientTransformation, ScalarOrSchedule, identity
from fgrad.optim.combine import chain

__all__ = ["adadelta", "adagrad", "adam", "adamax", "adamw", "lamb", "nadam", "rmsprop", "sgd"]


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Without momentum ``w <- w - lr * g``. With momentum ``mu`` (optax's form):
    ``v <- g + mu v``, ``w <- w - lr * v``; with ``nesterov``,
    ``w <- w - lr * (g + mu v)`` (Sutskever et al. 2013).

    Args:
        learning_rate: a float or a schedule.
        momentum: the momentum ``mu``, or None for plain SGD.
        nesterov: use Nesterov momentum.
        accumulator_dtype: dtype of the momentum buffer.

    Returns:
        ``chain(trace(momentum, nesterov) or identity(), scale_by_learning_rate(lr))``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.sgd(0.5, momentum=0.9)
        >>> params = fnp.asarray([1.0])
        >>> state = opt.init(params)
        >>> for _ in range(2):
        ...     u, state = opt.update(fnp.asarray([1.0]), state, params)
        ...     params = optim.apply_updates(params, u)
        >>> round(float(params[0]), 6)  # 1 - 0.5 * 1 - 0.5 * (1 + 0.9)
        -0.45
    """
    first = (
        transform.trace(momentum, nesterov, accumulator_dtype)
        if momentum is not None
        else identity()
    )
    return chain(first, transform.scale_by_learning_rate(learning_rate))


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
) -> GradientTransformation:
    """Adagrad (Duchi et al. 2011): per-coordinate rates from the summed squares.

    ``r <- r + g^2`` (from ``r = initial_accumulator_value``),
    ``w <- w - lr * g / sqrt(r + eps)``.

    Args:
        learning_rate: a float or a schedule.
        initial_accumulator_value: the starting value of ``r`` (0.1, as optax).
        eps: added inside the square root (1e-7, as optax).

    Returns:
        ``chain(scale_by_rss(...), scale_by_learning_rate(lr))``.

    Example:
        >>> from fgrad import optim
        >>> state = optim.adagrad(0.1).init({"w": 0.0})
        >>> state[0].sum_of_squares["w"].tolist()
        0.10000000149011612
    """
    return chain(
        transform.scale_by_rss(initial_accumulator_value, eps),
        transform.scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSProp (Tieleman & Hinton 2012), optionally centred and with momentum.

    ``v <- decay v + (1 - decay) g^2``, ``w <- w - lr * g / sqrt(v + eps)``; with
    ``centered`` (Graves 2013) the denominator is ``sqrt(v - m^2 + eps)`` where ``m``
    averages ``g``. With ``momentum``, the scaled step feeds a ``trace``. optax's
    defaults: eps inside the root, ``v`` starting at 0, no bias correction.

    Args:
        learning_rate: a float or a schedule.
        decay: the decay rate ``rho`` of the averages.
        eps: the stabiliser.
        initial_scale: the starting value of ``v``.
        eps_in_sqrt: put ``eps`` inside the square root.
        centered: divide by the running standard deviation instead of the RMS.
        momentum: optional momentum applied after the learning rate.
        nesterov: Nesterov momentum.
        bias_correction: correct the averages for their zero start.

    Returns:
        ``chain(scale_by_rms or scale_by_stddev, scale_by_learning_rate, trace or identity)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.rmsprop(0.1, decay=0.75, eps=0.0)
        >>> u, _ = opt.update(fnp.asarray([2.0]), opt.init(fnp.zeros(1)))
        >>> u.tolist()  # -0.1 * 2 / sqrt(0.25 * 4)
        [-0.20000000298023224]
    """
    scaler = transform.scale_by_stddev if centered else transform.scale_by_rms
    return chain(
        scaler(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        ),
        transform.scale_by_learning_rate(learning_rate),
        transform.trace(momentum, nesterov) if momentum is not None else identity(),
    )


def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = None,
) -> GradientTransformation:
    """AdaDelta (Zeiler 2012).

    ``u = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g`` (see ``scale_by_adadelta``),
    ``w <- w - lr * u``. Zeiler's method has no learning rate; ``learning_rate=None``
    means 1.0 here. (optax's ``adadelta(None)`` skips the sign flip and so *ascends*
    the gradient; fgrad descends. With a learning rate both agree.)

    Args:
        learning_rate: a float, a schedule, or None for 1.0.
        rho: the decay rate of both averages.
        eps: the stabiliser inside both square roots.
        weight_decay: optional weight decay added to the gradient first.
        weight_decay_mask: which leaves decay (see ``add_decayed_weights``).

    Returns:
        ``chain(add_decayed_weights, scale_by_adadelta, scale_by_learning_rate)``.

    Example:
        >>> from fgrad import optim
        >>> [type(s).__name__ for s in optim.adadelta(1.0).init({"w": 0.0})]
        ['EmptyState', 'ScaleByAdaDeltaState', 'EmptyState']
    """
    return chain(
        transform.add_decayed_weights(weight_decay, mask=weight_decay_mask),
        transform.scale_by_adadelta(rho=rho, eps=eps),
        transform.scale_by_learning_rate(1.0 if learning_rate is None else learning_rate),
    )


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam (Kingma & Ba 2015).

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``w <- w - lr * m_hat / (sqrt(v_hat + eps_root) + eps)`` with the bias
    corrections ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``.

    Args:
        learning_rate: a float or a schedule.
        b1: decay of the first moment.
        b2: decay of the second moment.
        eps: added outside the square root.
        eps_root: added inside the square root.
        mu_dtype: dtype of the first moment.
        nesterov: use NAdam's first moment (see ``nadam``).

    Returns:
        ``chain(scale_by_adam(...), scale_by_learning_rate(lr))``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.adam(0.1)
        >>> u, state = opt.update(fnp.asarray([0.5, -3.0]), opt.init(fnp.zeros(2)))
        >>> np.round(np.asarray(u, np.float64), 4).tolist()  # the first step is -lr * sign(g)
        [-0.1, 0.1]
    """
    return chain(
        transform.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        transform.scale_by_learning_rate(learning_rate),
    )


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NAdam (Dozat 2016): Adam with Nesterov momentum.

    As ``adam``, with ``m_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)``.

    Args:
        learning_rate: a float or a schedule.
        b1: decay of the first moment.
        b2: decay of the second moment.
        eps: added outside the square root.
        eps_root: added inside the square root.
        mu_dtype: dtype of the first moment.

    Returns:
        ``adam(..., nesterov=True)``.

    Example:
        >>> from fgrad import optim
        >>> type(optim.nadam(1e-3).init({"w": 0.0})[0]).__name__
        'ScaleByAdamState'
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=True)


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.

    ``w <- w - lr * (adam_direction + weight_decay * w)``: the decay is added after
    Adam's rescaling, so it is not divided by ``sqrt(v)``.

    Args:
        learning_rate: a float or a schedule.
        b1: decay of the first moment.
        b2: decay of the second moment.
        eps: added outside the square root.
        eps_root: added inside the square root.
        mu_dtype: dtype of the first moment.
        weight_decay: the decay rate (1e-4, as optax), a float or a schedule.
        mask: which leaves decay: a pytree of bools or a function of the params.
        nesterov: use NAdam's first moment.

    Returns:
        ``chain(scale_by_adam, add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate)``.

    Example:
        >>> from fgrad import optim
        >>> opt = optim.adamw(1e-3, weight_decay=0.01, mask={"w": True, "b": False})
        >>> [type(s).__name__ for s in opt.init({"w": 0.0, "b": 0.0})]
        ['ScaleByAdamState', 'MaskedState', 'EmptyState']
    """
    return chain(
        transform.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        transform.add_decayed_weights(weight_decay, mask),
        transform.scale_by_learning_rate(learning_rate),
    )


def adamax(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradientTransformation:
    """AdaMax (Kingma & Ba 2015, Sec. 7): Adam with the infinity norm.

    ``m <- b1 m + (1 - b1) g``, ``u <- max(|g| + eps, b2 u)``,
    ``w <- w - lr * m / ((1 - b1^t) u)``.

    Args:
        learning_rate: a float or a schedule.
        b1: decay of the first moment.
        b2: decay of the infinity norm.
        eps: added to ``|g|``.

    Returns:
        ``chain(scale_by_adamax(...), scale_by_learning_rate(lr))``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.adamax(0.1)
        >>> u, _ = opt.update(fnp.asarray([2.0]), opt.init(fnp.zeros(1)))
        >>> np.round(np.asarray(u, np.float64), 6).tolist()
        [-0.1]
    """
    return chain(
        transform.scale_by_adamax(b1, b2, eps),
        transform.scale_by_learning_rate(learning_rate),
    )


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformation:
    """LAMB (You et al. 2019): Adam with weight decay and a layer-wise trust ratio.

    ``r = adam_direction + weight_decay * w`` per leaf, then
    ``w <- w - lr * (||w|| / ||r||) r`` (the ratio is 1 where a norm is zero).

    Args:
        learning_rate: a float or a schedule.
        b1: decay of the first moment.
        b2: decay of the second moment.
        eps: added outside the square root (1e-6, as optax).
        eps_root: added inside the square root.
        weight_decay: the decay rate (0, as optax).
        mask: which leaves decay.

    Returns:
        ``chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio,
        scale_by_learning_rate)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.lamb(0.1)
        >>> p = fnp.asarray([3.0, 4.0])
        >>> u, _ = opt.update(fnp.asarray([1.0, 1.0]), opt.init(p), p)
        >>> round(float(optim.global_norm(u)), 4)  # lr * ||w||
        0.5
    """
    return chain(
        transform.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        transform.add_decayed_weights(weight_decay, mask),
        transform.scale_by_trust_ratio(),
        transform.scale_by_learning_rate(learning_rate),
    )
