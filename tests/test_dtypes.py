"""Dtype rules of fgrad.numpy: NumPy 2 (NEP 50) promotion, weak Python scalars, defaults.

NumPy is the specification (DESIGN.md); JAX in x64 mode agrees on every float/float
and Python-scalar case, so those are checked against it too.
"""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp

DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.float32, np.float64]
SCALARS = [True, 2, 2.5]


def _np_value(dtype):
    return np.ones(3, dtype)


@pytest.mark.parametrize("a, b", list(itertools.combinations_with_replacement(DTYPES, 2)), ids=str)
def test_array_array_promotion_matches_numpy(a, b):
    x, y = _np_value(a), _np_value(b)
    for op in (np.add, np.multiply, np.maximum, np.divide, np.less):
        if a == b == np.bool_ and op in (np.add, np.multiply):
            continue  # NumPy's bool + bool is logical or; not needed for training code
        want = op(x, y).dtype
        got = getattr(fnp, op.__name__)(fnp.asarray(x), fnp.asarray(y))
        assert got.dtype == want, (op.__name__, a, b, got.dtype, want)
        assert fnp.result_type(fnp.asarray(x), fnp.asarray(y)) == np.result_type(x, y)


@pytest.mark.parametrize("a", DTYPES, ids=str)
@pytest.mark.parametrize("s", SCALARS, ids=repr)
def test_python_scalars_are_weak(a, s):
    x = _np_value(a)
    if a == np.bool_ and s is True:
        return
    want = (x * s).dtype  # NEP 50: the array's dtype wins unless the kind must widen
    got = fnp.asarray(x) * s
    assert got.dtype == want, (a, s, got.dtype, want)
    assert (s * fnp.asarray(x)).dtype == want
    assert (fnp.asarray(x) / s).dtype == (x / s).dtype
    if a != np.bool_:  # NumPy refuses bool subtraction
        assert (s - fnp.asarray(x)).dtype == (s - x).dtype
    assert fnp.maximum(fnp.asarray(x), s).dtype == np.maximum(x, s).dtype


def test_float_cases_agree_with_jax_x64():
    for a, b in itertools.product([np.float32, np.float64], repeat=2):
        got = fnp.asarray(np.ones(2, a)) + fnp.asarray(np.ones(2, b))
        assert got.dtype == (jnp.ones(2, a) + jnp.ones(2, b)).dtype
        for s in (2, 2.5):
            assert (fnp.asarray(np.ones(2, a)) * s).dtype == (jnp.ones(2, a) * s).dtype


def test_design_examples():
    x32 = fnp.ones(3)
    assert x32.dtype == np.float32
    assert (x32 * 2.0).dtype == np.float32
    assert (2.0 * x32).dtype == np.float32
    assert (x32 / 3).dtype == np.float32
    assert (x32**2).dtype == np.float32
    assert fnp.exp(x32).dtype == np.float32
    assert fnp.asarray(np.float64(1.5)).dtype == np.float64
    assert (x32 * np.float64(2.0)).dtype == np.float64  # NumPy scalars are not weak
    assert fnp.asarray([1.0, 2.0]).dtype == np.float32
    assert fnp.asarray([[1, 2]]).dtype == np.int32
    assert fnp.asarray(1.5).dtype == np.float32
    i32 = fnp.asarray(np.arange(1, 4, dtype=np.int32))
    assert (i32 + np.ones(3)).dtype == np.float64
    assert (i32 + fnp.asarray(np.ones(3))).dtype == np.float64
    assert (i32 + 1).dtype == np.int32
    assert (i32 + 1.5).dtype == np.float64  # as NumPy: int32 + Python float -> float64
    assert (i32 / i32).dtype == np.float64
    assert (i32 / 2).dtype == np.float64
    assert (i32 // i32).dtype == np.int32
    assert (x32 > 0).dtype == np.bool_
    assert (i32 == i32).dtype == np.bool_
    assert (x32 < fnp.asarray(np.ones(3))).dtype == np.bool_


@pytest.mark.parametrize(
    "fn", [fnp.exp, fnp.log1p, fnp.sqrt, fnp.tanh, fnp.sin, fnp.mean, fnp.var, fnp.std]
)
def test_float_functions_of_integers_follow_numpy(fn):
    x = np.arange(1, 4, dtype=np.int32)
    assert fn(fnp.asarray(x)).dtype == getattr(np, fn.__name__)(x).dtype


def test_integer_reductions_widen_like_numpy():
    i8 = np.arange(4, dtype=np.int8)
    i32 = np.arange(4, dtype=np.int32)
    b = np.array([True, False, True])
    for v in (i8, i32, b):
        assert fnp.sum(v).dtype == np.sum(v).dtype
        assert fnp.prod(v).dtype == np.prod(v).dtype
        assert fnp.cumsum(v).dtype == np.cumsum(v).dtype
    assert fnp.max(i8).dtype == np.int8
    assert fnp.mean(i32).dtype == np.float64


def test_creation_defaults_are_32_bit():
    assert fnp.zeros(2).dtype == np.float32
    assert fnp.ones((2, 2)).dtype == np.float32
    assert fnp.full(2, 1.0).dtype == np.float32
    assert fnp.full(2, 1).dtype == np.int32
    assert fnp.eye(2).dtype == np.float32
    assert fnp.linspace(0, 1, 3).dtype == np.float32
    assert fnp.arange(3).dtype == np.int32
    assert fnp.arange(3.0).dtype == np.float32
    assert fnp.zeros_like(np.ones(2, np.float64)).dtype == np.float64
    assert fnp.ones_like(np.ones(2, np.int8)).dtype == np.int8
    assert fnp.zeros(2, fnp.float64).dtype == np.float64


def test_astype_and_dtype_names():
    x = fnp.arange(3)
    for name in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8"):
        dt = getattr(fnp, name)
        assert x.astype(dt).dtype == np.dtype(name)
    assert fnp.bool_ is np.bool_
    assert x.astype(fnp.bool_).dtype == np.bool_
    assert x.astype("float64").dtype == np.float64


def test_grad_keeps_the_parameter_dtype():
    def loss(p):
        return fnp.sum(fnp.tanh(p["w"] * 2.0) * p["b"]) + fnp.mean(p["v"] ** 2)

    params = {
        "w": fnp.ones((2, 3)),
        "b": fnp.ones(3),
        "v": fnp.asarray(np.ones(4, np.float64)),
    }
    g = fgrad.grad(loss)(params)
    assert g["w"].dtype == np.float32 and g["b"].dtype == np.float32
    assert g["v"].dtype == np.float64
    # Mixed float32/float64 inputs: each gradient keeps its own input's dtype.
    g32, g64 = fgrad.grad(lambda a, b: fnp.sum(a * b), argnums=(0, 1))(
        fnp.ones(2), fnp.asarray(np.ones(2))
    )
    assert g32.dtype == np.float32 and g64.dtype == np.float64
    # jvp tangents keep the primal dtype as well.
    _, t = fgrad.jvp(lambda a: a * 3.0, (fnp.ones(2),), (fnp.ones(2),))
    assert t.dtype == np.float32
