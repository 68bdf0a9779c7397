"""Recurrent layers over ``(batch, time, features)``: SimpleRNN, LSTM, GRU.

Each layer is a *cell* ``cell(params, carry, xw_t) -> (carry, y_t)`` run over time by
``scan``. The input projection ``x @ w_x + b`` of all time steps is one matmul before
the loop; the cell adds the recurrent part ``h @ w_h``. The loop is ``lax.scan`` over
the time-major projections, so the traced program has one copy of the cell whatever
the sequence length (``jit`` compiles it once; ``grad`` runs the scan's VJP).

Params (gates side by side along the last axis, in Keras' order):
``{"w_x": (in, G * units), "w_h": (units, G * units), "b": (G * units,)}`` with G = 1
(SimpleRNN), 4 (LSTM: input, forget, cell, output) or 3 (GRU: update, reset,
candidate; GRU also has ``"b_h"``, the recurrent bias).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import fgrad.numpy as fnp
from fgrad import lax
from fgrad.nn import initializers
from fgrad.nn.activations import tanh
from fgrad.nn.layers.base import Layer, as_shape, float_input, split_keys
from fgrad.nn.layers.linear import GLOROT_UNIFORM

ORTHOGONAL = initializers.orthogonal()


@dataclasses.dataclass(frozen=True, repr=False)
class _Recurrent(Layer):
    gates: ClassVar[int] = 1

    units: int
    return_sequences: bool = True
    return_state: bool = False
    w_init: Callable = GLOROT_UNIFORM
    recurrent_init: Callable = ORTHOGONAL
    b_init: Callable = initializers.zeros

    # ------------------------------------------------------------ per-cell parts

    def cell(self, params, carry, xw_t):
        """One step: ``(carry, x_t @ w_x + b) -> (new_carry, y_t)``."""
        raise NotImplementedError

    def initial_carry(self, batch_size: int, dtype=fnp.float32):
        """The all-zeros carry for ``batch_size`` sequences."""
        return fnp.zeros((batch_size, self.units), dtype)

    def _carry_shape(self, batch: int):
        return (batch, self.units)

    def _bias(self, key):
        return self.b_init(key, (self.gates * self.units,))

    def _extra_params(self, key) -> dict:
        del key
        return {}

    # ------------------------------------------------------------ the protocol

    def output_shape(self, input_shape):
        shape = as_shape(self, input_shape)
        self.positive_int("units", self.units)
        self.check_rank(shape, 3, what="(batch, time, features)")
        batch, time, _ = shape
        y = (batch, time, self.units) if self.return_sequences else (batch, self.units)
        return (y, self._carry_shape(batch)) if self.return_state else y

    def init(self, key, input_shape):
        shape = as_shape(self, input_shape)
        self.output_shape(shape)
        k_x, k_h, k_b, k_extra = split_keys(key, 4)
        n = self.gates * self.units
        params = {
            "w_x": self.w_init(k_x, (shape[-1], n)),
            "w_h": self.recurrent_init(k_h, (self.units, n)),
            "b": self._bias(k_b),
            **self._extra_params(k_extra),
        }
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False, initial_carry=None):
        """Run over the sequence ``x`` (batch, time, features).

        ``initial_carry`` (default zeros, see ``initial_carry()``) starts the recurrence,
        e.g. from an encoder's final carry. Returns ``(y, state)``, or with
        ``return_state`` ``((y, final_carry), state)``.
        """
        del key, train
        x = float_input(x)
        self.check_rank(x.shape, 3, what="(batch, time, features)")
        batch, time, features = x.shape
        w_x = params["w_x"]
        xw = (x.reshape(batch * time, features) @ w_x + params["b"]).reshape(batch, time, -1)
        carry = initial_carry
        if carry is None:
            carry = self.initial_carry(batch, xw.dtype)
        carry, ys = lax.scan(
            lambda c, xw_t: self.cell(params, c, xw_t), carry, fnp.swapaxes(xw, 0, 1)
        )
        y = fnp.swapaxes(ys, 0, 1) if self.return_sequences else ys[-1]
        return ((y, carry) if self.return_state else y), state


@dataclasses.dataclass(frozen=True, repr=False)
class SimpleRNN(_Recurrent):
    """Elman RNN: ``h_t = activation(x_t @ w_x + h_{t-1} @ w_h + b)``.

    Args:
        units: size of the hidden state.
        return_sequences: return every ``h_t`` ``(batch, time, units)`` (default) or only
            the last ``(batch, units)``.
        return_state: also return the final carry ``h_T``: ``y`` becomes ``(y, h_T)``.
        activation: the nonlinearity (tanh).
        w_init, recurrent_init, b_init: initialisers of ``w_x`` (Glorot uniform),
            ``w_h`` (orthogonal) and ``b`` (zeros).

    Example:
        >>> from fgrad import nn, random
        >>> rnn = nn.SimpleRNN(8, return_sequences=False)
        >>> params, state = rnn.init(random.key(0), (4, 10, 3))
        >>> y, _ = rnn.apply(params, state, random.normal(random.key(1), (4, 10, 3)))
        >>> y.shape
        (4, 8)
    """

    gates: ClassVar[int] = 1
    activation: Callable = tanh

    def cell(self, params, carry, xw_t):
        h = self.activation(xw_t + carry @ params["w_h"])
        return h, h


@dataclasses.dataclass(frozen=True, repr=False)
class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997, with forget gates).

    With ``z = x_t @ w_x + h @ w_h + b`` split into four gates (Keras' order):
    ``i = sigmoid(z_i)``, ``f = sigmoid(z_f)``, ``g = tanh(z_g)``, ``o = sigmoid(z_o)``;
    ``c_t = f * c + i * g`` and ``h_t = o * tanh(c_t)``. The carry is ``(h, c)``.

    Args:
        units: size of ``h`` and ``c``.
        return_sequences: every ``h_t`` (default) or only the last.
        return_state: also return the final carry: ``y`` becomes ``(y, (h_T, c_T))``.
        unit_forget_bias: start the forget-gate bias at 1 (Jozefowicz et al., 2015;
            Keras' default), so the cell remembers by default.
        w_init, recurrent_init, b_init: as ``SimpleRNN``.

    Params: ``{"w_x": (in, 4u), "w_h": (u, 4u), "b": (4u,)}``.

    Example:
        >>> from fgrad import nn, random
        >>> lstm = nn.LSTM(16, return_state=True)
        >>> params, state = lstm.init(random.key(0), (2, 5, 3))
        >>> (y, (h, c)), _ = lstm.apply(params, state, random.normal(random.key(1), (2, 5, 3)))
        >>> y.shape, h.shape, c.shape
        ((2, 5, 16), (2, 16), (2, 16))
    """

    gates: ClassVar[int] = 4
    unit_forget_bias: bool = True

    def initial_carry(self, batch_size: int, dtype=fnp.float32):
        zeros = fnp.zeros((batch_size, self.units), dtype)
        return (zeros, zeros)

    def _carry_shape(self, batch: int):
        return ((batch, self.units), (batch, self.units))

    def _bias(self, key):
        b = self.b_init(key, (4 * self.units,))
        if self.unit_forget_bias:
            u = self.units
            b = fnp.concatenate([b[:u], b[u : 2 * u] + 1.0, b[2 * u :]])
        return b

    def cell(self, params, carry, xw_t):
        h, c = carry
        z = xw_t + h @ params["w_h"]
        zi, zf, zg, zo = fnp.split(z, 4, axis=-1)
        c = lax.logistic(zf) * c + lax.logistic(zi) * fnp.tanh(zg)
        h = lax.logistic(zo) * fnp.tanh(c)
        return (h, c), h


@dataclasses.dataclass(frozen=True, repr=False)
class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al., 2014), Keras' default "reset after" form.

    With ``x_t @ w_x + b`` split into ``(x_z, x_r, x_n)`` and ``h @ w_h + b_h`` into
    ``(h_z, h_r, h_n)``: ``z = sigmoid(x_z + h_z)``, ``r = sigmoid(x_r + h_r)``,
    ``n = tanh(x_n + r * h_n)``, ``h_t = z * h + (1 - z) * n``. The carry is ``h``.

    Arguments as ``SimpleRNN`` (without ``activation``).

    Params: ``{"w_x": (in, 3u), "w_h": (u, 3u), "b": (3u,), "b_h": (3u,)}``.

    Example:
        >>> from fgrad import nn, random
        >>> gru = nn.GRU(8)
        >>> params, state = gru.init(random.key(0), (2, 5, 3))
        >>> gru.apply(params, state, random.normal(random.key(1), (2, 5, 3)))[0].shape
        (2, 5, 8)
    """

    gates: ClassVar[int] = 3

    def _extra_params(self, key) -> dict:
        return {"b_h": self.b_init(key, (3 * self.units,))}

    def cell(self, params, carry, xw_t):
        h = carry
        x_z, x_r, x_n = fnp.split(xw_t, 3, axis=-1)
        h_z, h_r, h_n = fnp.split(h @ params["w_h"] + params["b_h"], 3, axis=-1)
        z = lax.logistic(x_z + h_z)
        r = lax.logistic(x_r + h_r)
        n = fnp.tanh(x_n + r * h_n)
        h = z * h + (1.0 - z) * n
        return h, h
