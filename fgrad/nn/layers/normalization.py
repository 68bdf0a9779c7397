"""BatchNorm (Ioffe & Szegedy, 2015) and LayerNorm (Ba, Kiros & Hinton, 2016)."""

from __future__ import annotations

import dataclasses

import fgrad.numpy as fnp
from fgrad import lax
from fgrad.nn.layers.base import Layer, as_shape, float_input


def _normalize(x, mean, var, epsilon, scale, bias):
    return (x - mean) * lax.rsqrt(var + epsilon) * scale + bias


@dataclasses.dataclass(frozen=True, repr=False)
class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (the features/channels).

    Training (``train=True``): normalise with the batch's mean and (biased) variance,
    and update the running statistics in ``state``:
    ``running = momentum * running + (1 - momentum) * batch``.
    Evaluation (``train=False``, the default): normalise with the running statistics;
    the state is returned unchanged. Either way ``y = (x - mean) / sqrt(var + epsilon)
    * scale + bias``.

    Args:
        momentum: weight of the old running value (Keras' 0.99 by default).
        epsilon: added to the variance (Keras' 1e-3).

    Params: ``{"scale": ones (C,), "bias": zeros (C,)}``; state: ``{"mean": zeros (C,),
    "var": ones (C,)}``. The running statistics keep their dtype.

    Example:
        >>> from fgrad import nn, random
        >>> bn = nn.BatchNorm()
        >>> params, state = bn.init(random.key(0), (32, 10))
        >>> x = random.normal(random.key(1), (32, 10)) * 3.0 + 1.0
        >>> y, state = bn.apply(params, state, x, train=True)   # batch statistics
        >>> round(float(y.mean()), 4) == 0.0
        True
        >>> y_eval, _ = bn.apply(params, state, x)              # running statistics
    """

    momentum: float = 0.99
    epsilon: float = 1e-3

    def _check(self):
        if not 0.0 <= float(self.momentum) <= 1.0:
            raise self.error(f"momentum must be in [0, 1], got {self.momentum!r}")
        if not float(self.epsilon) > 0.0:
            raise self.error(f"epsilon must be positive, got {self.epsilon!r}")

    def output_shape(self, input_shape):
        self._check()
        shape = as_shape(self, input_shape)
        self.check_rank(shape, min_rank=2, what="(batch, ..., features)")
        return shape

    def init(self, key, input_shape):
        del key
        c = self.output_shape(input_shape)[-1]
        params = {"scale": fnp.ones((c,)), "bias": fnp.zeros((c,))}
        state = {"mean": fnp.zeros((c,)), "var": fnp.ones((c,))}
        return params, state

    def apply(self, params, state, x, *, key=None, train=False):
        del key
        x = float_input(x)
        self.check_rank(x.shape, min_rank=2, what="(batch, ..., features)")
        if not train:
            y = _normalize(
                x, state["mean"], state["var"], self.epsilon, params["scale"], params["bias"]
            )
            return y, state
        axes = tuple(range(x.ndim - 1))
        mean = fnp.mean(x, axis=axes)
        var = fnp.mean(fnp.square(x - mean), axis=axes)  # two-pass: no cancellation
        y = _normalize(x, mean, var, self.epsilon, params["scale"], params["bias"])
        m = float(self.momentum)

        def update(running, batch):
            # The statistics are data, not a function of the params to differentiate.
            new = m * running + (1.0 - m) * lax.stop_gradient(batch)
            return new.astype(running.dtype)

        new_state = {"mean": update(state["mean"], mean), "var": update(state["var"], var)}
        return y, new_state


@dataclasses.dataclass(frozen=True, repr=False)
class LayerNorm(Layer):
    """Normalise each example over its last axis, then scale and shift.

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias`` with the mean and variance
    over the last axis; the same in training and evaluation (no state).

    Params: ``{"scale": ones (C,), "bias": zeros (C,)}``.

    Example:
        >>> from fgrad import nn, random
        >>> ln = nn.LayerNorm()
        >>> params, state = ln.init(random.key(0), (4, 16))
        >>> y, _ = ln.apply(params, state, random.normal(random.key(1), (4, 16)))
        >>> y.shape
        (4, 16)
    """

    epsilon: float = 1e-5

    def output_shape(self, input_shape):
        if not float(self.epsilon) > 0.0:
            raise self.error(f"epsilon must be positive, got {self.epsilon!r}")
        shape = as_shape(self, input_shape)
        self.check_rank(shape, min_rank=1, what="(..., features)")
        return shape

    def init(self, key, input_shape):
        del key
        c = self.output_shape(input_shape)[-1]
        return {"scale": fnp.ones((c,)), "bias": fnp.zeros((c,))}, {}

    def apply(self, params, state, x, *, key=None, train=False):
        del key, train
        x = float_input(x)
        mean = fnp.mean(x, axis=-1, keepdims=True)
        var = fnp.mean(fnp.square(x - mean), axis=-1, keepdims=True)
        return _normalize(x, mean, var, self.epsilon, params["scale"], params["bias"]), state
