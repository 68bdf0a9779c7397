"""Pytrees: nested containers of arrays, flattened to leaves and a structure.

A pytree is a value built from *nodes* (containers fgrad knows how to open) and
*leaves* (everything else: arrays, Python scalars, strings, arbitrary objects).
``tree_flatten`` turns a pytree into a flat list of leaves plus a ``PyTreeDef``
that records the structure; ``tree_unflatten`` puts them back together. Every
transformation (``grad``, ``vmap``, ``jit``) works on flat lists of arrays and
uses these two functions at its boundary, so both are written for speed.

Built-in nodes, as in JAX:

* ``dict``: children in sorted-key order; rebuilt as a dict with sorted keys.
* ``collections.OrderedDict``: insertion order kept.
* ``collections.defaultdict``: sorted keys; ``default_factory`` kept as aux data.
* ``list``, ``tuple`` and namedtuples (any tuple subclass with ``_fields``).
* ``None``: a node with no children, so ``tree_leaves(None) == []``.

Node types are found by exact ``type(x)`` in a dict (subclasses of ``dict`` or
``list`` are leaves unless registered). More types can be added with
``register_pytree_node`` and ``register_dataclass``.

Internally a ``PyTreeDef`` wraps a *spec*: ``_LEAF`` for a leaf, or the nested
tuple ``(node_type, aux_data, child_specs)`` for a node. Plain tuples make
``==`` and ``hash`` run in C, which matters because treedefs are ``jit`` cache
keys.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import functools
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "DictKey",
    "FlattenedIndexKey",
    "GetAttrKey",
    "KeyEntry",
    "KeyPath",
    "PyTreeDef",
    "SequenceKey",
    "all",
    "flatten",
    "flatten_with_path",
    "keystr",
    "leaves",
    "leaves_with_path",
    "map",
    "map_with_path",
    "reduce",
    "register_dataclass",
    "register_pytree_node",
    "structure",
    "transpose",
    "tree_all",
    "tree_flatten",
    "tree_flatten_with_path",
    "tree_leaves",
    "tree_leaves_with_path",
    "tree_map",
    "tree_map_with_path",
    "tree_reduce",
    "tree_structure",
    "tree_transpose",
    "tree_unflatten",
    "unflatten",
]

PyTree = Any
IsLeaf = Callable[[Any], bool] | None

_NoneType = type(None)

# The spec of a leaf. Any hashable constant distinct from a node tuple works;
# a short string makes raw specs readable in a debugger.
_LEAF = "*"


# --------------------------------------------------------------------------- keys


@dataclasses.dataclass(frozen=True, slots=True)
class SequenceKey:
    """Key of a list/tuple element; prints as ``[0]``."""

    idx: int

    def __str__(self) -> str:
        return f"[{self.idx!r}]"


@dataclasses.dataclass(frozen=True, slots=True)
class DictKey:
    """Key of a dict entry; prints as ``['name']``."""

    key: Hashable

    def __str__(self) -> str:
        return f"[{self.key!r}]"


@dataclasses.dataclass(frozen=True, slots=True)
class GetAttrKey:
    """Key of an attribute (namedtuple or dataclass field); prints as ``.name``."""

    name: str

    def __str__(self) -> str:
        return f".{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class FlattenedIndexKey:
    """Key of the i-th child of a node registered without key names."""

    key: int

    def __str__(self) -> str:
        return f"[<flat index {self.key}>]"


KeyEntry = SequenceKey | DictKey | GetAttrKey | FlattenedIndexKey
KeyPath = tuple[KeyEntry, ...]


def keystr(path: Sequence[Any], *, simple: bool = False, separator: str = "") -> str:
    """Formats a key path the way JAX does, e.g. ``['params']['w']`` or ``[0].x``.

    Args:
        path: a key path, as produced by ``tree_flatten_with_path``.
        simple: if True, print bare keys (``params``, ``0``, ``x``) without
            brackets, quotes or dots.
        separator: string placed between the keys.

    Returns:
        The formatted path; the empty string for the root.

    Example:
        >>> keystr((DictKey("params"), DictKey("w"), SequenceKey(0)))
        "['params']['w'][0]"
        >>> keystr((DictKey("params"), GetAttrKey("w")), simple=True, separator="/")
        'params/w'
    """
    if simple:
        return separator.join(_simple_key(k) for k in path)
    return separator.join(str(k) for k in path)


def _simple_key(k: Any) -> str:
    if isinstance(k, SequenceKey):
        return str(k.idx)
    if isinstance(k, DictKey):
        return str(k.key)
    if isinstance(k, GetAttrKey):
        return k.name
    if isinstance(k, FlattenedIndexKey):
        return str(k.key)
    return str(k)


# ----------------------------------------------------------------------- registry


class _NodeKind(NamedTuple):
    """How to open and rebuild one node type.

    ``flatten(x) -> (children, aux)``, ``unflatten(aux, children) -> x``,
    ``flatten_with_keys(x) -> (((key, child), ...), aux)``, and
    ``format(node_type, aux, child_strs) -> str`` for ``PyTreeDef.__repr__``.
    """

    flatten: Callable[[Any], tuple[Iterable[Any], Any]]
    unflatten: Callable[[Any, list[Any]], Any]
    flatten_with_keys: Callable[[Any], tuple[Iterable[tuple[Any, Any]], Any]]
    format: Callable[[type, Any, list[str]], str]


# node type -> _NodeKind. The one piece of module-level mutable state: filled
# below with the built-in containers and by the register_* functions.
_REGISTRY: dict[type, _NodeKind] = {}


def _sorted_keys(d: dict) -> list:
    """Keys of ``d`` in JAX's order: sorted, or by (type name, repr) if mixed."""
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=lambda k: (type(k).__qualname__, repr(k)))


def _format_dict_items(keys: Sequence[Any], child_strs: list[str]) -> str:
    return "{" + ", ".join(f"{k!r}: {s}" for k, s in zip(keys, child_strs)) + "}"


def _format_seq(open_: str, close: str, child_strs: list[str]) -> str:
    return open_ + ", ".join(child_strs) + close


def _register_builtins() -> None:
    _REGISTRY[_NoneType] = _NodeKind(
        flatten=lambda x: ((), None),
        unflatten=lambda aux, children: None,
        flatten_with_keys=lambda x: ((), None),
        format=lambda t, aux, strs: "None",
    )
    _REGISTRY[tuple] = _NodeKind(
        flatten=lambda x: (x, None),
        unflatten=lambda aux, children: tuple(children),
        flatten_with_keys=lambda x: (
            [(SequenceKey(i), c) for i, c in enumerate(x)],
            None,
        ),
        format=lambda t, aux, strs: (
            "(" + strs[0] + ",)" if len(strs) == 1 else _format_seq("(", ")", strs)
        ),
    )
    _REGISTRY[list] = _NodeKind(
        flatten=lambda x: (x, None),
        unflatten=lambda aux, children: list(children),
        flatten_with_keys=lambda x: (
            [(SequenceKey(i), c) for i, c in enumerate(x)],
            None,
        ),
        format=lambda t, aux, strs: _format_seq("[", "]", strs),
    )

    def dict_flatten(x):
        keys = tuple(_sorted_keys(x))
        return [x[k] for k in keys], keys

    def dict_flatten_with_keys(x):
        keys = tuple(_sorted_keys(x))
        return [(DictKey(k), x[k]) for k in keys], keys

    _REGISTRY[dict] = _NodeKind(
        flatten=dict_flatten,
        unflatten=lambda keys, children: dict(zip(keys, children)),
        flatten_with_keys=dict_flatten_with_keys,
        format=lambda t, keys, strs: _format_dict_items(keys, strs),
    )

    def odict_flatten(x):
        keys = tuple(x)
        return [x[k] for k in keys], keys

    def odict_flatten_with_keys(x):
        keys = tuple(x)
        return [(DictKey(k), x[k]) for k in keys], keys

    _REGISTRY[collections.OrderedDict] = _NodeKind(
        flatten=odict_flatten,
        unflatten=lambda keys, children: collections.OrderedDict(zip(keys, children)),
        flatten_with_keys=odict_flatten_with_keys,
        format=lambda t, keys, strs: "OrderedDict(" + _format_dict_items(keys, strs) + ")",
    )

    # aux = (default_factory, sorted keys)
    def ddict_flatten(x):
        keys = tuple(_sorted_keys(x))
        return [x[k] for k in keys], (x.default_factory, keys)

    def ddict_flatten_with_keys(x):
        keys = tuple(_sorted_keys(x))
        return [(DictKey(k), x[k]) for k in keys], (x.default_factory, keys)

    _REGISTRY[collections.defaultdict] = _NodeKind(
        flatten=ddict_flatten,
        unflatten=lambda aux, children: collections.defaultdict(aux[0], zip(aux[1], children)),
        flatten_with_keys=ddict_flatten_with_keys,
        format=lambda t, aux, strs: (
            f"defaultdict({aux[0]!r}, " + _format_dict_items(aux[1], strs) + ")"
        ),
    )


_register_builtins()


def _is_namedtuple_type(t: type) -> bool:
    return issubclass(t, tuple) and hasattr(t, "_fields")


_NAMEDTUPLE_KIND = _NodeKind(
    flatten=lambda x: (x, None),
    unflatten=None,  # type: ignore[arg-type]  # rebuilt as node_type(*children)
    flatten_with_keys=lambda x: (
        [(GetAttrKey(name), c) for name, c in zip(x._fields, x)],
        None,
    ),
    format=lambda t, aux, strs: (
        t.__name__ + "(" + ", ".join(f"{n}={s}" for n, s in zip(t._fields, strs)) + ")"
    ),
)


def _kind_of(t: type) -> _NodeKind | None:
    """The node kind of type ``t``, or None if values of type ``t`` are leaves."""
    kind = _REGISTRY.get(t)
    if kind is None and _is_namedtuple_type(t):
        return _NAMEDTUPLE_KIND
    return kind


def _format_custom(t: type, aux: Any, strs: list[str]) -> str:
    return f"CustomNode({t.__name__}[{aux!r}], [{', '.join(strs)}])"


def register_pytree_node(
    nodetype: type,
    flatten_func: Callable[[Any], tuple[Iterable[Any], Any]],
    unflatten_func: Callable[[Any, Iterable[Any]], Any],
    flatten_with_keys_func: Callable[[Any], tuple[Iterable[tuple[Any, Any]], Any]] | None = None,
) -> None:
    """Registers ``nodetype`` as a pytree node, so its children become subtrees.

    Args:
        nodetype: the class to register (matched exactly; subclasses are not
            included).
        flatten_func: ``x -> (children, aux_data)``. ``aux_data`` is static
            structure: it is part of the ``PyTreeDef`` and must be hashable
            and comparable with ``==`` for the treedef to be a cache key.
        unflatten_func: ``(aux_data, children) -> x``.
        flatten_with_keys_func: optional ``x -> (((key, child), ...), aux_data)``
            giving the key of each child for the ``*_with_path`` functions; by
            default the i-th child has key ``FlattenedIndexKey(i)``.

    Returns:
        None.

    Raises:
        ValueError: if ``nodetype`` is already registered.

    Example:
        >>> class Pair:
        ...     def __init__(self, a, b):
        ...         self.a, self.b = a, b
        >>> register_pytree_node(
        ...     Pair, lambda p: ((p.a, p.b), None), lambda aux, ch: Pair(*ch)
        ... )
        >>> tree_leaves([Pair(1, 2), 3])
        [1, 2, 3]
    """
    if nodetype in _REGISTRY:
        raise ValueError(f"pytree node type {nodetype.__qualname__} is already registered")
    if flatten_with_keys_func is None:

        def flatten_with_keys_func(x):
            children, aux = flatten_func(x)
            return [(FlattenedIndexKey(i), c) for i, c in enumerate(children)], aux

    _REGISTRY[nodetype] = _NodeKind(
        flatten=flatten_func,
        unflatten=unflatten_func,
        flatten_with_keys=flatten_with_keys_func,
        format=_format_custom,
    )


def register_dataclass(
    nodetype: type | None = None,
    data_fields: Sequence[str] | None = None,
    meta_fields: Sequence[str] | None = None,
) -> Any:
    """Registers a dataclass as a pytree node: data fields are children, meta fields static.

    Meta field values are part of the ``PyTreeDef`` (so they must be hashable);
    two instances with different meta values have different structures. As in
    JAX, instances are rebuilt by calling the constructor with every field as a
    keyword, so the fields named must be exactly the ``__init__`` fields.

    Args:
        nodetype: the class; omit it to use ``register_dataclass(...)`` as a
            decorator factory, or use ``@register_dataclass`` bare.
        data_fields: names of the fields holding subtrees. If both field lists
            are None they are inferred from ``dataclasses.fields``: fields whose
            metadata has ``"static": True`` are meta, the other ``init`` fields
            are data. If only one is given, the other is the remaining fields.
        meta_fields: names of the static fields.

    Returns:
        ``nodetype`` itself (or a decorator when ``nodetype`` is None).

    Raises:
        TypeError: fields are to be inferred but ``nodetype`` is not a dataclass.
        ValueError: a field is listed twice, or the lists are not exactly the
            dataclass's ``__init__`` fields.

    Example:
        >>> @register_dataclass
        ... @dataclasses.dataclass
        ... class Linear:
        ...     w: Any
        ...     b: Any
        ...     act: str = dataclasses.field(default="relu", metadata={"static": True})
        >>> tree_leaves(Linear(1.0, 2.0))
        [1.0, 2.0]
        >>> tree_structure(Linear(1.0, 2.0))
        PyTreeDef(Linear(w=*, b=*, act='relu'))
    """
    if nodetype is None:
        return functools.partial(
            register_dataclass, data_fields=data_fields, meta_fields=meta_fields
        )
    is_dc = dataclasses.is_dataclass(nodetype)
    init_fields = [f for f in dataclasses.fields(nodetype) if f.init] if is_dc else []
    if data_fields is None or meta_fields is None:
        if not is_dc:
            raise TypeError(
                f"register_dataclass: {nodetype.__qualname__} is not a dataclass; "
                "pass both data_fields and meta_fields"
            )
        if data_fields is None and meta_fields is None:
            meta_fields = [f.name for f in init_fields if f.metadata.get("static")]
        if data_fields is None:
            data_fields = [f.name for f in init_fields if f.name not in meta_fields]
        else:
            meta_fields = [f.name for f in init_fields if f.name not in data_fields]
    data_fields, meta_fields = tuple(data_fields), tuple(meta_fields)
    both = data_fields + meta_fields
    if len(set(both)) != len(both):
        raise ValueError(
            f"register_dataclass: a field is listed twice in data_fields={data_fields} "
            f"and meta_fields={meta_fields}"
        )
    if is_dc:
        expected = {f.name for f in init_fields}
        if set(both) != expected:
            raise ValueError(
                f"register_dataclass: data_fields + meta_fields must be exactly the "
                f"__init__ fields of {nodetype.__qualname__}: missing "
                f"{sorted(expected - set(both))}, unknown {sorted(set(both) - expected)}"
            )

    def flatten_func(x):
        return [getattr(x, n) for n in data_fields], tuple(getattr(x, n) for n in meta_fields)

    def flatten_with_keys_func(x):
        return [(GetAttrKey(n), getattr(x, n)) for n in data_fields], tuple(
            getattr(x, n) for n in meta_fields
        )

    def unflatten_func(meta, children):
        return nodetype(**dict(zip(data_fields, children)), **dict(zip(meta_fields, meta)))

    def format_func(t, meta, strs):
        parts = [f"{n}={s}" for n, s in zip(data_fields, strs)]
        parts += [f"{n}={v!r}" for n, v in zip(meta_fields, meta)]
        return f"{t.__name__}({', '.join(parts)})"

    register_pytree_node(nodetype, flatten_func, unflatten_func, flatten_with_keys_func)
    _REGISTRY[nodetype] = _REGISTRY[nodetype]._replace(format=format_func)
    return nodetype


# ------------------------------------------------------------------------ PyTreeDef


class PyTreeDef:
    """The structure of a pytree: node types, aux data and arrangement, without leaves.

    Immutable, hashable and ``==``-comparable: two treedefs are equal iff they
    have the same node types, the same aux data (dict keys, meta fields, ...)
    and the same shape. The hash is computed once, at construction.

    Example:
        >>> leaves, treedef = tree_flatten({"a": 1, "b": [2, 3]})
        >>> treedef
        PyTreeDef({'a': *, 'b': [*, *]})
        >>> treedef.num_leaves, treedef.num_nodes
        (3, 5)
        >>> treedef.unflatten([10, 20, 30])
        {'a': 10, 'b': [20, 30]}
        >>> treedef == tree_structure({"b": [0, 0], "a": 0})
        True
    """

    __slots__ = ("_hash", "_num_leaves", "_spec")

    def __init__(self, spec: Any, num_leaves: int | None = None) -> None:
        # Internal: users get treedefs from tree_flatten / tree_structure.
        if num_leaves is None:
            num_leaves = _count_leaves(spec)
        try:
            h = hash(spec)
        except TypeError:
            h = None  # unhashable aux data: equality still works, __hash__ raises
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_num_leaves", num_leaves)
        object.__setattr__(self, "_hash", h)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PyTreeDef is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("PyTreeDef is immutable")

    def __reduce__(self):
        return (PyTreeDef, (self._spec, self._num_leaves))

    def __hash__(self) -> int:
        if self._hash is None:
            hash(self._spec)  # raises the TypeError naming the unhashable aux data
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, PyTreeDef):
            return NotImplemented
        if self._hash != other._hash or self._num_leaves != other._num_leaves:
            return False
        return self._spec == other._spec

    def __repr__(self) -> str:
        return f"PyTreeDef({_format_spec(self._spec)})"

    @property
    def num_leaves(self) -> int:
        """Number of leaves in the structure."""
        return self._num_leaves

    @property
    def num_nodes(self) -> int:
        """Number of nodes, counting leaves and ``None`` as nodes (as JAX does)."""
        return _count_nodes(self._spec)

    def children(self) -> list[PyTreeDef]:
        """Treedefs of the root's direct children (empty for a leaf or ``None``)."""
        if self._spec is _LEAF:
            return []
        return [PyTreeDef(c) for c in self._spec[2]]

    def node_data(self) -> tuple[type, Any] | None:
        """``(node_type, aux_data)`` of the root, or None for a leaf."""
        if self._spec is _LEAF:
            return None
        return self._spec[0], self._spec[1]

    def unflatten(self, leaves: Iterable[Any]) -> PyTree:
        """Builds a pytree with this structure from ``leaves`` (see ``tree_unflatten``)."""
        if not isinstance(leaves, (list, tuple)):
            leaves = list(leaves)
        if len(leaves) != self._num_leaves:
            raise ValueError(
                f"tree_unflatten: the treedef expects {self._num_leaves} leaves, "
                f"got {len(leaves)}; treedef: {self!r}"
            )
        return _unflatten(self._spec, iter(leaves))

    def flatten_up_to(self, tree: PyTree) -> list[Any]:
        """Flattens ``tree`` down to this structure, which must be a prefix of it.

        Each leaf of this treedef picks out the whole corresponding subtree of
        ``tree``. This is how ``tree_map`` pairs up several trees and how
        ``vmap``'s ``in_axes`` prefixes are matched.

        Args:
            tree: a pytree whose structure starts with this one.

        Returns:
            A list of ``num_leaves`` subtrees of ``tree``.

        Raises:
            ValueError: the structures differ; the message names the first
                differing key path and both sides.

        Example:
            >>> tree_structure((0, 0)).flatten_up_to(([1, 2], {"a": 3}))
            [[1, 2], {'a': 3}]
        """
        out: list[Any] = []
        try:
            _flatten_up_to(self._spec, tree, out)
        except _Mismatch as e:
            raise ValueError(e.message(tree_index=None)) from None
        return out


def _count_leaves(spec: Any) -> int:
    if spec is _LEAF:
        return 1
    return builtins.sum(_count_leaves(c) for c in spec[2])


def _count_nodes(spec: Any) -> int:
    if spec is _LEAF:
        return 1
    return 1 + builtins.sum(_count_nodes(c) for c in spec[2])


def _format_spec(spec: Any) -> str:
    if spec is _LEAF:
        return "*"
    node_type, aux, children = spec
    kind = _kind_of(node_type)
    strs = [_format_spec(c) for c in children]
    if kind is None:  # only for treedefs unpickled after their type was unregistered
        return _format_custom(node_type, aux, strs)
    return kind.format(node_type, aux, strs)


# ------------------------------------------------------------------- flatten core


def _flatten(x: Any, is_leaf: IsLeaf, leaves: list) -> Any:
    """Appends the leaves of ``x`` to ``leaves`` and returns its spec."""
    if is_leaf is not None and is_leaf(x):
        leaves.append(x)
        return _LEAF
    t = type(x)
    # Hot paths first: dict, list and tuple are most of every real tree.
    if t is dict:
        keys = tuple(_sorted_keys(x))
        return (dict, keys, tuple([_flatten(x[k], is_leaf, leaves) for k in keys]))
    if t is list or t is tuple:
        return (t, None, tuple([_flatten(c, is_leaf, leaves) for c in x]))
    kind = _REGISTRY.get(t)
    if kind is None:
        if not (issubclass(t, tuple) and hasattr(t, "_fields")):
            leaves.append(x)
            return _LEAF
        kind = _NAMEDTUPLE_KIND
    children, aux = kind.flatten(x)
    return (t, aux, tuple([_flatten(c, is_leaf, leaves) for c in children]))


def _leaves(x: Any, is_leaf: IsLeaf, leaves: list) -> None:
    """Like ``_flatten`` but only collects leaves (no spec is built)."""
    if is_leaf is not None and is_leaf(x):
        leaves.append(x)
        return
    t = type(x)
    if t is dict:
        for k in _sorted_keys(x):
            _leaves(x[k], is_leaf, leaves)
        return
    if t is list or t is tuple:
        for c in x:
            _leaves(c, is_leaf, leaves)
        return
    kind = _REGISTRY.get(t)
    if kind is None:
        if not (issubclass(t, tuple) and hasattr(t, "_fields")):
            leaves.append(x)
            return
        kind = _NAMEDTUPLE_KIND
    for c in kind.flatten(x)[0]:
        _leaves(c, is_leaf, leaves)


def _unflatten(spec: Any, leaves: Any) -> Any:
    """Rebuilds the tree of ``spec``, taking leaves from the iterator ``leaves``."""
    if spec is _LEAF:
        return next(leaves)
    node_type, aux, child_specs = spec
    children = [_unflatten(c, leaves) for c in child_specs]
    if node_type is dict:
        return dict(zip(aux, children))
    if node_type is list:
        return children
    if node_type is tuple:
        return tuple(children)
    kind = _REGISTRY.get(node_type)
    if kind is None:  # namedtuple
        return node_type(*children)
    return kind.unflatten(aux, children)


def _flatten_with_path(x: Any, is_leaf: IsLeaf, path: tuple, out: list[tuple[KeyPath, Any]]) -> Any:
    """Appends ``(key_path, leaf)`` pairs of ``x`` to ``out`` and returns its spec."""
    if is_leaf is not None and is_leaf(x):
        out.append((path, x))
        return _LEAF
    t = type(x)
    kind = _kind_of(t)
    if kind is None:
        out.append((path, x))
        return _LEAF
    keyed_children, aux = kind.flatten_with_keys(x)
    return (
        t,
        aux,
        tuple([_flatten_with_path(c, is_leaf, (*path, k), out) for k, c in keyed_children]),
    )


# ----------------------------------------------------- structure mismatch errors


class _Mismatch(Exception):
    """Raised inside ``_flatten_up_to``; collects the key path on the way out."""

    def __init__(self, expected: str, got: str, detail: str = "") -> None:
        super().__init__(expected, got, detail)
        self.expected, self.got, self.detail = expected, got, detail
        self.rev_path: list[Any] = []

    def message(self, tree_index: int | None) -> str:
        where = keystr(self.rev_path[::-1]) or "the root"
        if tree_index is None:
            sides = f"expected {self.expected}, got {self.got}"
        else:
            sides = f"tree 0 has {self.expected}, tree {tree_index} has {self.got}"
        detail = f" ({self.detail})" if self.detail else ""
        return f"pytree structures differ at {where}: {sides}{detail}"


_MAX_KEYS_SHOWN = 8


def _keys_str(keys: Sequence[Any]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_MAX_KEYS_SHOWN])
    more = f", ... ({len(keys)} keys)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"[{shown}{more}]"


def _describe_node(node_type: type, aux: Any, num_children: int) -> str:
    """A short description of one node, e.g. "dict with keys ['a', 'b']"."""
    if node_type is _NoneType:
        return "None"
    if node_type is dict or node_type is collections.OrderedDict:
        return f"{node_type.__name__} with keys {_keys_str(aux)}"
    if node_type is collections.defaultdict:
        return f"defaultdict with keys {_keys_str(aux[1])}"
    if node_type is list or node_type is tuple:
        return f"{node_type.__name__} of length {num_children}"
    if _REGISTRY.get(node_type) is None:  # namedtuple
        return f"namedtuple {node_type.__name__}"
    return f"{node_type.__name__} node with {num_children} children and aux data {aux!r}"


def _describe_value(x: Any) -> str:
    kind = _kind_of(type(x))
    if kind is None:
        return f"leaf of type {type(x).__name__}"
    children, aux = kind.flatten(x)
    return _describe_node(type(x), aux, len(list(children)))


def _key_diff(expected_keys: Sequence[Any], got_keys: Sequence[Any]) -> str:
    expected_set, got_set = set(expected_keys), set(got_keys)
    missing = [k for k in expected_keys if k not in got_set]
    extra = [k for k in got_keys if k not in expected_set]
    parts = []
    if missing:
        parts.append(f"missing keys {_keys_str(missing)}")
    if extra:
        parts.append(f"extra keys {_keys_str(extra)}")
    return ", ".join(parts) or "same keys in a different order"


def _child_key(x: Any, i: int) -> Any:
    """The key of child ``i`` of node ``x`` (only used to build error messages)."""
    return list(_kind_of(type(x)).flatten_with_keys(x)[0])[i][0]


def _flatten_up_to(spec: Any, x: Any, out: list) -> None:
    """Appends the subtrees of ``x`` at the leaves of ``spec`` to ``out``."""
    if spec is _LEAF:
        out.append(x)
        return
    node_type, aux, child_specs = spec
    t = type(x)
    if t is not node_type:
        raise _Mismatch(_describe_node(node_type, aux, len(child_specs)), _describe_value(x))
    if t is list or t is tuple:
        children, x_aux = x, None
    else:
        kind = _REGISTRY.get(t) or _NAMEDTUPLE_KIND
        children, x_aux = kind.flatten(x)
        children = list(children)
    if len(children) != len(child_specs) or x_aux != aux:
        detail = ""
        if node_type is dict or node_type is collections.OrderedDict:
            detail = _key_diff(aux, x_aux)
        elif node_type is collections.defaultdict:
            detail = _key_diff(aux[1], x_aux[1])
        raise _Mismatch(
            _describe_node(node_type, aux, len(child_specs)),
            _describe_node(t, x_aux, len(children)),
            detail,
        )
    for i, (child_spec, child) in enumerate(zip(child_specs, children)):
        try:
            _flatten_up_to(child_spec, child, out)
        except _Mismatch as e:  # free unless raised (zero-cost try in 3.11)
            e.rev_path.append(_child_key(x, i))
            raise


# -------------------------------------------------------------------- public API


def tree_flatten(tree: PyTree, is_leaf: IsLeaf = None) -> tuple[list[Any], PyTreeDef]:
    """Flattens a pytree into a list of leaves and the structure needed to rebuild it.

    Args:
        tree: the pytree to flatten.
        is_leaf: optional predicate, called on every subtree before its type is
            looked up; subtrees for which it returns True are treated as leaves
            (e.g. ``lambda x: x is None`` makes ``None`` a leaf).

    Returns:
        ``(leaves, treedef)``: the leaves in order (dict children in sorted-key
        order) and a ``PyTreeDef``.

    Example:
        >>> leaves, treedef = tree_flatten({"b": (2, None), "a": 1})
        >>> leaves
        [1, 2]
        >>> treedef
        PyTreeDef({'a': *, 'b': (*, None)})
    """
    leaves: list[Any] = []
    spec = _flatten(tree, is_leaf, leaves)
    return leaves, PyTreeDef(spec, len(leaves))


def tree_unflatten(treedef: PyTreeDef, leaves: Iterable[Any]) -> PyTree:
    """Builds a pytree with structure ``treedef`` from a sequence of leaves.

    Args:
        treedef: the structure, from ``tree_flatten`` or ``tree_structure``.
        leaves: exactly ``treedef.num_leaves`` values, in flattening order.

    Returns:
        The rebuilt pytree. Dicts come back with sorted keys, as in JAX.

    Raises:
        ValueError: the number of leaves is not ``treedef.num_leaves``.

    Example:
        >>> _, treedef = tree_flatten([1, {"x": 2}])
        >>> tree_unflatten(treedef, ["a", "b"])
        ['a', {'x': 'b'}]
    """
    return treedef.unflatten(leaves)


def tree_leaves(tree: PyTree, is_leaf: IsLeaf = None) -> list[Any]:
    """Returns the leaves of a pytree, in flattening order.

    Args:
        tree: the pytree.
        is_leaf: optional predicate marking extra subtrees as leaves.

    Returns:
        A list of leaves.

    Example:
        >>> tree_leaves({"w": [1, 2], "b": 3, "skip": None})
        [3, 1, 2]
    """
    leaves: list[Any] = []
    _leaves(tree, is_leaf, leaves)
    return leaves


def tree_structure(tree: PyTree, is_leaf: IsLeaf = None) -> PyTreeDef:
    """Returns the ``PyTreeDef`` of a pytree.

    Args:
        tree: the pytree.
        is_leaf: optional predicate marking extra subtrees as leaves.

    Returns:
        The treedef (the second result of ``tree_flatten``).

    Example:
        >>> tree_structure((1, [2, 3]))
        PyTreeDef((*, [*, *]))
    """
    return tree_flatten(tree, is_leaf)[1]


def tree_map(f: Callable[..., Any], tree: PyTree, *rest: PyTree, is_leaf: IsLeaf = None) -> PyTree:
    """Applies ``f`` to every leaf of ``tree`` (and matching parts of ``rest``).

    ``tree`` fixes the structure: for each of its leaves, ``f`` receives that
    leaf followed by the subtree at the same position in each tree of ``rest``
    (usually leaves too, as the trees usually have the same structure).

    Args:
        f: function of ``1 + len(rest)`` arguments.
        tree: the pytree whose structure the result has.
        *rest: more pytrees, each having ``tree``'s structure as a prefix.
        is_leaf: optional predicate marking extra subtrees of ``tree`` as leaves.

    Returns:
        A pytree with ``tree``'s structure holding ``f``'s results.

    Raises:
        ValueError: a tree of ``rest`` has a different structure; the message
            names the first differing key path and describes both sides.

    Example:
        >>> tree_map(lambda x, y: x + y, {"a": 1, "b": [2, 3]}, {"a": 10, "b": [20, 30]})
        {'a': 11, 'b': [22, 33]}
        >>> tree_map(lambda x: x * 2, None) is None
        True
    """
    leaves, treedef = tree_flatten(tree, is_leaf)
    if not rest:
        return treedef.unflatten([f(x) for x in leaves])
    others = [_flatten_other_up_to(treedef, r, i) for i, r in enumerate(rest, 1)]
    return treedef.unflatten([f(*xs) for xs in zip(leaves, *others)])


def _flatten_other_up_to(treedef: PyTreeDef, other: PyTree, index: int) -> list[Any]:
    out: list[Any] = []
    try:
        _flatten_up_to(treedef._spec, other, out)
    except _Mismatch as e:
        raise ValueError(f"{e.message(tree_index=index)} (at {_caller_line()})") from None
    return out


def _caller_line() -> str:
    """``file:line`` of the innermost frame outside the fgrad package (for errors).

    The same walk as ``core.user_frame``, repeated here because ``tree`` imports
    nothing from the rest of fgrad.
    """
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(package) and not name.startswith("<frozen"):
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def tree_flatten_with_path(
    tree: PyTree, is_leaf: IsLeaf = None
) -> tuple[list[tuple[KeyPath, Any]], PyTreeDef]:
    """Flattens a pytree, pairing each leaf with its key path.

    Args:
        tree: the pytree.
        is_leaf: optional predicate marking extra subtrees as leaves.

    Returns:
        ``(pairs, treedef)`` where ``pairs`` is a list of ``(key_path, leaf)``
        and a key path is a tuple of ``DictKey``/``SequenceKey``/``GetAttrKey``/
        ``FlattenedIndexKey`` (format it with ``keystr``).

    Example:
        >>> pairs, _ = tree_flatten_with_path({"params": {"w": 1}, "xs": [2]})
        >>> [(keystr(p), x) for p, x in pairs]
        [("['params']['w']", 1), ("['xs'][0]", 2)]
    """
    pairs: list[tuple[KeyPath, Any]] = []
    spec = _flatten_with_path(tree, is_leaf, (), pairs)
    return pairs, PyTreeDef(spec, len(pairs))


def tree_leaves_with_path(tree: PyTree, is_leaf: IsLeaf = None) -> list[tuple[KeyPath, Any]]:
    """Returns ``(key_path, leaf)`` pairs of a pytree, in flattening order.

    Args:
        tree: the pytree.
        is_leaf: optional predicate marking extra subtrees as leaves.

    Returns:
        A list of ``(key_path, leaf)`` pairs.

    Example:
        >>> [(keystr(p), x) for p, x in tree_leaves_with_path((1, [2]))]
        [('[0]', 1), ('[1][0]', 2)]
    """
    return tree_flatten_with_path(tree, is_leaf)[0]


def tree_map_with_path(
    f: Callable[..., Any], tree: PyTree, *rest: PyTree, is_leaf: IsLeaf = None
) -> PyTree:
    """Like ``tree_map``, but ``f`` receives each leaf's key path as its first argument.

    Args:
        f: function ``(key_path, leaf, *rest_subtrees) -> value``.
        tree: the pytree whose structure the result has.
        *rest: more pytrees, each having ``tree``'s structure as a prefix.
        is_leaf: optional predicate marking extra subtrees of ``tree`` as leaves.

    Returns:
        A pytree with ``tree``'s structure holding ``f``'s results.

    Raises:
        ValueError: a tree of ``rest`` has a different structure.

    Example:
        >>> tree_map_with_path(lambda p, x: keystr(p), {"a": 1, "b": (2,)})
        {'a': "['a']", 'b': ("['b'][0]",)}
    """
    pairs, treedef = tree_flatten_with_path(tree, is_leaf)
    others = [_flatten_other_up_to(treedef, r, i) for i, r in enumerate(rest, 1)]
    return treedef.unflatten([f(p, x, *xs) for (p, x), *xs in zip(pairs, *others)])


_NO_INITIALIZER = object()


def tree_reduce(
    f: Callable[[Any, Any], Any],
    tree: PyTree,
    initializer: Any = _NO_INITIALIZER,
    is_leaf: IsLeaf = None,
) -> Any:
    """Folds ``f`` over the leaves of a pytree, left to right.

    Args:
        f: binary function ``(accumulated, leaf) -> accumulated``.
        tree: the pytree.
        initializer: optional starting value; without it the first leaf is the
            start and an empty tree is an error.
        is_leaf: optional predicate marking extra subtrees as leaves.

    Returns:
        The reduced value.

    Example:
        >>> tree_reduce(lambda a, b: a + b, {"x": 1, "y": [2, 3]})
        6
        >>> tree_reduce(max, [], initializer=0)
        0
    """
    leaves = tree_leaves(tree, is_leaf)
    if initializer is _NO_INITIALIZER:
        return functools.reduce(f, leaves)
    return functools.reduce(f, leaves, initializer)


def tree_all(tree: PyTree, *, is_leaf: IsLeaf = None) -> bool:
    """True iff every leaf of the pytree is truthy (True for an empty tree).

    Args:
        tree: the pytree.
        is_leaf: optional predicate marking extra subtrees as leaves.

    Returns:
        ``builtins.all`` of the leaves.

    Example:
        >>> tree_all({"a": True, "b": [1, 2]}), tree_all([True, 0]), tree_all(None)
        (True, False, True)
    """
    return builtins.all(tree_leaves(tree, is_leaf))


def tree_transpose(
    outer_treedef: PyTreeDef,
    inner_treedef: PyTreeDef | None,
    pytree_to_transpose: PyTree,
) -> PyTree:
    """Turns an outer-of-inner pytree into an inner-of-outer one.

    Args:
        outer_treedef: structure of the outer level.
        inner_treedef: structure of each inner subtree; None infers it from the
            first one.
        pytree_to_transpose: a pytree whose structure is ``outer_treedef`` with
            every leaf replaced by a tree of structure ``inner_treedef``.

    Returns:
        A pytree of structure ``inner_treedef`` whose leaves are trees of
        structure ``outer_treedef``.

    Raises:
        ValueError: the input does not have the composed structure.

    Example:
        >>> outer = tree_structure([0, 0])
        >>> inner = tree_structure({"a": 0, "b": 0})
        >>> tree_transpose(outer, inner, [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
        {'a': [1, 3], 'b': [2, 4]}
    """
    subtrees = outer_treedef.flatten_up_to(pytree_to_transpose)
    if inner_treedef is None:
        inner_treedef = tree_structure(subtrees[0]) if subtrees else tree_structure(None)
    inner_leaves = [inner_treedef.flatten_up_to(s) for s in subtrees]
    for s in subtrees:
        if tree_structure(s) != inner_treedef:
            raise ValueError(
                f"tree_transpose: expected inner structure {inner_treedef!r}, "
                f"got {tree_structure(s)!r}"
            )
    columns = zip(*inner_leaves) if inner_leaves else [[]] * inner_treedef.num_leaves
    return inner_treedef.unflatten([outer_treedef.unflatten(col) for col in columns])


# ---------------------------------------------------------- jax.tree-style aliases
# Defined last: ``map``/``all``/``reduce`` shadow builtins inside this module, so
# the code above calls ``builtins.*`` / ``functools.reduce`` explicitly.

all = tree_all
flatten = tree_flatten
flatten_with_path = tree_flatten_with_path
leaves = tree_leaves
leaves_with_path = tree_leaves_with_path
map = tree_map
map_with_path = tree_map_with_path
reduce = tree_reduce
structure = tree_structure
transpose = tree_transpose
unflatten = tree_unflatten
