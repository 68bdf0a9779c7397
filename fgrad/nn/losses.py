"""Loss functions and weight penalties.

Every loss takes ``(predictions, targets)`` and a ``reduction``:

* ``"mean"`` (default): the mean over all elements of the elementwise loss (for the
  cross-entropies: over all examples), i.e. the batch mean;
* ``"sum"``: their sum;
* ``"none"``: the unreduced loss, elementwise (per example for the cross-entropies,
  whose class axis is summed).

The numerically delicate ones take logits: ``softmax_cross_entropy`` (through
``log_softmax``) and ``binary_cross_entropy(..., from_logits=True)`` (the
``max(x, 0) - x t + log(1 + exp(-|x|))`` form), which are finite for any logits.
"""

from __future__ import annotations

import numpy as np

import fgrad.numpy as fnp
from fgrad import tree as tree_util
from fgrad.nn.activations import log_softmax, one_hot

__all__ = [
    "binary_cross_entropy",
    "hinge",
    "l1_penalty",
    "l2_penalty",
    "mae",
    "mse",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before the log (Keras' epsilon).
EPSILON = 1e-7


def _reduce(loss, reduction: str, name: str):
    if reduction == "mean":
        return fnp.mean(loss)
    if reduction == "sum":
        return fnp.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _pair(predictions, targets, name: str):
    predictions, targets = fnp.asarray(predictions), fnp.asarray(targets)
    if tuple(predictions.shape) != tuple(targets.shape):
        raise ValueError(
            f"{name}: predictions {tuple(predictions.shape)} and targets "
            f"{tuple(targets.shape)} must have the same shape"
        )
    if not np.issubdtype(targets.dtype, np.floating):
        targets = targets.astype(predictions.dtype)
    return predictions, targets


# ---------------------------------------------------------------- regression


def mse(predictions, targets, reduction: str = "mean"):
    """Mean squared error ``(predictions - targets)^2``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.mse(fnp.asarray([1.0, 2.0]), fnp.asarray([0.0, 0.0])).item()
        2.5
    """
    predictions, targets = _pair(predictions, targets, "mse")
    return _reduce(fnp.square(predictions - targets), reduction, "mse")


def mae(predictions, targets, reduction: str = "mean"):
    """Mean absolute error ``|predictions - targets|``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.mae(fnp.asarray([1.0, -3.0]), fnp.asarray([0.0, 0.0])).item()
        2.0
    """
    predictions, targets = _pair(predictions, targets, "mae")
    return _reduce(fnp.abs(predictions - targets), reduction, "mae")


# ---------------------------------------------------------------- classification


def binary_cross_entropy(predictions, targets, from_logits: bool = False, reduction: str = "mean"):
    """Binary cross-entropy ``-(t log p + (1 - t) log(1 - p))``, elementwise.

    Args:
        predictions: probabilities in [0, 1] (e.g. a sigmoid's output), or logits when
            ``from_logits=True``.
        targets: same shape, values in [0, 1] (hard 0/1 labels or soft targets).
        from_logits: read ``predictions`` as logits and use the stable form
            ``max(x, 0) - x t + log(1 + exp(-|x|))`` (prefer this: it is finite and
            its gradient ``sigmoid(x) - t`` is exact for any logit).
        reduction: "mean", "sum" or "none".

    Probabilities are clipped to ``[1e-7, 1 - 1e-7]`` (as Keras does), so a confident
    wrong prediction costs about 16.1 instead of inf; the gradient is zero where the clip
    is active.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> round(nn.binary_cross_entropy(fnp.asarray([0.5]), fnp.asarray([1.0])).item(), 4)
        0.6931
        >>> logits = fnp.asarray([0.0, 1e4])
        >>> loss = nn.binary_cross_entropy(logits, fnp.asarray([1.0, 0.0]), from_logits=True,
        ...                                reduction="none")
        >>> [round(v, 4) for v in loss.tolist()]
        [0.6931, 10000.0]
    """
    predictions, targets = _pair(predictions, targets, "binary_cross_entropy")
    if from_logits:
        x = predictions
        loss = fnp.maximum(x, 0.0) - x * targets + fnp.log1p(fnp.exp(-fnp.abs(x)))
    else:
        p = fnp.clip(predictions, EPSILON, 1.0 - EPSILON)
        loss = -(targets * fnp.log(p) + (1.0 - targets) * fnp.log(1.0 - p))
    return _reduce(loss, reduction, "binary_cross_entropy")


def softmax_cross_entropy(logits, targets, reduction: str = "mean"):
    """Cross-entropy between ``softmax(logits)`` and the targets, over the last axis.

    Args:
        logits: unnormalised scores ``(..., num_classes)`` (a Dense layer's output; do
            not apply softmax first).
        targets: either class probabilities of the same shape as ``logits`` (one-hot or
            soft labels, a float array), or integer class labels of shape
            ``logits.shape[:-1]`` (an integer array). The dtype decides.
        reduction: "mean" (over examples), "sum", or "none" (one loss per example,
            shape ``logits.shape[:-1]``).

    Computed as ``-sum(targets * log_softmax(logits), -1)``, finite for any logits.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> logits = fnp.asarray([[2.0, 0.0, 0.0]])
        >>> a = nn.softmax_cross_entropy(logits, fnp.asarray([[1.0, 0.0, 0.0]])).item()
        >>> b = nn.softmax_cross_entropy(logits, fnp.asarray([0])).item()
        >>> round(a, 4), round(b, 4)
        (0.2395, 0.2395)
    """
    logits, targets = fnp.asarray(logits), fnp.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer):
        return softmax_cross_entropy_with_integer_labels(logits, targets, reduction)
    if tuple(logits.shape) != tuple(targets.shape):
        raise ValueError(
            f"softmax_cross_entropy: logits {tuple(logits.shape)} and float targets "
            f"{tuple(targets.shape)} must have the same shape (pass integer labels of "
            f"shape {tuple(logits.shape[:-1])} for class indices)"
        )
    loss = -fnp.sum(targets * log_softmax(logits, axis=-1), axis=-1)
    return _reduce(loss, reduction, "softmax_cross_entropy")


def softmax_cross_entropy_with_integer_labels(logits, labels, reduction: str = "mean"):
    """Softmax cross-entropy with integer class labels (optax's name for it).

    ``labels`` has shape ``logits.shape[:-1]`` and values in ``[0, num_classes)``.
    ``softmax_cross_entropy`` calls this when its targets are an integer array.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> loss = nn.softmax_cross_entropy_with_integer_labels(
        ...     fnp.asarray([[0.0, 0.0]]), fnp.asarray([1]))
        >>> round(loss.item(), 4)
        0.6931
    """
    logits, labels = fnp.asarray(logits), fnp.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"softmax_cross_entropy_with_integer_labels: labels must be integers, got "
            f"{labels.dtype.name}"
        )
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"softmax_cross_entropy: integer labels {tuple(labels.shape)} must have the "
            f"shape of logits {tuple(logits.shape)} without its class axis "
            f"({tuple(logits.shape[:-1])})"
        )
    log_p = log_softmax(logits, axis=-1)
    # A one-hot mask picks each example's log-probability; it is a constant for the
    # gradient, and unlike a gather it needs no index clamping.
    picked = fnp.sum(one_hot(labels, logits.shape[-1], dtype=log_p.dtype) * log_p, axis=-1)
    return _reduce(-picked, reduction, "softmax_cross_entropy")


def hinge(predictions, targets, reduction: str = "mean"):
    """Hinge loss ``max(0, 1 - targets * predictions)`` for targets in {-1, +1}.

    ``predictions`` are raw scores (e.g. a linear layer's output). Targets must be -1
    or +1; convert 0/1 labels with ``2 * t - 1``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> nn.hinge(fnp.asarray([0.5, 2.0]), fnp.asarray([1.0, -1.0]), reduction="none").tolist()
        [0.5, 3.0]
    """
    predictions, targets = _pair(predictions, targets, "hinge")
    return _reduce(fnp.maximum(1.0 - targets * predictions, 0.0), reduction, "hinge")


# ---------------------------------------------------------------- penalties

# Leaves with these names (or starting with "w_") are weights; everything else
# (biases "b"/"b_*"/"bias", normalisation "scale", ...) is skipped by weights_only=True.
_WEIGHT_NAMES = frozenset({"w", "kernel", "table", "embedding"})


def _is_weight(path) -> bool:
    if not path:
        return True  # a bare array: nothing to go by, so it counts
    last = path[-1]
    name = getattr(last, "key", getattr(last, "name", None))
    if not isinstance(name, str):
        return True
    return name in _WEIGHT_NAMES or name.startswith("w_")


def _penalised_leaves(params, weights_only: bool):
    leaves = []
    for path, leaf in tree_util.tree_leaves_with_path(params):
        if leaf is None or not np.issubdtype(fnp.asarray(leaf).dtype, np.floating):
            continue
        if weights_only and not _is_weight(path):
            continue
        leaves.append(leaf)
    return leaves


def _total(terms):
    if not terms:
        return fnp.zeros(())
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def l1_penalty(params, weights_only: bool = False):
    """Sum of absolute values of every float leaf of a params pytree: ``sum |w|``.

    Args:
        params: a pytree of arrays (e.g. a model's params).
        weights_only: count only weight leaves: those whose dict key is ``"w"``,
            ``"kernel"``, ``"table"``, ``"embedding"`` or starts with ``"w_"`` (the
            recurrent ``"w_x"``/``"w_h"``). Biases (``"b"``, ``"b_*"``, ``"bias"``) and
            BatchNorm/LayerNorm ``"scale"``/``"bias"`` are skipped.

    Multiply by the regularisation strength yourself: ``loss + 1e-4 * l1_penalty(params)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> p = {"w": fnp.asarray([1.0, -2.0]), "b": fnp.asarray([5.0])}
        >>> nn.l1_penalty(p).item(), nn.l1_penalty(p, weights_only=True).item()
        (8.0, 3.0)
    """
    return _total([fnp.sum(fnp.abs(w)) for w in _penalised_leaves(params, weights_only)])


def l2_penalty(params, weights_only: bool = False):
    """Sum of squares of every float leaf of a params pytree: ``sum w^2`` (no 1/2).

    ``weights_only`` selects leaves as in ``l1_penalty``. Keras' ``l2(lam)`` regulariser
    is ``lam * l2_penalty(params)``; weight decay ``lam`` in SGD corresponds to
    ``lam / 2 * l2_penalty(params)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn
        >>> p = {"w": fnp.asarray([1.0, -2.0]), "b": fnp.asarray([5.0])}
        >>> nn.l2_penalty(p).item(), nn.l2_penalty(p, weights_only=True).item()
        (30.0, 5.0)
    """
    return _total([fnp.sum(fnp.square(w)) for w in _penalised_leaves(params, weights_only)])
