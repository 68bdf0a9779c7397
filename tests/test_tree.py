"""Tests for fgrad.tree: flatten/unflatten round trips, paths, treedefs, errors."""

import collections
import dataclasses
import doctest
import pickle
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgrad import tree


class Point(NamedTuple):
    x: Any
    y: Any


class Pair:
    """A plain class registered with register_pytree_node (aux = a tag)."""

    def __init__(self, a, b, tag="t"):
        self.a, self.b, self.tag = a, b, tag

    def __eq__(self, other):
        return type(other) is Pair and (self.a, self.b, self.tag) == (
            other.a,
            other.b,
            other.tag,
        )

    __hash__ = None


tree.register_pytree_node(
    Pair,
    lambda p: ((p.a, p.b), p.tag),
    lambda tag, children: Pair(*children, tag=tag),
)


@tree.register_dataclass
@dataclasses.dataclass
class Dense:
    w: Any
    b: Any
    act: str = dataclasses.field(default="relu", metadata={"static": True})


@dataclasses.dataclass(frozen=True)
class Norm:
    scale: Any
    eps: float = 1e-5


tree.register_dataclass(Norm, data_fields=["scale"], meta_fields=["eps"])


def roundtrip(t, **kw):
    leaves, treedef = tree.tree_flatten(t, **kw)
    return tree.tree_unflatten(treedef, leaves)


# ------------------------------------------------------------------ round trips

ROUNDTRIP_CASES = [
    1,
    "leaf string",
    None,
    [],
    (),
    {},
    [1, 2, 3],
    (1, (2, 3), [4]),
    (5,),
    {"b": 1, "a": [2, (3, None)]},
    collections.OrderedDict([("z", 1), ("a", 2)]),
    collections.defaultdict(list, {"k": [1, 2], "j": 3}),
    Point(1, [2, 3]),
    Pair(1, {"x": 2}, tag="u"),
    Dense(1.0, [2.0, 3.0], act="tanh"),
    Norm({"g": 1.0}, eps=0.1),
    {"layers": [Dense(1, 2), Dense(3, None)], "opt": (Point(4, 5), None, Norm(6))},
]


@pytest.mark.parametrize("t", ROUNDTRIP_CASES, ids=repr)
def test_roundtrip_preserves_value_and_types(t):
    out = roundtrip(t)
    assert out == t
    assert type(out) is type(t)


def test_leaves_of_each_node_type():
    assert tree.tree_leaves([1, (2, 3), {"b": 5, "a": 4}]) == [1, 2, 3, 4, 5]
    assert tree.tree_leaves(Point(1, 2)) == [1, 2]
    assert tree.tree_leaves(Pair(1, 2)) == [1, 2]
    assert tree.tree_leaves(Dense(1, 2, act="x")) == [1, 2]
    assert tree.tree_leaves(Norm(3, eps=0.5)) == [3]
    dd = collections.defaultdict(int, {"b": 2, "a": 1})
    assert tree.tree_leaves(dd) == [1, 2]


def test_arrays_and_unregistered_objects_are_leaves():
    a = np.arange(3)

    class MyDict(dict):  # subclasses of built-in nodes are leaves, as in JAX
        pass

    t = {"a": a, "o": object, "s": "str", "d": MyDict(x=1)}
    leaves = tree.tree_leaves(t)
    assert leaves[0] is a and len(leaves) == 4


def test_namedtuple_rebuilt_as_same_class():
    out = tree.tree_map(lambda x: x * 10, Point(1, 2))
    assert type(out) is Point and out == Point(10, 20)


def test_defaultdict_keeps_default_factory():
    dd = collections.defaultdict(list, {"a": 1})
    out = tree.tree_map(lambda x: x + 1, dd)
    assert type(out) is collections.defaultdict and out.default_factory is list
    assert out == {"a": 2}
    other = collections.defaultdict(int, {"a": 1})
    assert tree.tree_structure(dd) != tree.tree_structure(other)


# ---------------------------------------------------------------- dict ordering


def test_dict_children_sorted_and_rebuilt_sorted():
    leaves, treedef = tree.tree_flatten({"b": 2, "c": 3, "a": 1})
    assert leaves == [1, 2, 3]
    out = treedef.unflatten(leaves)
    assert list(out) == ["a", "b", "c"]
    assert tree.tree_structure({"a": 0, "b": 0}) == tree.tree_structure({"b": 0, "a": 0})


def test_ordered_dict_keeps_insertion_order():
    od = collections.OrderedDict([("b", 1), ("a", 2)])
    leaves, treedef = tree.tree_flatten(od)
    assert leaves == [1, 2]
    assert list(treedef.unflatten(leaves)) == ["b", "a"]
    reordered = collections.OrderedDict([("a", 2), ("b", 1)])
    assert tree.tree_structure(reordered) != treedef


def test_dict_with_unorderable_keys_flattens_deterministically():
    t1 = {1: "i", "a": "s"}
    t2 = {"a": "s", 1: "i"}
    assert tree.tree_leaves(t1) == tree.tree_leaves(t2)
    assert roundtrip(t1) == t1


# ------------------------------------------------------------------------- None


def test_none_is_an_empty_node():
    assert tree.tree_leaves(None) == []
    assert tree.tree_map(lambda x: 1 / 0, None) is None
    assert tree.tree_leaves({"a": None, "b": 1}) == [1]
    assert tree.tree_map(lambda x: x + 1, [None, 1]) == [None, 2]
    assert repr(tree.tree_structure(None)) == "PyTreeDef(None)"


def test_is_leaf_makes_none_a_leaf():
    leaves, treedef = tree.tree_flatten([None, 1], is_leaf=lambda x: x is None)
    assert leaves == [None, 1]
    assert treedef.num_leaves == 2
    out = tree.tree_map(lambda x: "n" if x is None else x, [None, 1], is_leaf=lambda x: x is None)
    assert out == ["n", 1]


def test_is_leaf_checked_before_node_lookup():
    t = {"a": (1, 2), "b": [3, (4, 5)]}

    def is_pair(x):
        return isinstance(x, tuple)

    assert tree.tree_leaves(t, is_leaf=is_pair) == [(1, 2), 3, (4, 5)]
    assert tree.tree_map(lambda x: sum(x) if is_pair(x) else -x, t, is_leaf=is_pair) == {
        "a": 3,
        "b": [-3, 9],
    }
    # Applies to the root too.
    assert tree.tree_leaves((1, 2), is_leaf=is_pair) == [(1, 2)]


# --------------------------------------------------------------------- tree_map


def test_tree_map_over_several_trees():
    a = {"w": [1, 2], "b": 3}
    b = {"w": [10, 20], "b": 30}
    c = {"w": [100, 200], "b": 300}
    assert tree.tree_map(lambda x, y, z: x + y + z, a, b, c) == {
        "w": [111, 222],
        "b": 333,
    }


def test_tree_map_first_tree_is_prefix():
    # A leaf of the first tree receives the whole matching subtree of the others.
    out = tree.tree_map(lambda x, sub: (x, sub), {"a": 1, "b": 2}, {"a": [1, 2], "b": None})
    assert out == {"a": (1, [1, 2]), "b": (2, None)}


def test_tree_map_with_registered_and_dataclass_nodes():
    t = {"l": Dense(1, 2, act="gelu"), "p": Pair(3, 4, tag="k")}
    out = tree.tree_map(lambda x, y: x * y, t, t)
    assert out == {"l": Dense(1, 4, act="gelu"), "p": Pair(9, 16, tag="k")}


# ------------------------------------------------------------------- with path


def test_flatten_with_path_and_keystr():
    t = {
        "params": {"w": 1, "b": [2, 3]},
        "pt": Point(4, 5),
        "dense": Dense(6, 7),
        "pair": Pair(8, 9),
    }
    pairs, treedef = tree.tree_flatten_with_path(t)
    assert [tree.keystr(p) for p, _ in pairs] == [
        "['dense'].w",
        "['dense'].b",
        "['pair'][<flat index 0>]",
        "['pair'][<flat index 1>]",
        "['params']['b'][0]",
        "['params']['b'][1]",
        "['params']['w']",
        "['pt'].x",
        "['pt'].y",
    ]
    assert [x for _, x in pairs] == tree.tree_leaves(t)
    assert treedef == tree.tree_structure(t)
    assert tree.tree_leaves_with_path(t) == pairs


def test_key_types_and_keystr_options():
    ((path, leaf),) = tree.tree_leaves_with_path({"a": [Point(0, 1)]})[1:]
    assert path == (tree.DictKey("a"), tree.SequenceKey(0), tree.GetAttrKey("y"))
    assert leaf == 1
    assert tree.keystr(path) == "['a'][0].y"
    assert tree.keystr(path, simple=True, separator="/") == "a/0/y"
    assert tree.keystr(()) == ""
    assert tree.tree_leaves_with_path(5) == [((), 5)]


def test_tree_map_with_path():
    t = {"a": 1, "b": (2, 3)}
    out = tree.tree_map_with_path(lambda p, x, y: f"{tree.keystr(p)}={x + y}", t, t)
    assert out == {"a": "['a']=2", "b": ("['b'][0]=4", "['b'][1]=6")}


# -------------------------------------------------------------------- treedefs


def test_treedef_equality_and_hash():
    s1 = tree.tree_structure({"a": [1, 2], "b": (3, None)})
    s2 = tree.tree_structure({"b": ("x", None), "a": [np.zeros(2), 0.5]})
    assert s1 == s2 and hash(s1) == hash(s2)
    assert len({s1, s2}) == 1
    different = [
        {"a": [1, 2], "c": (3, None)},  # key set
        {"a": (1, 2), "b": (3, None)},  # list vs tuple
        {"a": [1, 2], "b": (3, 4)},  # None vs leaf
        {"a": [1, 2, 5], "b": (3, None)},  # length
        collections.OrderedDict(a=[1, 2], b=(3, None)),  # node type
    ]
    for t in different:
        assert tree.tree_structure(t) != s1
    assert s1 != "not a treedef"


def test_treedef_aux_data_is_part_of_equality():
    assert tree.tree_structure(Pair(1, 2, tag="a")) != tree.tree_structure(Pair(1, 2, tag="b"))
    assert tree.tree_structure(Pair(1, 2, tag="a")) == tree.tree_structure(Pair(3, 4, tag="a"))
    assert tree.tree_structure(Point(1, 2)) != tree.tree_structure((1, 2))


def test_dataclass_meta_fields_are_static():
    d1, d2, d3 = (
        Dense(1, 2, act="relu"),
        Dense(5, 6, act="relu"),
        Dense(1, 2, act="tanh"),
    )
    assert tree.tree_structure(d1) == tree.tree_structure(d2)
    assert hash(tree.tree_structure(d1)) == hash(tree.tree_structure(d2))
    assert tree.tree_structure(d1) != tree.tree_structure(d3)
    assert tree.tree_map(lambda x: x, d3).act == "tanh"
    n1, n2 = Norm(1.0, eps=0.1), Norm(1.0, eps=0.2)
    assert tree.tree_leaves(n1) == [1.0]
    assert tree.tree_structure(n1) != tree.tree_structure(n2)
    assert tree.tree_map(lambda x: x * 2, n2) == Norm(2.0, eps=0.2)


def test_register_dataclass_forms_and_validation():
    @tree.register_dataclass
    @dataclasses.dataclass
    class A:
        x: Any
        y: Any = dataclasses.field(default=0, metadata={"static": True})

    assert tree.tree_leaves(A(1, 2)) == [1]

    @tree.register_dataclass(meta_fields=["y"])
    @dataclasses.dataclass
    class B:
        x: Any
        y: Any

    assert tree.tree_leaves(B(1, 2)) == [1]
    assert tree.tree_map(lambda v: v + 1, B(1, 2)) == B(2, 2)

    @dataclasses.dataclass
    class C:
        x: Any
        y: Any

    with pytest.raises(ValueError, match="missing"):
        tree.register_dataclass(C, data_fields=["x"], meta_fields=[])
    with pytest.raises(ValueError, match="twice"):
        tree.register_dataclass(C, data_fields=["x", "y"], meta_fields=["x"])

    class NotADataclass:
        pass

    with pytest.raises(TypeError, match="not a dataclass"):
        tree.register_dataclass(NotADataclass)


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        tree.register_pytree_node(Pair, lambda p: ((), None), lambda a, c: None)


def test_treedef_properties_and_repr():
    treedef = tree.tree_structure({"a": 1, "b": [2, 3], "c": (4,), "d": None})
    assert treedef.num_leaves == 4
    assert treedef.num_nodes == 8  # leaves and None count as nodes
    assert repr(treedef) == "PyTreeDef({'a': *, 'b': [*, *], 'c': (*,), 'd': None})"
    assert [c.num_leaves for c in treedef.children()] == [1, 2, 1, 0]
    assert treedef.node_data()[0] is dict
    assert repr(tree.tree_structure(Point(1, 2))) == "PyTreeDef(Point(x=*, y=*))"
    assert repr(tree.tree_structure(Dense(1, 2))) == "PyTreeDef(Dense(w=*, b=*, act='relu'))"
    assert repr(tree.tree_structure(Pair(1, 2))) == "PyTreeDef(CustomNode(Pair['t'], [*, *]))"
    assert repr(tree.tree_structure(5)) == "PyTreeDef(*)"


def test_treedef_is_immutable_and_picklable():
    treedef = tree.tree_structure({"a": [1, Point(2, 3)]})
    with pytest.raises(AttributeError):
        treedef._spec = None
    clone = pickle.loads(pickle.dumps(treedef))
    assert clone == treedef and hash(clone) == hash(treedef)


# ----------------------------------------------------------------------- errors


def test_unflatten_wrong_leaf_count():
    treedef = tree.tree_structure([1, 2, 3])
    with pytest.raises(ValueError, match="expects 3 leaves, got 2"):
        tree.tree_unflatten(treedef, [1, 2])


def test_tree_map_mismatch_names_path_and_dict_keys():
    a = {"params": {"w": 1, "b": 2}, "step": 0}
    b = {"params": {"w": 1}, "step": 0}
    with pytest.raises(ValueError) as info:
        tree.tree_map(lambda x, y: x, a, b)
    msg = str(info.value)
    assert "['params']" in msg
    assert "dict with keys ['b', 'w']" in msg
    assert "dict with keys ['w']" in msg
    assert "missing keys ['b']" in msg


def test_tree_map_mismatch_first_differing_path():
    a = {"params": {"b": [1, 2], "w": 3}}
    b = {"params": {"b": 5, "w": [1]}}
    with pytest.raises(ValueError) as info:
        tree.tree_map(lambda x, y: x, a, b)
    msg = str(info.value)
    assert "['params']['b']" in msg
    assert "list of length 2" in msg and "leaf of type int" in msg
    assert "tree 1" in msg


def test_tree_map_mismatch_types_lengths_and_none():
    with pytest.raises(ValueError, match=r"at \[1\]: .*list of length 2.*list of length 3"):
        tree.tree_map(lambda x, y: x, (0, [1, 2]), (0, [1, 2, 3]))
    with pytest.raises(ValueError, match=r"at \[0\]: .*list of length 1.*tuple of length 1"):
        tree.tree_map(lambda x, y: x, [[1]], [(1,)])
    with pytest.raises(ValueError, match=r"at the root: .*None.*leaf of type int"):
        tree.tree_map(lambda x, y: x, None, 3)
    with pytest.raises(ValueError, match=r"\['a'\].x.*tree 2"):
        tree.tree_map(
            lambda *xs: 0,
            {"a": Point([1], 2)},
            {"a": Point([1], 2)},
            {"a": Point(1, 2)},
        )
    with pytest.raises(ValueError, match=r"Pair node .*'u'.*'v'"):
        tree.tree_map(lambda x, y: x, Pair(1, 2, tag="u"), Pair(1, 2, tag="v"))


def test_flatten_up_to():
    treedef = tree.tree_structure({"a": 0, "b": 0})
    assert treedef.flatten_up_to({"a": [1, 2], "b": None}) == [[1, 2], None]
    with pytest.raises(ValueError, match="extra keys \\['c'\\]"):
        treedef.flatten_up_to({"a": 1, "b": 2, "c": 3})


# ------------------------------------------------------------ reduce/all/transpose


def test_tree_reduce_and_all():
    t = {"a": 1, "b": [2, 3]}
    assert tree.tree_reduce(lambda a, b: a + b, t) == 6
    assert tree.tree_reduce(lambda a, b: a + b, t, 10) == 16
    assert tree.tree_reduce(lambda a, b: a + b, None, initializer=0) == 0
    with pytest.raises(TypeError):
        tree.tree_reduce(lambda a, b: a + b, [])
    assert tree.tree_all({"a": True, "b": [1]})
    assert not tree.tree_all([True, (0,)])
    assert tree.tree_all([])


def test_tree_transpose():
    outer = tree.tree_structure((0, 0, 0))
    inner = tree.tree_structure({"x": 0, "y": 0})
    t = ({"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6})
    assert tree.tree_transpose(outer, inner, t) == {"x": (1, 3, 5), "y": (2, 4, 6)}
    assert tree.tree_transpose(outer, None, t) == {"x": (1, 3, 5), "y": (2, 4, 6)}
    with pytest.raises(ValueError):
        tree.tree_transpose(outer, inner, ({"x": 1}, {"x": 3}, {"x": 5}))


# ---------------------------------------------------------------------- aliases


def test_jax_tree_style_aliases():
    t = {"a": 1, "b": [2, None]}
    assert tree.map(lambda x: x + 1, t) == {"a": 2, "b": [3, None]}
    leaves, treedef = tree.flatten(t)
    assert tree.unflatten(treedef, leaves) == t
    assert tree.leaves(t) == [1, 2]
    assert tree.structure(t) == treedef
    assert tree.reduce(lambda a, b: a * b, t, 5) == 10
    assert tree.all(t) and not tree.all([0])
    assert tree.map_with_path(lambda p, x: tree.keystr(p), t) == {
        "a": "['a']",
        "b": ["['b'][0]", None],
    }
    assert tree.flatten_with_path(t)[0] == tree.leaves_with_path(t)
    assert tree.transpose is tree.tree_transpose
    # The aliases shadow builtins only as module attributes, not inside the module.
    assert tree.tree_all([1, 1]) is True
    assert tree.tree_reduce(max, [3, 1, 2]) == 3


def test_module_doctests():
    result = doctest.testmod(tree, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 20 and result.failed == 0


# --------------------------------------------------------------------- property

_keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
_trees = st.recursive(
    st.integers() | st.none(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(_keys, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(_trees)
def test_property_flatten_unflatten_identity(t):
    leaves, treedef = tree.tree_flatten(t)
    assert all(isinstance(x, int) for x in leaves)
    assert len(leaves) == treedef.num_leaves
    out = tree.tree_unflatten(treedef, leaves)
    assert out == t
    assert repr(tree.tree_structure(out)) == repr(treedef)
    # Mapping keeps the structure; treedefs of equal structures are equal and hash equally.
    mapped = tree.tree_map(lambda x: x + 1, t)
    assert tree.tree_structure(mapped) == treedef
    assert hash(tree.tree_structure(mapped)) == hash(treedef)
    assert tree.tree_leaves(mapped) == [x + 1 for x in leaves]
    assert [x for _, x in tree.tree_leaves_with_path(t)] == leaves
