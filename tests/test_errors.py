"""The errors users must get (DESIGN.md, "Errors users must get").

Each test checks the message itself, including the user's ``file:line``: the name of
this file and the line of the offending call, found by a ``# L:<tag>`` marker comment.
"""

import os
import re
import warnings

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax, tree

_THIS_FILE = os.path.basename(__file__)
with open(__file__) as _f:
    _SOURCE = _f.read().splitlines()


def at(tag: str) -> str:
    """``test_errors.py:<line>`` of the line marked ``# L:<tag>``."""
    lines = [i + 1 for i, text in enumerate(_SOURCE) if text.rstrip().endswith(f"# L:{tag}")]
    assert len(lines) == 1, f"marker {tag!r} must appear exactly once"
    return f"{_THIS_FILE}:{lines[0]}"


def message(exc_type, fn) -> str:
    with pytest.raises(exc_type) as info:
        fn()
    return str(info.value)


# ---------------------------------------------------------------- shape and dtype mismatches


def test_broadcast_shape_mismatch_names_op_shapes_and_line():
    msg = message(fgrad.FgradTypeError, lambda: fnp.ones(3) + fnp.ones(4))  # L:add
    assert "add" in msg and "(3,)" in msg and "(4,)" in msg
    assert at("add") in msg
    # FgradTypeError is a TypeError, as JAX's shape errors are.
    assert issubclass(fgrad.FgradTypeError, TypeError)


def test_matmul_mismatch():
    a, b = fnp.ones((2, 3)), fnp.ones((4, 5))
    msg = message(fgrad.FgradTypeError, lambda: a @ b)  # L:matmul
    assert "matmul" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    assert at("matmul") in msg


def test_lax_primitive_shape_and_dtype_mismatch():
    msg = message(fgrad.FgradTypeError, lambda: lax.add(fnp.ones(3), fnp.ones(4)))  # L:lax-add
    assert msg.startswith("add:")
    assert "f32[3]" in msg and "f32[4]" in msg
    assert at("lax-add") in msg

    x64 = fnp.ones(3, fnp.float64)
    msg = message(fgrad.FgradTypeError, lambda: lax.mul(fnp.ones(3), x64))  # L:lax-dtype
    assert msg.startswith("mul:") and "float32" in msg and "float64" in msg
    assert at("lax-dtype") in msg

    a, b = fnp.ones((2, 3)), fnp.ones((4, 5))
    dims = (((1,), (0,)), ((), ()))
    msg = message(fgrad.FgradTypeError, lambda: lax.dot_general(a, b, dims))  # L:dot-general
    assert "dot_general" in msg and "f32[2,3]" in msg and "f32[4,5]" in msg
    assert at("dot-general") in msg


def test_shape_errors_inside_transformations_name_the_users_line():
    def f(x):
        y = fnp.sin(x)
        return fnp.sum(lax.add(y, fnp.ones(4)))  # L:in-grad

    msg = message(fgrad.FgradTypeError, lambda: fgrad.grad(f)(fnp.ones(3)))
    assert "add" in msg and "f32[3]" in msg and "f32[4]" in msg
    assert at("in-grad") in msg

    def g(x):
        return x @ fnp.ones((4, 5))  # L:in-jaxpr

    msg = message(fgrad.FgradTypeError, lambda: fgrad.make_jaxpr(g)(fnp.ones((2, 3))))
    assert "matmul" in msg and at("in-jaxpr") in msg


# ---------------------------------------------------------------- grad's contract


def test_grad_of_non_scalar_output():
    f = fgrad.grad(lambda x: x * 2.0)
    msg = message(TypeError, lambda: f(fnp.ones(3)))  # L:nonscalar
    assert "scalar" in msg and "f32[3]" in msg
    assert at("nonscalar") in msg


def test_grad_of_integer_output():
    f = fgrad.grad(lambda x: fnp.sum(x).astype(fnp.int32))
    msg = message(TypeError, lambda: f(fnp.ones(3)))  # L:int-out
    assert "floating-point output" in msg and "int32" in msg
    assert at("int-out") in msg


def test_grad_wrt_integer_input_names_the_key_path():
    params = {"a": fnp.ones(2), "b": fnp.arange(3)}
    f = fgrad.grad(lambda p: fnp.sum(p["a"]))
    msg = message(TypeError, lambda: f(params))  # L:int-in
    assert "argument 0['b']" in msg and "int32" in msg
    assert at("int-in") in msg

    g = fgrad.grad(lambda p, q: fnp.sum(p), argnums=(0, 1))
    q = [fnp.ones(1), (fnp.asarray([True]),)]
    msg = message(TypeError, lambda: g(fnp.ones(2), q))  # L:int-in-2
    assert "argument 1[1][0]" in msg and "bool" in msg
    assert at("int-in-2") in msg


# ---------------------------------------------------------------- leaked tracers

_leaked = []


def _stash_a_tracer(x):
    y = x * 2.0  # L:created
    _leaked.append(y)
    return fnp.sum(y)


def test_leaked_tracer_is_reported_when_used():
    _leaked.clear()
    fgrad.grad(_stash_a_tracer)(fnp.ones(3))
    tracer = _leaked.pop()
    msg = message(fgrad.UnexpectedTracerError, lambda: tracer + 1.0)  # L:used
    assert re.search(r"created at \S*" + re.escape(at("created")), msg)
    assert at("used") in msg
    assert "f32[3]" in msg
    # Any use is caught: a function of fgrad.numpy, or asking for its value.
    msg = message(fgrad.UnexpectedTracerError, lambda: fnp.sin(tracer))  # L:used-2
    assert at("used-2") in msg and at("created") in msg
    msg = message(fgrad.UnexpectedTracerError, lambda: float(tracer[0]))  # L:used-3
    assert at("used-3") in msg


# ---------------------------------------------------------------- pytrees


def test_tree_map_mismatch_names_the_first_differing_key_path():
    a = {"x": 1, "y": {"u": [1, 2], "v": 3}}
    b = {"x": 1, "y": {"u": [1, 2, 3], "v": 3}}
    msg = message(ValueError, lambda: tree.tree_map(lambda p, q: p, a, b))
    assert "['y']['u']" in msg
    assert "length 2" in msg and "length 3" in msg
    c = {"x": 1, "z": {"u": [1, 2], "v": 3}}
    msg = message(ValueError, lambda: tree.tree_map(lambda p, q: p, a, c))
    assert "'y'" in msg and "'z'" in msg


def test_tree_map_mismatch_names_the_users_line():
    a, b = {"u": [1, 2]}, {"u": [1, 2, 3]}
    msg = message(ValueError, lambda: tree.tree_map(lambda p, q: p, a, b))  # L:tree-map
    assert at("tree-map") in msg


# ---------------------------------------------------------------- immutability


def test_setitem_points_to_at():
    x = fnp.zeros(3)

    def assign():
        x[0] = 1.0

    msg = message(TypeError, assign)
    assert ".at[" in msg and "immutable" in msg

    def assign_traced(v):
        v[0] = 1.0
        return fnp.sum(v)

    msg = message(TypeError, lambda: fgrad.grad(assign_traced)(fnp.ones(3)))
    assert ".at[" in msg


def test_setitem_names_the_users_line():
    x = fnp.zeros(3)

    def assign():
        x[0] = 1.0  # L:setitem

    msg = message(TypeError, assign)
    assert at("setitem") in msg


# ---------------------------------------------------------------- concretisation


def test_bool_of_abstract_tracer_suggests_cond_and_static_argnums():
    f = fgrad.make_jaxpr(lambda x: x > 0 and x)  # L:concrete
    msg = message(fgrad.ConcretizationError, lambda: f(fnp.ones(())))
    assert "bool[]" in msg  # which value
    assert "lax.cond" in msg and "static_argnums" in msg and "lax.while_loop" in msg
    assert at("concrete") in msg
    assert issubclass(fgrad.ConcretizationError, TypeError)

    def g(x):
        if fnp.sum(x) > 1.0:  # L:concrete-if
            return x
        return -x

    msg = message(fgrad.ConcretizationError, lambda: fgrad.make_jaxpr(g)(fnp.ones(3)))
    assert at("concrete-if") in msg and "lax.cond" in msg

    msg = message(fgrad.ConcretizationError, lambda: fgrad.make_jaxpr(int)(fnp.ones(())))
    assert "int()" in msg


def test_debug_nans_names_the_primitive_and_line():
    fgrad.config.update("debug_nans", True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            x = fnp.asarray(np.float32(-1.0))
            msg = message(FloatingPointError, lambda: fnp.log(x))  # L:nan
    finally:
        fgrad.config.update("debug_nans", False)
    assert re.search(r"\blog\b", msg) and "NaN" in msg
    assert at("nan") in msg
