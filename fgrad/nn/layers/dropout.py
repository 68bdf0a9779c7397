"""Dropout (Srivastava et al., 2014), in its inverted form."""

from __future__ import annotations

import dataclasses

import numpy as np

import fgrad.numpy as fnp
from fgrad import random
from fgrad.nn.layers.base import Layer, as_shape


@dataclasses.dataclass(frozen=True, repr=False)
class Dropout(Layer):
    """Zero each unit with probability ``rate`` in training; identity in evaluation.

    Inverted dropout: survivors are scaled by ``1 / (1 - rate)`` during training, so the
    expected activation is unchanged and evaluation needs no rescaling. Training mode
    needs a PRNG key (``apply(..., key=k, train=True)``); each call should get a fresh
    key (``random.split``), or the same units are dropped every step.

    Args:
        rate: drop probability, in ``[0, 1)``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn, random
        >>> layer = nn.Dropout(0.5)
        >>> x = fnp.ones((2, 4))
        >>> y, _ = layer.apply({}, {}, x, key=random.key(0), train=True)
        >>> sorted(set(y.ravel().tolist()))
        [0.0, 2.0]
        >>> layer.apply({}, {}, x)[0] is x      # eval: identity
        True
    """

    rate: float

    def _check(self):
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, int | float | np.floating):
            raise self.error(f"rate must be a float in [0, 1), got {rate!r}", TypeError)
        if not 0.0 <= float(rate) < 1.0:
            raise self.error(f"rate must be in [0, 1) (the drop probability), got {rate!r}")

    def output_shape(self, input_shape):
        self._check()
        return as_shape(self, input_shape)

    def init(self, key, input_shape):
        del key
        self.output_shape(input_shape)
        return {}, {}

    def apply(self, params, state, x, *, key=None, train=False):
        del params
        self._check()
        if not train or self.rate == 0:
            return x, state
        if key is None:
            raise self.error(
                "needs a PRNG key in training mode: call apply(..., key=k, train=True) "
                "(or train=False for evaluation)",
                TypeError,
            )
        x = fnp.asarray(x)
        keep = 1.0 - float(self.rate)
        mask = random.bernoulli(key, keep, tuple(x.shape))
        return fnp.where(mask, x / keep, 0.0), state
