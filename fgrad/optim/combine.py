"""Combinators: run transformations one after another, or on labelled parts of a tree."""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

from fgrad import tree as tree_util
from fgrad.optim.base import GradientTransformation
from fgrad.optim.wrappers import masked

__all__ = [
    "MultiTransformState",
    "PartitionState",
    "chain",
    "multi_transform",
    "named_chain",
    "partition",
]


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Applies transformations in sequence; the state is the tuple of their states.

    Args:
        *transforms: ``GradientTransformation``s (anything with ``init``/``update``,
            e.g. a ``MultiSteps``), applied left to right.

    Returns:
        A ``GradientTransformation`` whose state is ``tuple(states)``. To read a
        member's state by name rather than position, use ``named_chain`` or
        ``tree_get``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.chain(optim.clip(1.0), optim.scale(-0.1))
        >>> u, state = opt.update(fnp.asarray([5.0, -0.5]), opt.init(fnp.zeros(2)))
        >>> u.tolist(), state
        ([-0.10000000149011612, 0.05000000074505806], (EmptyState(), EmptyState()))
    """
    transforms = tuple(transforms)

    def init_fn(params):
        return tuple(t.init(params) for t in transforms)

    def update_fn(updates, state, params=None):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            got = f"{len(state)} states" if isinstance(state, tuple) else type(state).__name__
            raise ValueError(
                f"chain: expected a tuple of {len(transforms)} states (one per transformation), "
                f"got {got}; was the state made by this chain's init?"
            )
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init_fn, update_fn)


def named_chain(*named: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Like ``chain``, but each member has a name and the state is keyed by it.

    The state is an ``OrderedDict`` ``{name: state}`` in chain order, so
    ``state["adam"]`` reaches one member's state, and ``tree_get(state["adam"], "mu")``
    a field in it.

    Args:
        *named: ``(name, transformation)`` pairs; names must be unique.

    Returns:
        A ``GradientTransformation`` whose state is an ``OrderedDict``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.named_chain(("clip", optim.clip_by_global_norm(1.0)),
        ...                         ("adam", optim.adam(1e-3)))
        >>> state = opt.init({"w": fnp.zeros(2)})
        >>> list(state), optim.tree_get(state["adam"], "count")
        (['clip', 'adam'], Array(0, dtype=int32))
    """
    names = [name for name, _ in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"named_chain: names must be unique, got {duplicates} more than once")

    def init_fn(params):
        return collections.OrderedDict((name, t.init(params)) for name, t in named)

    def update_fn(updates, state, params=None):
        missing = [n for n in names if n not in state]
        if missing:
            raise ValueError(
                f"named_chain: the state has no entry for {missing}; it has {list(state)}"
            )
        new_state = collections.OrderedDict()
        for name, t in named:
            updates, new_state[name] = t.update(updates, state[name], params)
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)


class PartitionState(NamedTuple):
    """State of ``multi_transform`` (alias ``partition``): ``{label: MaskedState}``."""

    inner_states: Mapping[Hashable, Any]


MultiTransformState = PartitionState  # optax's older name, kept as optax keeps it


def multi_transform(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Any | Callable[[Any], Any],
) -> GradientTransformation:
    """Applies a different transformation to each labelled part of the params.

    Each transformation runs ``masked`` to the leaves carrying its label; e.g.
    ``{"w": adam, "b": sgd}`` with labels ``{"dense": {"w": "w", "b": "b"}}``.
    Label ``set_to_zero()`` to freeze a part.

    Args:
        transforms: ``{label: transformation}``.
        param_labels: a pytree of labels with the params' structure (or a prefix
            of it), or a function ``params -> labels``.

    Returns:
        A ``GradientTransformation`` with state ``PartitionState`` (alias
        ``MultiTransformState``).

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.multi_transform({"fast": optim.sgd(1.0), "frozen": optim.set_to_zero()},
        ...                             {"w": "fast", "b": "frozen"})
        >>> g = {"w": fnp.asarray([1.0]), "b": fnp.asarray([1.0])}
        >>> u, _ = opt.update(g, opt.init(g), g)
        >>> u["w"].tolist(), u["b"].tolist()
        ([-1.0], [0.0])
    """
    transforms = dict(transforms)

    def labels_for(tree):
        labels = param_labels(tree) if callable(param_labels) else param_labels
        unknown = set(tree_util.tree_leaves(labels)) - set(transforms)
        if unknown:
            raise ValueError(
                f"multi_transform: labels {sorted(map(repr, unknown))} have no transformation; "
                f"transformations are given for {sorted(map(repr, transforms))}"
            )
        return labels

    def group(labels, label):
        return masked(transforms[label], tree_util.tree_map(lambda x: x == label, labels))

    def init_fn(params):
        labels = labels_for(params)
        return PartitionState({k: group(labels, k).init(params) for k in transforms})

    def update_fn(updates, state, params=None):
        labels = labels_for(updates)
        new_states = {}
        for k in transforms:
            updates, new_states[k] = group(labels, k).update(updates, state.inner_states[k], params)
        return updates, PartitionState(new_states)

    return GradientTransformation(init_fn, update_fn)


partition = multi_transform
