"""The layer protocol and the helpers every layer shares.

A layer is a frozen dataclass holding only hyperparameters; it never stores arrays.
Its three methods are pure functions of their arguments:

* ``init(key, input_shape) -> (params, state)``: fresh parameters (a dict of arrays)
  and state (e.g. BatchNorm's running statistics; ``{}`` for most layers). The input
  shape includes the batch axis. Bad hyperparameters and a wrong input rank are
  reported here, naming the layer.
* ``apply(params, state, x, *, key=None, train=False) -> (y, state)``: the forward
  pass; ``key`` feeds randomness (Dropout), ``train`` switches train-mode behaviour.
  Only shapes, never array values, steer Python control flow, so ``apply`` traces
  under ``jit``.
* ``output_shape(input_shape)``: the shape of ``y``, without computing anything
  (``Sequential`` and ``nn.summary`` chain it through a model).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import fgrad.numpy as fnp

Shape = tuple[int, ...]


def callable_name(fn: Callable) -> str:
    """A short readable name for a function in a repr: ``relu``, ``normal(...)``."""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qual is None:
        return repr(fn)
    if ".<locals>." in qual:  # an initialiser built by a factory: name the factory
        return qual.split(".<locals>.")[0] + "(...)"
    return qual


def _format_value(value: Any) -> str:
    if callable(value) and not isinstance(value, type) and not hasattr(value, "init"):
        return callable_name(value)
    return repr(value)


@dataclasses.dataclass(frozen=True, repr=False)
class Layer:
    """Base class of fgrad's layers (see the module docstring for the protocol)."""

    def init(self, key, input_shape) -> tuple[dict, dict]:
        """Create ``(params, state)`` for inputs of ``input_shape`` (batch axis first)."""
        raise NotImplementedError

    def apply(self, params, state, x, *, key=None, train: bool = False):
        """Run the layer: returns ``(y, new_state)``."""
        raise NotImplementedError

    def output_shape(self, input_shape):
        """The shape ``apply`` returns for inputs of ``input_shape``."""
        raise NotImplementedError

    # ------------------------------------------------------------ shared helpers

    @property
    def name(self) -> str:
        """The class name (``Sequential`` appends the position: ``Dense_0``)."""
        return type(self).__name__

    def __repr__(self) -> str:
        # Required hyperparameters always, optional ones only when not the default:
        # ``Dense(features=10)``, ``Conv2D(features=16, kernel_size=3, padding='SAME')``.
        parts = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and _same(value, f.default):
                continue
            parts.append(f"{f.name}={_format_value(value)}")
        return f"{self.name}({', '.join(parts)})"

    def error(self, message: str, kind: type[Exception] = ValueError) -> Exception:
        """An exception whose message starts with this layer's repr."""
        return kind(f"{self!r}: {message}")

    def check_rank(self, shape, rank: int | None = None, *, min_rank: int = 0, what: str = ""):
        """Raise a clear error unless ``shape`` has ``rank`` axes (or at least ``min_rank``)."""
        shape = tuple(shape)
        ok = len(shape) == rank if rank is not None else len(shape) >= min_rank
        if not ok:
            want = f"rank {rank}" if rank is not None else f"rank >= {min_rank}"
            layout = f" {what}" if what else ""
            raise self.error(
                f"expected an input of {want}{layout}, got shape {shape} (rank {len(shape)})"
            )

    def positive_int(self, name: str, value: Any) -> int:
        """``value`` as an int, or a clear error if it is not a positive integer."""
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise self.error(f"{name} must be a positive integer, got {value!r}")
        return int(value)

    def int_tuple(self, name: str, value: Any, n: int) -> tuple[int, ...]:
        """An int or ``n`` ints, as a tuple of ``n`` positive ints (or a clear error)."""
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            value = (value,) * n
        try:
            out = tuple(value)
        except TypeError:
            raise self.error(f"{name} must be an int or {n} ints, got {value!r}") from None
        if len(out) != n:
            raise self.error(f"{name} must be an int or {n} ints, got {value!r}")
        return tuple(self.positive_int(name, v) for v in out)

    def padding_spec(self, padding: Any, n: int) -> str | tuple[tuple[int, int], ...]:
        """Normalise padding: "SAME"/"VALID", an int p (p on both sides of every
        spatial axis), or ``n`` entries each an int or a ``(low, high)`` pair."""
        if isinstance(padding, str):
            if padding.upper() not in ("SAME", "VALID"):
                raise self.error(
                    f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}"
                )
            return padding.upper()
        if isinstance(padding, int | np.integer) and not isinstance(padding, bool):
            padding = [int(padding)] * n
        try:
            entries = list(padding)
            pads = []
            for p in entries:
                if isinstance(p, int | np.integer):
                    pads.append((int(p), int(p)))
                else:
                    lo, hi = p
                    pads.append((int(lo), int(hi)))
        except (TypeError, ValueError):
            raise self.error(
                f"padding must be 'SAME', 'VALID', an int or {n} (low, high) pairs, got {padding!r}"
            ) from None
        if len(pads) != n or any(lo < 0 or hi < 0 for lo, hi in pads):
            raise self.error(
                f"padding must be 'SAME', 'VALID', an int or {n} non-negative (low, high) "
                f"pairs, got {padding!r}"
            )
        return tuple(pads)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:
        return False


def as_shape(owner: Layer, input_shape: Any) -> Shape:
    """``input_shape`` as a tuple of non-negative ints (or an error naming the layer)."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise owner.error(
            f"input_shape must be a tuple of ints (batch axis first), got {input_shape!r}",
            TypeError,
        ) from None
    if any(d < 0 for d in shape):
        raise owner.error(f"input_shape must be non-negative, got {shape}")
    return shape


def float_input(x: Any):
    """Integer/bool inputs (e.g. uint8 pixels) become float32; floats pass through."""
    x = fnp.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def match_dtype(x, *arrays):
    """Cast ``x`` and ``arrays`` to their common float dtype (primitives such as the
    convolution need equal dtypes; float32 params with float64 inputs give float64)."""
    dt = fnp.result_type(x, *arrays)
    return [a if a.dtype == dt else a.astype(dt) for a in (x, *arrays)]


def conv_output_size(size: int, window: int, stride: int, pads: tuple[int, int]) -> int:
    """Windows of ``window`` elements, ``stride`` apart, in ``size`` padded by ``pads``."""
    return (size + pads[0] + pads[1] - window) // stride + 1


def same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """ "SAME" padding (ceil(size / stride) outputs, the odd element high), as JAX/Keras."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays."""
    from fgrad import tree as tree_util

    return sum(int(np.prod(np.shape(leaf))) for leaf in tree_util.tree_leaves(tree))


def split_keys(key, num: int) -> Sequence[Any]:
    """``num`` independent keys from ``key`` (``num`` Nones when ``key`` is None)."""
    if key is None:
        return [None] * num
    from fgrad import random

    keys = random.split(key, num)
    return [keys[i] for i in range(num)]
