"""``nn.summary``: a Keras-style table of a model's layers, output shapes and sizes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fgrad import random
from fgrad import tree as tree_util
from fgrad.nn.layers.base import Layer, count_params
from fgrad.nn.layers.sequential import Sequential, _child_shape


def _nbytes(tree) -> int:
    return sum(int(np.asarray(leaf).nbytes) for leaf in tree_util.tree_leaves(tree))


def _human(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} GB"  # pragma: no cover


def _format_shape(shape) -> str:
    return str(tuple(shape)) if all(isinstance(d, int) for d in shape) else str(shape)


def summary(model, input_shape, *, print_fn: Callable[[str], None] | None = print) -> str:
    """Print (and return) a table of the model's layers, output shapes and param counts.

    A ``Sequential`` gets one row per child (named as in its params dict); any other
    layer gets one row. Trainable params are the ``params`` pytree; non-trainable ones
    are the ``state`` (BatchNorm's running statistics), as Keras counts them. The model
    is initialised once with ``random.key(0)`` to count.

    Args:
        model: a layer (usually a ``Sequential``).
        input_shape: the input shape, batch axis first.
        print_fn: called with the table; ``None`` to only return it.

    Returns:
        The table as a string.

    Example:
        >>> from fgrad import nn
        >>> model = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(3)])
        >>> table = nn.summary(model, (1, 4), print_fn=None)
        >>> print(table)  # doctest: +NORMALIZE_WHITESPACE
        Model: "Sequential"
        ┏━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━┓
        ┃ Layer (type)      ┃ Output Shape   ┃   Param # ┃
        ┡━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━┩
        │ Dense_0 (Dense)   │ (1, 16)        │        80 │
        │ relu_1 (relu)     │ (1, 16)        │         0 │
        │ Dense_2 (Dense)   │ (1, 3)         │        51 │
        └───────────────────┴────────────────┴───────────┘
         Total params: 131 (524 B)
         Trainable params: 131 (524 B)
         Non-trainable params: 0 (0 B)
    """
    params, state = model.init(random.key(0), input_shape)
    rows = []
    if isinstance(model, Sequential):
        shape = input_shape
        for name, layer in zip(model.names, model.layers, strict=True):
            shape = _child_shape(layer, shape)
            kind = type(layer).__name__ if isinstance(layer, Layer) else name.rsplit("_", 1)[0]
            count = count_params(params.get(name, {})) + count_params(state.get(name, {}))
            rows.append((f"{name} ({kind})", _format_shape(shape), f"{count:,}"))
    else:
        shape = model.output_shape(input_shape)
        rows.append(
            (
                f"{model.name} ({model.name})",
                _format_shape(shape),
                f"{count_params(params) + count_params(state):,}",
            )
        )
    headers = ("Layer (type)", "Output Shape", "Param #")
    # Each column as wide as its widest cell, with a little room to spare.
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(headers)]

    def line(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(values, edge):
        texts = [
            f" {v:<{w}} " if i < 2 else f" {v:>{w}} "
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return edge + edge.join(texts) + edge

    trainable, frozen = count_params(params), count_params(state)
    b_train, b_frozen = _nbytes(params), _nbytes(state)
    out = [
        f'Model: "{model.name}"',
        line("┏", "┳", "┓", "━"),
        cells(headers, "┃"),
        line("┡", "╇", "┩", "━"),
        *(cells(r, "│") for r in rows),
        line("└", "┴", "┘", "─"),
        f" Total params: {trainable + frozen:,} ({_human(b_train + b_frozen)})",
        f" Trainable params: {trainable:,} ({_human(b_train)})",
        f" Non-trainable params: {frozen:,} ({_human(b_frozen)})",
    ]
    table = "\n".join(out)
    if print_fn is not None:
        print_fn(table)
    return table
