"""Activation functions, with ``jax.nn``'s names, signatures and gradients.

Each is a plain function of arrays (``nn.relu(x)``), so it also stands in an
``nn.Sequential`` as a parameter-free layer. Everything is written on ``fgrad.numpy``
and ``fgrad.lax``, so it works eagerly and under ``grad``/``jit`` alike, and the
numerically delicate ones use their stable forms:

* ``softmax``/``log_softmax``/``logsumexp`` subtract the (stop-gradient) maximum first,
  so logits of +-1e4 give finite values and gradients;
* ``softplus`` is ``logaddexp(x, 0)``, which never overflows;
* ``relu``'s derivative at 0 is 0 and ``leaky_relu``'s is 1 (as ``jax.nn`` defines them).
"""

from __future__ import annotations

import math

import numpy as np

import fgrad.numpy as fnp
from fgrad import lax

__all__ = [
    "elu",
    "gelu",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "one_hot",
    "relu",
    "relu6",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "swish",
    "tanh",
]


def _float(x):
    """Activations compute in floating point (integer inputs are promoted, as NumPy)."""
    x = fnp.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


# ---------------------------------------------------------------- rectifiers


def relu(x):
    """Rectified linear unit ``max(x, 0)``; its derivative at 0 is 0, as in ``jax.nn``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.relu(fnp.asarray([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.0, 2.0]
    """
    x = _float(x)
    # ``where`` (not ``maximum``, which splits the gradient at a tie) routes the whole
    # cotangent to x only where x > 0.
    return fnp.where(x > 0, x, 0.0)


def relu6(x):
    """``min(max(x, 0), 6)``; derivative 0 at both kinks, as in ``jax.nn``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.relu6(fnp.asarray([-1.0, 3.0, 9.0])).tolist()
        [0.0, 3.0, 6.0]
    """
    x = _float(x)
    return fnp.where(x > 0, fnp.where(x < 6, x, 6.0), 0.0)


def leaky_relu(x, negative_slope: float = 0.01):
    """``x`` where ``x >= 0``, else ``negative_slope * x``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.leaky_relu(fnp.asarray([-2.0, 3.0]), 0.5).tolist()
        [-1.0, 3.0]
    """
    x = _float(x)
    return fnp.where(x >= 0, x, negative_slope * x)


def elu(x, alpha: float = 1.0):
    """Exponential linear unit: ``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> round(nn.elu(fnp.asarray([-1.0, 2.0])).tolist()[0], 4)
        -0.6321
    """
    x = _float(x)
    positive = x > 0
    # expm1 sees only non-positive values, so neither branch can overflow (a NaN or inf
    # in the unselected branch would poison the gradient of ``where``).
    safe = fnp.where(positive, 0.0, x)
    return fnp.where(positive, x, alpha * fnp.expm1(safe))


# ---------------------------------------------------------------- smooth squashing


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.sigmoid(fnp.asarray([0.0])).tolist()
        [0.5]
    """
    return lax.logistic(_float(x))


def tanh(x):
    """Hyperbolic tangent.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.tanh(fnp.asarray([0.0])).tolist()
        [0.0]
    """
    return fnp.tanh(_float(x))


def softplus(x):
    """``log(1 + exp(x))``, computed as ``logaddexp(x, 0)`` so it never overflows.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.softplus(fnp.asarray([1000.0])).tolist()
        [1000.0]
    """
    return fnp.logaddexp(_float(x), 0.0)


def log_sigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large ``|x|``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.log_sigmoid(fnp.asarray([-1000.0])).tolist()
        [-1000.0]
    """
    return -softplus(-_float(x))


def silu(x):
    """Sigmoid-weighted linear unit ``x * sigmoid(x)`` (also called swish).

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.silu(fnp.asarray([0.0])).tolist()
        [0.0]
    """
    x = _float(x)
    return x * lax.logistic(x)


swish = silu


def gelu(x, approximate: bool = True):
    """Gaussian error linear unit (Hendrycks & Gimpel, 2016).

    ``approximate=True`` (the default, as ``jax.nn.gelu``) is the tanh form
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``; ``False`` is the exact
    ``x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> round(nn.gelu(fnp.asarray([1.0])).tolist()[0], 4)
        0.8412
    """
    x = _float(x)
    if approximate:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + fnp.tanh(inner))
    return 0.5 * x * (1.0 + lax.erf(x * (1.0 / math.sqrt(2.0))))


# ---------------------------------------------------------------- normalising


def logsumexp(a, axis=None, keepdims: bool = False):
    """``log(sum(exp(a), axis))`` computed stably (shifted by the maximum).

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.logsumexp(fnp.asarray([1e4, 1e4])).item() - 1e4  # doctest: +ELLIPSIS
        0.69...
    """
    return fnp.logsumexp(_float(a), axis=axis, keepdims=keepdims)


def _shifted(x, axis):
    # The maximum is a constant for the gradient: softmax is shift-invariant, so its
    # gradient through the shift is exactly zero, and skipping it saves work.
    m = lax.stop_gradient(fnp.max(x, axis=axis, keepdims=True))
    m = fnp.where(fnp.isfinite(m), m, 0.0)
    return x - m


def log_softmax(x, axis: int | tuple[int, ...] = -1):
    """``x - logsumexp(x, axis)``: log-probabilities, finite even for logits of +-1e4.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.log_softmax(fnp.asarray([1e4, -1e4])).tolist()
        [0.0, -20000.0]
    """
    shifted = _shifted(_float(x), axis)
    return shifted - fnp.log(fnp.sum(fnp.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis: int | tuple[int, ...] = -1):
    """``exp(x) / sum(exp(x), axis)``, computed from the max-shifted logits.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.softmax(fnp.asarray([0.0, 0.0])).tolist()
        [0.5, 0.5]
    """
    e = fnp.exp(_shifted(_float(x), axis))
    return e / fnp.sum(e, axis=axis, keepdims=True)


def one_hot(x, num_classes: int, *, dtype=np.float32, axis: int = -1):
    """One-hot encode integer labels: a new axis of ``num_classes`` with a 1 at the label.

    Labels outside ``[0, num_classes)`` give an all-zero row (as in ``jax.nn.one_hot``).

    Args:
        x: integer array of labels.
        num_classes: length of the new axis.
        dtype: result dtype (float32 by default).
        axis: where the new axis goes (last by default).

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.one_hot(fnp.asarray([2, 0]), 3).tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    x = fnp.asarray(x)
    num_classes = int(num_classes)
    out_ndim = x.ndim + 1
    axis = axis % out_ndim
    classes = np.arange(num_classes, dtype=x.dtype).reshape(
        [num_classes if d == axis else 1 for d in range(out_ndim)]
    )
    return (fnp.expand_dims(x, axis) == fnp.asarray(classes)).astype(dtype)
