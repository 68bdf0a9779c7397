"""2-D max and average pooling over NHWC images."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import fgrad.numpy as fnp
from fgrad.lax.windows import reduce_window_max, reduce_window_sum
from fgrad.nn.layers.base import Layer, as_shape, conv_output_size, float_input, same_pads

_NHWC = "(batch, height, width, channels)"


@dataclasses.dataclass(frozen=True, repr=False)
class _Pool2D(Layer):
    window: Any
    strides: Any = None
    padding: Any = "VALID"

    def _hyper(self):
        window = self.int_tuple("window", self.window, 2)
        strides = window if self.strides is None else self.int_tuple("strides", self.strides, 2)
        return window, strides, self.padding_spec(self.padding, 2)

    def _pads(self, shape):
        window, strides, padding = self._hyper()
        if padding == "VALID":
            pads = [(0, 0), (0, 0)]
        elif padding == "SAME":
            pads = [same_pads(n, w, s) for n, w, s in zip(shape[1:3], window, strides, strict=True)]
        else:
            pads = list(padding)
        for (lo, hi), w in zip(pads, window, strict=True):
            if lo >= w or hi >= w:
                raise self.error(f"padding {self.padding!r} must be smaller than the window")
        return window, strides, pads

    def output_shape(self, input_shape):
        shape = as_shape(self, input_shape)
        self.check_rank(shape, 4, what=_NHWC)
        window, strides, pads = self._pads(shape)
        out = [
            conv_output_size(n, w, s, p)
            for n, w, s, p in zip(shape[1:3], window, strides, pads, strict=True)
        ]
        if any(o < 1 for o in out):
            raise self.error(f"input {shape} is smaller than the window {window}")
        return (shape[0], *out, shape[3])

    def init(self, key, input_shape):
        del key
        self.output_shape(input_shape)
        return {}, {}

    def _window_args(self, x):
        self.check_rank(x.shape, 4, what=_NHWC)
        window, strides, pads = self._pads(tuple(x.shape))
        return (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))


@dataclasses.dataclass(frozen=True, repr=False)
class MaxPool2D(_Pool2D):
    """Maximum over ``window`` patches of each channel.

    Args:
        window: int or ``(wh, ww)``.
        strides: int or pair; defaults to the window (non-overlapping patches).
        padding: "VALID" (default), "SAME", an int or ``((lo, hi), (lo, hi))``; padded
            positions never win the maximum.

    The gradient of each window goes to its first maximal element (as in JAX).

    Example:
        >>> from fgrad import nn
        >>> nn.MaxPool2D(2).output_shape((8, 28, 28, 16))
        (8, 14, 14, 16)
    """

    def apply(self, params, state, x, *, key=None, train=False):
        del params, key, train
        x = float_input(x)
        window, strides, pads = self._window_args(x)
        return reduce_window_max(x, window, strides, pads), state


@dataclasses.dataclass(frozen=True, repr=False)
class AvgPool2D(_Pool2D):
    """Mean over ``window`` patches of each channel.

    Arguments as ``MaxPool2D``. With padding, each output averages only the real
    (unpadded) pixels of its window, as Keras' ``AveragePooling2D`` does (flax's
    ``avg_pool`` counts the padding zeros by default).

    Example:
        >>> from fgrad import nn
        >>> nn.AvgPool2D(3, strides=1, padding="SAME").output_shape((8, 28, 28, 16))
        (8, 28, 28, 16)
    """

    def apply(self, params, state, x, *, key=None, train=False):
        del params, key, train
        x = float_input(x)
        window, strides, pads = self._window_args(x)
        sums = reduce_window_sum(x, window, strides, pads)
        if all(p == (0, 0) for p in pads):
            return sums / float(window[1] * window[2]), state
        # Real pixels per window, a constant: the product of per-axis counts.
        counts = [
            _axis_counts(n, w, s, p)
            for n, w, s, p in zip(x.shape[1:3], window[1:3], strides[1:3], pads[1:3], strict=True)
        ]
        count = np.outer(counts[0], counts[1])[None, :, :, None].astype(x.dtype)
        return sums / fnp.asarray(count), state


def _axis_counts(n: int, window: int, stride: int, pads: tuple[int, int]) -> np.ndarray:
    """How many of each window's ``window`` positions fall inside the ``n`` real pixels."""
    out = conv_output_size(n, window, stride, pads)
    starts = np.arange(out) * stride - pads[0]
    return np.minimum(starts + window, n) - np.maximum(starts, 0)
