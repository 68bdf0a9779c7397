"""Convolutions over channels-last inputs: Conv1D (NWC), Conv2D (NHWC), ConvTranspose2D.

Kernels are ``(*window, in / groups, out)`` (WIO / HWIO). Like every deep-learning
"convolution" these are cross-correlations (the kernel is not flipped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from fgrad.lax.convolution import conv_general_dilated
from fgrad.nn import initializers
from fgrad.nn.layers.base import (
    Layer,
    as_shape,
    conv_output_size,
    float_input,
    match_dtype,
    same_pads,
    split_keys,
)
from fgrad.nn.layers.linear import GLOROT_UNIFORM

_LAYOUTS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}
_AXES = {1: "(batch, width, channels)", 2: "(batch, height, width, channels)"}


@dataclasses.dataclass(frozen=True, repr=False)
class _Conv(Layer):
    """Shared body of Conv1D/Conv2D; ``spatial_dims`` fixes the number of spatial axes."""

    spatial_dims: ClassVar[int] = 2

    features: int
    kernel_size: Any
    strides: Any = 1
    padding: Any = "VALID"
    dilation: Any = 1
    feature_group_count: int = 1
    use_bias: bool = True
    w_init: Callable = GLOROT_UNIFORM
    b_init: Callable = initializers.zeros

    def _hyper(self):
        n = self.spatial_dims
        self.positive_int("features", self.features)
        groups = self.positive_int("feature_group_count", self.feature_group_count)
        if self.features % groups:
            raise self.error(
                f"features ({self.features}) must be divisible by feature_group_count ({groups})"
            )
        return (
            self.int_tuple("kernel_size", self.kernel_size, n),
            self.int_tuple("strides", self.strides, n),
            self.padding_spec(self.padding, n),
            self.int_tuple("dilation", self.dilation, n),
            groups,
        )

    def _pads(self, shape, kernel, strides, padding, dilation):
        spatial = shape[1:-1]
        window = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
        if padding == "VALID":
            pads = [(0, 0)] * len(spatial)
        elif padding == "SAME":
            pads = [same_pads(n, w, s) for n, w, s in zip(spatial, window, strides, strict=True)]
        else:
            pads = list(padding)
        return pads, window

    def output_shape(self, input_shape):
        shape = as_shape(self, input_shape)
        kernel, strides, padding, dilation, groups = self._hyper()
        self.check_rank(shape, self.spatial_dims + 2, what=_AXES[self.spatial_dims])
        if shape[-1] % groups:
            raise self.error(
                f"input channels ({shape[-1]}) must be divisible by feature_group_count ({groups})"
            )
        pads, window = self._pads(shape, kernel, strides, padding, dilation)
        out = [
            conv_output_size(n, w, s, p)
            for n, w, s, p in zip(shape[1:-1], window, strides, pads, strict=True)
        ]
        if any(o < 1 for o in out):
            raise self.error(
                f"input {shape} is too small for the (dilated) kernel {tuple(window)} with "
                f"padding {self.padding!r}"
            )
        return (shape[0], *out, self.features)

    def init(self, key, input_shape):
        shape = as_shape(self, input_shape)
        self.output_shape(shape)
        kernel, *_, groups = self._hyper()
        k_w, k_b = split_keys(key, 2)
        params = {"w": self.w_init(k_w, (*kernel, shape[-1] // groups, self.features))}
        if self.use_bias:
            params["b"] = self.b_init(k_b, (self.features,))
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        del key, train
        x = float_input(x)
        kernel, strides, padding, dilation, groups = self._hyper()
        self.check_rank(x.shape, self.spatial_dims + 2, what=_AXES[self.spatial_dims])
        pads, _ = self._pads(tuple(x.shape), kernel, strides, padding, dilation)
        x, w = match_dtype(x, params["w"])
        y = conv_general_dilated(
            x,
            w,
            strides,
            pads,
            rhs_dilation=dilation,
            dimension_numbers=_LAYOUTS[self.spatial_dims],
            feature_group_count=groups,
        )
        if self.use_bias:
            y = y + params["b"]
        return y, state


@dataclasses.dataclass(frozen=True, repr=False)
class Conv2D(_Conv):
    """2-D convolution over NHWC images with an HWIO kernel.

    Args:
        features: output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)``.
        padding: "VALID" (no padding, the default), "SAME" (output ``ceil(in / stride)``,
            the odd pixel of padding at the bottom/right, as Keras and JAX), an int
            ``p`` (``p`` zeros on every side), or per-axis entries ``((lo, hi), (lo, hi))``
            (an int entry means ``(p, p)``).
        dilation: int or pair: kernel dilation (atrous convolution).
        feature_group_count: split channels into this many groups (in and out channels
            must both divide; equal to the in channels is a depthwise convolution).
        use_bias: add a ``(features,)`` bias.
        w_init, b_init: initialisers (Glorot uniform on the HWIO shape, zeros).

    Params: ``{"w": (kh, kw, in / groups, features), "b": (features,)}``.

    Example:
        >>> from fgrad import nn, random
        >>> layer = nn.Conv2D(16, 3, padding="SAME", strides=2)
        >>> layer.output_shape((8, 28, 28, 1))
        (8, 14, 14, 16)
        >>> params, state = layer.init(random.key(0), (8, 28, 28, 1))
        >>> params["w"].shape
        (3, 3, 1, 16)
    """

    spatial_dims: ClassVar[int] = 2


@dataclasses.dataclass(frozen=True, repr=False)
class Conv1D(_Conv):
    """1-D convolution over ``(batch, width, channels)`` with a ``(k, in, out)`` kernel.

    Hyperparameters as ``Conv2D`` with one spatial axis (ints or 1-tuples).

    Example:
        >>> from fgrad import nn
        >>> nn.Conv1D(8, 5).output_shape((4, 100, 3))
        (4, 96, 8)
    """

    spatial_dims: ClassVar[int] = 1


def transpose_pads(kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """Padding of the stride-dilated input that gives Keras' transposed-conv sizes.

    After dilating the input by ``stride`` (``(n - 1) * stride + 1`` elements) and
    padding by ``(lo, hi)``, a VALID correlation with the flipped kernel has
    ``n * stride`` outputs for "SAME" and ``n * stride + max(kernel - stride, 0)`` for
    "VALID": the output sizes of ``keras.layers.Conv2DTranspose`` (and ``jax.lax.
    conv_transpose``). ``lo`` is chosen so the result is exactly the adjoint (gradient)
    of a ``Conv2D`` with the same kernel, strides and padding.
    """
    if padding == "SAME":
        total = kernel + stride - 2
        lo = kernel - 1 if stride > kernel - 1 else -(-total // 2)
    else:
        total = kernel + stride - 2 + max(kernel - stride, 0)
        lo = kernel - 1
    return lo, total - lo


@dataclasses.dataclass(frozen=True, repr=False)
class ConvTranspose2D(Layer):
    """Transposed 2-D convolution ("deconvolution"): upsamples NHWC images.

    Each input pixel adds ``x[i, j] * w[a, b]`` to output pixel ``(i*s + a, j*s + b)``
    (then "SAME" crops to ``in * stride``). Computed as a convolution of the input
    dilated by ``strides`` (``lhs_dilation``) with the spatially flipped kernel, padded
    so the sizes are Keras' ``Conv2DTranspose``: "VALID" gives
    ``in * stride + max(kernel - stride, 0)``, "SAME" gives ``in * stride``. It is the
    adjoint of a ``Conv2D`` with the same kernel, strides and padding (whose kernel's
    in/out axes are swapped).

    Args:
        features: output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)``: the upsampling factor.
        padding: "VALID" (default) or "SAME".
        use_bias: add a ``(features,)`` bias.
        w_init, b_init: initialisers (Glorot uniform, zeros).

    Params: ``{"w": (kh, kw, in, features), "b": (features,)}`` (HWIO, like Conv2D;
    Keras stores the same kernel as ``(kh, kw, features, in)``).

    Example:
        >>> from fgrad import nn
        >>> nn.ConvTranspose2D(8, 3, strides=2, padding="SAME").output_shape((1, 7, 7, 16))
        (1, 14, 14, 8)
        >>> nn.ConvTranspose2D(8, 3, strides=2).output_shape((1, 7, 7, 16))
        (1, 15, 15, 8)
    """

    features: int
    kernel_size: Any
    strides: Any = 1
    padding: str = "VALID"
    use_bias: bool = True
    w_init: Callable = GLOROT_UNIFORM
    b_init: Callable = initializers.zeros

    def _hyper(self):
        self.positive_int("features", self.features)
        padding = self.padding.upper() if isinstance(self.padding, str) else self.padding
        if padding not in ("SAME", "VALID"):
            raise self.error(f"padding must be 'SAME' or 'VALID', got {self.padding!r}")
        return (
            self.int_tuple("kernel_size", self.kernel_size, 2),
            self.int_tuple("strides", self.strides, 2),
            padding,
        )

    def output_shape(self, input_shape):
        shape = as_shape(self, input_shape)
        kernel, strides, padding = self._hyper()
        self.check_rank(shape, 4, what=_AXES[2])
        out = []
        for n, k, s in zip(shape[1:3], kernel, strides, strict=True):
            out.append(n * s if padding == "SAME" else n * s + max(k - s, 0))
        return (shape[0], *out, self.features)

    def init(self, key, input_shape):
        shape = as_shape(self, input_shape)
        self.output_shape(shape)
        kernel, _, _ = self._hyper()
        k_w, k_b = split_keys(key, 2)
        params = {"w": self.w_init(k_w, (*kernel, shape[-1], self.features))}
        if self.use_bias:
            params["b"] = self.b_init(k_b, (self.features,))
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        del key, train
        x = float_input(x)
        kernel, strides, padding = self._hyper()
        self.check_rank(x.shape, 4, what=_AXES[2])
        x, w = match_dtype(x, params["w"])
        pads = [transpose_pads(k, s, padding) for k, s in zip(kernel, strides, strict=True)]
        y = conv_general_dilated(
            x,
            w[::-1, ::-1],
            (1, 1),
            pads,
            lhs_dilation=strides,
            dimension_numbers=_LAYOUTS[2],
        )
        if self.use_bias:
            y = y + params["b"]
        return y, state
