"""Sequential: a chain of layers (and activation functions) applied in order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import fgrad.numpy as fnp
from fgrad.nn import activations
from fgrad.nn.layers.base import Layer, callable_name, split_keys

# Activations that keep their input's shape (others are probed with a zeros input).
_SHAPE_PRESERVING = frozenset(
    getattr(activations, name) for name in activations.__all__ if name != "one_hot"
)


@dataclasses.dataclass(frozen=True, repr=False)
class Sequential(Layer):
    """Apply ``layers`` in order; plain functions (``nn.relu``) stand in as layers.

    Children are named ``"<ClassName>_<index>"`` by their position in ``layers``
    (``Conv2D_0``, ``Dense_4``, ...). ``params`` and ``state`` are dicts keyed by these
    names holding only the children that have params (resp. state), e.g.
    ``{"Dense_0": {"w": ..., "b": ...}, "BatchNorm_1": {"scale": ..., "bias": ...}}``
    and state ``{"BatchNorm_1": {"mean": ..., "var": ...}}``. ``init`` and ``apply``
    split ``key`` into one key per position, so each layer gets its own randomness.
    ``train`` is passed to every layer.

    Example:
        >>> from fgrad import nn, random
        >>> model = nn.Sequential([nn.Dense(32), nn.relu, nn.Dropout(0.5), nn.Dense(10)])
        >>> params, state = model.init(random.key(0), (8, 784))
        >>> sorted(params)
        ['Dense_0', 'Dense_3']
        >>> x = random.normal(random.key(1), (8, 784))
        >>> logits, state = model.apply(params, state, x, key=random.key(2), train=True)
        >>> logits.shape
        (8, 10)
    """

    layers: Sequence[Any]

    def __post_init__(self):
        # A tuple keeps the layer immutable (and hashable, e.g. as a jit static arg).
        object.__setattr__(self, "layers", tuple(self.layers))

    def __repr__(self) -> str:
        if not self.layers:
            return "Sequential([])"
        inner = ",\n".join("  " + _child_repr(layer).replace("\n", "\n  ") for layer in self.layers)
        return f"Sequential([\n{inner},\n])"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    @property
    def names(self) -> tuple[str, ...]:
        """The children's names: ``"<ClassName>_<index>"`` (``"<function>_<index>"``)."""
        return tuple(f"{_child_name(layer)}_{i}" for i, layer in enumerate(self.layers))

    def _check(self):
        for i, layer in enumerate(self.layers):
            if not (isinstance(layer, Layer) or callable(layer)):
                raise self.error(
                    f"item {i} ({layer!r}) is neither a layer nor a function", TypeError
                )

    def output_shape(self, input_shape):
        self._check()
        shape = input_shape
        for name, layer in zip(self.names, self.layers, strict=True):
            shape = _in_context(name, lambda layer=layer, s=shape: _child_shape(layer, s))
        return shape

    def init(self, key, input_shape):
        self._check()
        params, state = {}, {}
        shape = input_shape
        for name, layer, k in zip(
            self.names, self.layers, split_keys(key, len(self.layers)), strict=True
        ):
            if isinstance(layer, Layer):
                p, s = _in_context(name, lambda layer=layer, k=k, s=shape: layer.init(k, s))
                if p:
                    params[name] = p
                if s:
                    state[name] = s
            shape = _in_context(name, lambda layer=layer, s=shape: _child_shape(layer, s))
        return params, state

    def apply(self, params, state, x, *, key=None, train=False):
        new_state = dict(state)
        for name, layer, k in zip(
            self.names, self.layers, split_keys(key, len(self.layers)), strict=True
        ):
            if isinstance(layer, Layer):
                x, s = layer.apply(params.get(name, {}), state.get(name, {}), x, key=k, train=train)
                if s:
                    new_state[name] = s
            else:
                x = layer(x)
        return x, new_state


def _child_name(layer: Any) -> str:
    if isinstance(layer, Layer):
        return type(layer).__name__
    return getattr(layer, "__name__", type(layer).__name__)


def _child_repr(layer: Any) -> str:
    return repr(layer) if isinstance(layer, Layer) else callable_name(layer)


def _child_shape(layer: Any, shape):
    if isinstance(layer, Layer):
        return layer.output_shape(shape)
    try:
        known = layer in _SHAPE_PRESERVING
    except TypeError:  # an unhashable callable object
        known = False
    if known:
        return tuple(shape)
    # An arbitrary function: run it once on zeros to learn its output shape.
    return tuple(layer(fnp.zeros(tuple(shape))).shape)


def _in_context(name: str, fn: Callable):
    """Run ``fn``; re-raise its error with the child's name in front."""
    try:
        return fn()
    except (ValueError, TypeError) as e:
        raise type(e)(f"in Sequential child {name}: {e}") from e
