"""Read and change optimizer states by name instead of by position.

A chained optimizer's state is a nest of tuples and NamedTuples, and reaching a
field by position (``state[0].inner_state[1].mu``) breaks when the chain changes.
These functions search the state for a *name*: a dict key (e.g. a ``named_chain``
member), a NamedTuple field (``mu``, ``count``) or a NamedTuple's class name
(``ScaleByAdamState``).

* ``tree_get(state, "mu")`` returns the one value with that name; it is an error
  (``KeyError``) when there is none (unless a ``default`` is given) or more than
  one; the message lists where the name was found.
* ``tree_get_all_with_path(state, "mu")`` lists every match with its key path.
* ``tree_set(state, mu=...)`` returns a copy with every match replaced.
* ``get_hyperparam`` / ``set_hyperparam`` read and change a hyperparameter of an
  ``inject_hyperparams`` optimizer, wherever it sits in the state.

The search does not look inside a matching value (a matched ``mu`` holds a
params-shaped tree whose own keys are not searched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fgrad.numpy as fnp
from fgrad import tree as tree_util
from fgrad.optim.schedules import InjectHyperparamsState

__all__ = ["get_hyperparam", "set_hyperparam", "tree_get", "tree_get_all_with_path", "tree_set"]

KeyPath = tuple
Filtering = Callable[[KeyPath, Any], bool] | None

_NO_DEFAULT = object()
_MAX_NAMES_SHOWN = 30


class _StateKeyError(KeyError):
    """A ``KeyError`` whose message prints as written (KeyError quotes its text)."""

    def __str__(self) -> str:
        return str(self.args[0])


# ------------------------------------------------------------------ walking a pytree


def _children(node: Any) -> list[tuple[Any, Any]] | None:
    """``[(key, child), ...]`` of a pytree node, or None when ``node`` is a leaf."""
    pairs, _ = tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    if len(pairs) == 1 and pairs[0][0] == ():
        return None
    return [(path[0], child) for path, child in pairs]


def _rebuild(node: Any, children: list[Any]) -> Any:
    """``node`` with its children replaced (same node type and aux data)."""
    _, treedef = tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)
    return treedef.unflatten(children)


def _key_name(k: Any) -> Any:
    if isinstance(k, tree_util.DictKey):
        return k.key
    if isinstance(k, tree_util.GetAttrKey):
        return k.name
    return None


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _matches(k: Any, child: Any, key: Any) -> bool:
    name = _key_name(k)
    if name is not None and type(name) is type(key) and name == key:
        return True
    return _is_namedtuple(child) and type(child).__name__ == key


def _find(node: Any, key: Any, path: KeyPath, out: list) -> None:
    kids = _children(node)
    if kids is None:
        return
    for k, child in kids:
        child_path = (*path, k)
        if _matches(k, child, key):
            out.append((child_path, child))
        else:
            _find(child, key, child_path, out)


def _names(node: Any, out: set, budget: list) -> None:
    """Collects the dict keys, field names and NamedTuple names found in ``node``."""
    kids = _children(node)
    if kids is None or budget[0] <= 0:
        return
    budget[0] -= 1
    for k, child in kids:
        name = _key_name(k)
        if isinstance(name, str):
            out.add(name)
        if _is_namedtuple(child):
            out.add(type(child).__name__)
        _names(child, out, budget)


def _available(tree: Any) -> str:
    names: set = set()
    _names(tree, names, [10_000])
    shown = sorted(names)[:_MAX_NAMES_SHOWN]
    more = ", ..." if len(names) > _MAX_NAMES_SHOWN else ""
    return "[" + ", ".join(repr(n) for n in shown) + more + "]"


def _where(path: KeyPath) -> str:
    return tree_util.keystr(path) or "the root"


# ------------------------------------------------------------------ public lookups


def tree_get_all_with_path(
    tree: Any, key: Any, filtering: Filtering = None
) -> list[tuple[KeyPath, Any]]:
    """Every value named ``key`` in ``tree``, with its key path.

    Args:
        tree: an optimizer state (any pytree).
        key: a dict key, a NamedTuple field name or a NamedTuple class name.
        filtering: optional ``(path, value) -> bool`` keeping only some matches.

    Returns:
        A list of ``(path, value)`` in flattening order; format a path with
        ``fgrad.tree.keystr``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim, tree
        >>> state = optim.chain(optim.adam(0.1), optim.scale_by_schedule(lambda n: 1.0)).init(
        ...     fnp.zeros(1))
        >>> [tree.keystr(p) for p, _ in optim.tree_get_all_with_path(state, "count")]
        ['[0][0].count', '[1].count']
    """
    if _is_namedtuple(tree) and type(tree).__name__ == key:
        found = [((), tree)]
    else:
        found = []
        _find(tree, key, (), found)
    if filtering is not None:
        found = [(p, v) for p, v in found if filtering(p, v)]
    return found


def tree_get(tree: Any, key: Any, default: Any = _NO_DEFAULT, filtering: Filtering = None) -> Any:
    """The one value named ``key`` anywhere in ``tree`` (e.g. an optimizer state).

    Unlike optax's ``tree_get`` (which returns None when nothing matches), a
    missing name is an error unless ``default`` is given; a name found in several
    places is always an error, listing the paths; narrow it with ``filtering`` or
    by looking inside one part first (``tree_get(state["adam"], "mu")``).

    Args:
        tree: the pytree to search.
        key: a dict key, a NamedTuple field name or a NamedTuple class name.
        default: returned when nothing matches (if given).
        filtering: optional ``(path, value) -> bool`` keeping only some matches.

    Returns:
        The matching value.

    Raises:
        KeyError: no match (and no default), or more than one match.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(0.1))
        >>> state = opt.init({"w": fnp.zeros(2)})
        >>> optim.tree_get(state, "mu")
        {'w': Array([0., 0.], dtype=float32)}
        >>> optim.tree_get(state, "momentum", default=None) is None
        True
    """
    found = tree_get_all_with_path(tree, key, filtering)
    if len(found) == 1:
        return found[0][1]
    if not found:
        if default is not _NO_DEFAULT:
            return default
        filtered = " that passes `filtering`" if filtering is not None else ""
        raise _StateKeyError(
            f"tree_get: no entry named {key!r}{filtered} in the state; names present: "
            f"{_available(tree)}"
        )
    paths = ", ".join(_where(p) for p, _ in found)
    raise _StateKeyError(
        f"tree_get: {key!r} is ambiguous, found {len(found)} times: at {paths}. Look inside "
        f"one part first (e.g. tree_get(state['<name>'], {key!r}) with a named_chain) or "
        f"pass filtering=lambda path, value: ..."
    )


def tree_set(tree: Any, filtering: Filtering = None, /, **values: Any) -> Any:
    """A copy of ``tree`` with every entry named like a keyword replaced by its value.

    Args:
        tree: the pytree (e.g. an optimizer state).
        filtering: optional ``(path, value) -> bool`` restricting which matches
            are replaced.
        **values: ``name=new_value`` pairs.

    Returns:
        The new pytree; ``tree`` is unchanged.

    Raises:
        KeyError: a name matches nothing.

    Example:
        >>> import numpy as np, fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> state = optim.adam(0.1).init(fnp.zeros(1))
        >>> new = optim.tree_set(state, count=fnp.asarray(np.int32(5)))
        >>> int(optim.tree_get(new, "count")), int(optim.tree_get(state, "count"))
        (5, 0)
    """
    found: set = set()

    def replace(node, path):
        kids = _children(node)
        if kids is None:
            return node
        new_kids, changed = [], False
        for k, child in kids:
            child_path = (*path, k)
            name = next((n for n in values if _matches(k, child, n)), None)
            if name is not None and (filtering is None or filtering(child_path, child)):
                found.add(name)
                new_kids.append(values[name])
                changed = True
            else:
                new_child = replace(child, child_path)
                changed = changed or new_child is not child
                new_kids.append(new_child)
        return _rebuild(node, new_kids) if changed else node

    result = replace(tree, ())
    missing = [n for n in values if n not in found]
    if missing:
        raise _StateKeyError(
            f"tree_set: no entry named {missing} in the state; names present: {_available(tree)}"
        )
    return result


# ------------------------------------------------------------------ injected hyperparameters


def _inject_states(tree: Any, path: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    """Every ``InjectHyperparamsState`` in ``tree`` (not nested inside another)."""
    if isinstance(tree, InjectHyperparamsState):
        return [(path, tree)]
    kids = _children(tree)
    if kids is None:
        return []
    out = []
    for k, child in kids:
        out.extend(_inject_states(child, (*path, k)))
    return out


def _find_hyperparam(state: Any, name: str, caller: str) -> tuple[KeyPath, Any]:
    holders = _inject_states(state)
    if not holders:
        raise _StateKeyError(
            f"{caller}: the state holds no injected hyperparameters; build the optimizer with "
            f"optim.inject_hyperparams, e.g. optim.inject_hyperparams(optim.adam)"
            f"(learning_rate=1e-3)"
        )
    found = [(p, s) for p, s in holders if name in s.hyperparams]
    if not found:
        names = sorted({k for _, s in holders for k in s.hyperparams})
        raise _StateKeyError(f"{caller}: no hyperparameter {name!r}; injected ones: {names}")
    if len(found) > 1:
        paths = ", ".join(_where(p) for p, _ in found)
        raise _StateKeyError(
            f"{caller}: hyperparameter {name!r} is ambiguous, injected at {paths}; call "
            f"{caller} on the part of the state you mean (e.g. state['<name>'])"
        )
    return found[0]


def get_hyperparam(state: Any, name: str) -> Any:
    """The current value of an injected hyperparameter, wherever it is in the state.

    For a scheduled hyperparameter this is the value the last update used (after
    ``init``: the value the first update will use).

    Args:
        state: the state of an optimizer that contains an ``inject_hyperparams``
            optimizer (possibly inside a chain, a mask, ...).
        name: the hyperparameter, e.g. ``"learning_rate"``.

    Returns:
        A scalar array.

    Raises:
        KeyError: no injected hyperparameter of that name, or several.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.chain(optim.clip(1.0), optim.inject_hyperparams(optim.adam)(0.01))
        >>> state = opt.init(fnp.zeros(2))
        >>> round(float(optim.get_hyperparam(state, "learning_rate")), 6)
        0.01
    """
    _, holder = _find_hyperparam(state, name, "get_hyperparam")
    return holder.hyperparams[name]


def set_hyperparam(state: Any, name: str, value: Any) -> Any:
    """A copy of ``state`` with an injected hyperparameter set to ``value``.

    The value keeps the stored dtype and shape, so a jitted step that takes the
    state is not retraced. The next ``update`` uses it.

    Args:
        state: the optimizer state (see ``get_hyperparam``).
        name: the hyperparameter, e.g. ``"learning_rate"``.
        value: the new value (a Python number or a scalar array).

    Returns:
        The new state; ``state`` is unchanged.

    Raises:
        KeyError: no injected hyperparameter of that name, or several.
        ValueError: the hyperparameter follows a schedule (the schedule would
            overwrite it at the next step), or the shape differs.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import optim
        >>> opt = optim.inject_hyperparams(optim.sgd)(learning_rate=0.1, momentum=0.9)
        >>> state = optim.set_hyperparam(opt.init(fnp.zeros(2)), "momentum", 0.5)
        >>> float(optim.get_hyperparam(state, "momentum"))
        0.5
    """
    path, holder = _find_hyperparam(state, name, "set_hyperparam")
    if name in holder.hyperparams_states:
        raise ValueError(
            f"set_hyperparam: {name!r} follows a schedule, which recomputes it every step; "
            f"pass a constant to inject_hyperparams to be able to set it"
        )
    old = holder.hyperparams[name]
    # A Python number goes straight to the stored dtype (no detour through float32).
    new = (
        fnp.asarray(value, dtype=old.dtype)
        if isinstance(value, int | float)
        else fnp.asarray(value)
    )
    if tuple(new.shape) != tuple(old.shape):
        raise ValueError(
            f"set_hyperparam: {name!r} has shape {tuple(old.shape)}, got a value of shape "
            f"{tuple(new.shape)}"
        )
    if new.dtype != old.dtype:
        new = new.astype(old.dtype)
    new_holder = holder._replace(hyperparams={**holder.hyperparams, name: new})
    return _replace_at(state, path, new_holder)


def _replace_at(tree: Any, path: KeyPath, value: Any) -> Any:
    """``tree`` with the subtree at ``path`` replaced by ``value``."""
    if not path:
        return value
    kids = _children(tree)
    new_kids = [_replace_at(child, path[1:], value) if k == path[0] else child for k, child in kids]
    return _rebuild(tree, new_kids)
