"""Multi-head scaled dot-product attention (Vaswani et al., 2017)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

import fgrad.numpy as fnp
from fgrad.nn import initializers
from fgrad.nn.activations import softmax
from fgrad.nn.layers.base import Layer, as_shape, float_input, split_keys
from fgrad.nn.layers.linear import GLOROT_UNIFORM


def _is_shape(s) -> bool:
    return all(isinstance(d, int | np.integer) for d in s)


@dataclasses.dataclass(frozen=True, repr=False)
class MultiHeadAttention(Layer):
    """Multi-head attention over ``(batch, length, features)`` sequences.

    ``x`` is one tensor (self-attention: query = key = value = x) or a
    ``(query, key, value)`` tuple (key and value share their length). Each head ``h``
    projects ``q_h = query @ Wq_h``, ``k_h = key @ Wk_h``, ``v_h = value @ Wv_h`` and
    computes ``softmax(q_h k_h^T / sqrt(key_size)) v_h``; the heads are concatenated
    and projected by ``Wo`` to ``output_size`` features.

    Args:
        num_heads: number of heads H.
        key_size: size K of each head's queries and keys.
        value_size: size V of each head's values (default ``key_size``).
        output_size: output features (default: the query's features).
        use_bias: add biases to the four projections.
        w_init, b_init: initialisers (Glorot uniform on each projection viewed as a
            ``(in, H * K)`` matrix, zeros).

    ``apply(..., mask=m)``: a boolean array broadcastable to ``(batch, H, q_len,
    kv_len)``, or ``(batch, q_len, kv_len)`` shared by all heads; True = may attend.
    A query with no allowed key attends uniformly (never NaN).

    Params: ``{"query": {"w": (Dq, H, K), "b": (H, K)}, "key": {"w": (Dk, H, K), ...},
    "value": {"w": (Dv, H, V), ...}, "out": {"w": (H, V, O), "b": (O,)}}``.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> from fgrad import nn, random
        >>> mha = nn.MultiHeadAttention(num_heads=2, key_size=4)
        >>> params, state = mha.init(random.key(0), (3, 5, 8))
        >>> x = random.normal(random.key(1), (3, 5, 8))
        >>> causal = fnp.asarray(np.tril(np.ones((5, 5), bool)))
        >>> y, _ = mha.apply(params, state, x, mask=causal[None])
        >>> y.shape
        (3, 5, 8)
    """

    num_heads: int
    key_size: int
    value_size: int | None = None
    output_size: int | None = None
    use_bias: bool = True
    w_init: Callable = GLOROT_UNIFORM
    b_init: Callable = initializers.zeros

    def _sizes(self):
        heads = self.positive_int("num_heads", self.num_heads)
        k = self.positive_int("key_size", self.key_size)
        v = k if self.value_size is None else self.positive_int("value_size", self.value_size)
        return heads, k, v

    def _shapes(self, input_shape):
        """(query, key, value) shapes from one shape or a triple of shapes."""
        try:
            triple = len(input_shape) == 3 and not _is_shape(input_shape)
        except TypeError:
            triple = False
        shapes = (
            [as_shape(self, s) for s in input_shape]
            if triple
            else [as_shape(self, input_shape)] * 3
        )
        for s in shapes:
            self.check_rank(s, 3, what="(batch, length, features)")
        q, k, v = shapes
        if k[1] != v[1]:
            raise self.error(f"key {k} and value {v} must have the same length")
        if not q[0] == k[0] == v[0]:
            raise self.error(f"query {q}, key {k} and value {v} must share the batch size")
        return q, k, v

    def output_shape(self, input_shape):
        self._sizes()
        q, _, _ = self._shapes(input_shape)
        out = (
            q[-1]
            if self.output_size is None
            else self.positive_int("output_size", self.output_size)
        )
        return (q[0], q[1], out)

    def init(self, key, input_shape):
        heads, k_size, v_size = self._sizes()
        q, k, v = self._shapes(input_shape)
        out = self.output_shape(input_shape)[-1]
        keys = split_keys(key, 8)

        def projection(k_w, k_b, d_in, per_head):
            # The kernel is initialised as the (in, H * size) matrix it acts as, so the
            # fans are the true fan-in and fan-out, then viewed as (in, H, size).
            w = self.w_init(k_w, (d_in, heads * per_head)).reshape(d_in, heads, per_head)
            p = {"w": w}
            if self.use_bias:
                p["b"] = self.b_init(k_b, (heads, per_head))
            return p

        params = {
            "query": projection(keys[0], keys[1], q[-1], k_size),
            "key": projection(keys[2], keys[3], k[-1], k_size),
            "value": projection(keys[4], keys[5], v[-1], v_size),
            "out": {"w": self.w_init(keys[6], (heads * v_size, out)).reshape(heads, v_size, out)},
        }
        if self.use_bias:
            params["out"]["b"] = self.b_init(keys[7], (out,))
        return params, {}

    def _project(self, p, x):
        """(B, T, D) @ (D, H, S) -> (B, H, T, S)."""
        b, t, d = x.shape
        _, heads, size = p["w"].shape
        y = (x.reshape(b * t, d) @ p["w"].reshape(d, heads * size)).reshape(b, t, heads, size)
        if self.use_bias:
            y = y + p["b"]
        return fnp.swapaxes(y, 1, 2)

    def apply(self, params, state, x, *, key=None, train=False, mask=None):
        del key, train
        if isinstance(x, tuple | list):
            if len(x) != 3:
                raise self.error(
                    f"expects one tensor or a (query, key, value) tuple, got {len(x)} items",
                    TypeError,
                )
            query, key_in, value = (float_input(a) for a in x)
        else:
            query = key_in = value = float_input(x)
        self._shapes((tuple(query.shape), tuple(key_in.shape), tuple(value.shape)))
        q = self._project(params["query"], query)  # (B, H, Tq, K)
        k = self._project(params["key"], key_in)  # (B, H, Tk, K)
        v = self._project(params["value"], value)  # (B, H, Tk, V)
        logits = (q @ fnp.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        if mask is not None:
            mask = fnp.asarray(mask)
            if mask.dtype != np.bool_:
                mask = mask != 0
            if mask.ndim == 3:  # (B, Tq, Tk): the same for every head
                mask = fnp.expand_dims(mask, 1)
            # The most negative finite logit (not -inf): a fully masked row stays finite.
            logits = fnp.where(mask, logits, float(np.finfo(logits.dtype).min))
        weights = softmax(logits, axis=-1)
        heads = weights @ v  # (B, H, Tq, V)
        b, h, t, vs = heads.shape
        concat = fnp.swapaxes(heads, 1, 2).reshape(b * t, h * vs)
        w_out = params["out"]["w"]
        y = (concat @ w_out.reshape(h * vs, w_out.shape[-1])).reshape(b, t, w_out.shape[-1])
        if self.use_bias:
            y = y + params["out"]["b"]
        return y, state
