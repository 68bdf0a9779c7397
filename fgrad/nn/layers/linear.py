"""Dense (fully connected), Embedding (table lookup) and Flatten."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

import fgrad.numpy as fnp
from fgrad.nn import initializers
from fgrad.nn.layers.base import Layer, as_shape, float_input, split_keys

# Defaults are built once, so a layer's repr can tell "the default" from a custom choice.
GLOROT_UNIFORM = initializers.glorot_uniform()
EMBEDDING_NORMAL = initializers.normal(stddev=0.05)


@dataclasses.dataclass(frozen=True, repr=False)
class Dense(Layer):
    """Fully connected layer ``y = x @ w + b`` over the last axis of ``x``.

    Args:
        features: number of output units.
        use_bias: add the bias ``b``.
        w_init: initialiser of the ``(in, features)`` kernel (Glorot uniform).
        b_init: initialiser of the ``(features,)`` bias (zeros).

    Params: ``{"w": (in, features), "b": (features,)}`` (no ``"b"`` without bias).
    Input ``(..., in)`` of rank >= 1; output ``(..., features)``.

    Example:
        >>> from fgrad import nn, random
        >>> layer = nn.Dense(3)
        >>> params, state = layer.init(random.key(0), (2, 4))
        >>> {k: v.shape for k, v in params.items()}
        {'w': (4, 3), 'b': (3,)}
        >>> y, _ = layer.apply(params, state, random.normal(random.key(1), (2, 4)))
        >>> y.shape
        (2, 3)
    """

    features: int
    use_bias: bool = True
    w_init: Callable = GLOROT_UNIFORM
    b_init: Callable = initializers.zeros

    def output_shape(self, input_shape):
        shape = as_shape(self, input_shape)
        self.positive_int("features", self.features)
        self.check_rank(shape, min_rank=1, what="(..., features)")
        return (*shape[:-1], self.features)

    def init(self, key, input_shape):
        shape = as_shape(self, input_shape)
        self.output_shape(shape)
        k_w, k_b = split_keys(key, 2)
        params = {"w": self.w_init(k_w, (shape[-1], self.features))}
        if self.use_bias:
            params["b"] = self.b_init(k_b, (self.features,))
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        del key, train
        x = float_input(x)
        w = params["w"]
        if x.ndim == 2:
            y = x @ w
        else:  # contract the last axis: fold the leading axes into one for the matmul
            lead = tuple(x.shape[:-1])
            y = (x.reshape(math.prod(lead), x.shape[-1]) @ w).reshape(*lead, w.shape[-1])
        if self.use_bias:
            y = y + params["b"]
        return y, state


@dataclasses.dataclass(frozen=True, repr=False)
class Embedding(Layer):
    """Lookup table: integer ids ``(...)`` -> vectors ``(..., features)``.

    Args:
        num_embeddings: vocabulary size (ids are in ``[0, num_embeddings)``; others are
            clamped to the nearest valid row, as JAX's gather does).
        features: length of each vector.
        embedding_init: initialiser of the table (normal, stddev 0.05).

    Params: ``{"table": (num_embeddings, features)}``. The gradient w.r.t. the table is
    the scatter-add of the output cotangent into the looked-up rows.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import nn, random
        >>> layer = nn.Embedding(10, 4)
        >>> params, state = layer.init(random.key(0), (2, 5))
        >>> y, _ = layer.apply(params, state, fnp.zeros((2, 5), fnp.int32))
        >>> y.shape
        (2, 5, 4)
    """

    num_embeddings: int
    features: int
    embedding_init: Callable = EMBEDDING_NORMAL

    def output_shape(self, input_shape):
        shape = as_shape(self, input_shape)
        self.positive_int("num_embeddings", self.num_embeddings)
        self.positive_int("features", self.features)
        return (*shape, self.features)

    def init(self, key, input_shape):
        self.output_shape(input_shape)
        return {"table": self.embedding_init(key, (self.num_embeddings, self.features))}, {}

    def apply(self, params, state, x, *, key=None, train=False):
        del key, train
        x = fnp.asarray(x)
        if not np.issubdtype(x.dtype, np.integer):
            raise self.error(
                f"expects integer ids, got dtype {x.dtype.name}; convert with .astype(int32)",
                TypeError,
            )
        return fnp.take(params["table"], x, axis=0), state


@dataclasses.dataclass(frozen=True, repr=False)
class Flatten(Layer):
    """Flatten all axes but the batch axis: ``(N, ...)`` -> ``(N, prod(...))``.

    Example:
        >>> from fgrad import nn
        >>> nn.Flatten().output_shape((8, 7, 7, 16))
        (8, 784)
    """

    def output_shape(self, input_shape):
        shape = as_shape(self, input_shape)
        self.check_rank(shape, min_rank=2, what="(batch, ...)")
        return (shape[0], math.prod(shape[1:]))

    def init(self, key, input_shape):
        del key
        self.output_shape(input_shape)
        return {}, {}

    def apply(self, params, state, x, *, key=None, train=False):
        del params, key, train
        x = fnp.asarray(x)
        self.check_rank(x.shape, min_rank=2, what="(batch, ...)")
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), state
