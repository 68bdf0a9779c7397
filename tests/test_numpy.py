"""Tests for fgrad.numpy against NumPy (values, dtypes) and jax.numpy (values, gradients).

Every eager result must be an ``fgrad.Array``; gradients are compared with
``jax.grad`` in float64 through ``sum(sin(f(x)))`` so that each output element gets a
different cotangent.
"""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fgrad.numpy as fnp

# ---------------------------------------------------------------- helpers

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def check(out, expected, rtol=None, atol=0.0, dtype=True):
    """``out`` is an fgrad Array equal to ``expected`` in shape, dtype and value."""
    assert isinstance(out, fgrad.Array), type(out)
    expected = np.asarray(expected)
    got = np.asarray(out)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if dtype:
        assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if got.dtype.kind in "biu" or expected.dtype.kind in "biu":
        np.testing.assert_array_equal(got, expected)
    else:
        rtol = RTOL.get(got.dtype, 1e-5) if rtol is None else rtol
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def sum_sin(f):
    return lambda *xs: fnp.sum(fnp.sin(f(*xs)))


def jsum_sin(f):
    return lambda *xs: jnp.sum(jnp.sin(f(*xs)))


_JITTED: dict = {}


def _jit(fn, key):
    """``jax.jit(fn)``, reused across hypothesis examples when ``key`` names ``fn``.

    jit caches compiles per function object, so a fresh lambda would recompile on
    every example; the key (e.g. the op name and its static parameters) avoids that.
    """
    if key is None:
        return jax.jit(fn)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(fn)
    return _JITTED[key]


def jit_eval(jf, *args, key=None):
    """JAX's value of ``jf(*args)`` (jitted: one compile instead of one per op)."""
    return np.asarray(_jit(jf, key and ("value",) + key)(*args))


def check_grad_vs_jax(f, jf, *args, argnums=0, rtol=1e-9, atol=1e-12, key=None):
    """Gradient of sum(sin(f(...))) equals JAX's in float64 (and keeps the dtype)."""
    g = fgrad.grad(sum_sin(f), argnums=argnums)(*[fnp.asarray(a) for a in args])
    jg = _jit(jax.grad(jsum_sin(jf), argnums=argnums), key and ("grad", argnums) + key)(*args)
    g, jg = (g, jg) if isinstance(argnums, tuple) else ((g,), (jg,))
    for a, b in zip(g, jg):
        check(a, np.asarray(b), rtol=rtol, atol=atol)


# Shapes come from small pools (size-1 axes and rank 0 included) rather than free draws:
# JAX compiles once per shape, and that compile time dominates otherwise.
SHAPES = [(), (1,), (4,), (2, 3), (3, 1), (2, 1, 3)]
BROADCAST_PAIRS = [
    ((), ()),
    ((), (3,)),
    ((2, 3), ()),
    ((4,), (4,)),
    ((2, 3), (3,)),
    ((2, 1), (1, 3)),
    ((3, 1), (2, 1, 4)),
    ((1, 3), (2, 3)),
]


def shapes(min_dims=0):
    return st.sampled_from([s for s in SHAPES if len(s) >= min_dims])


def broadcast_pairs():
    return st.sampled_from(BROADCAST_PAIRS)


def arrays(shape, lo=-3.0, hi=3.0, dtype=np.float64, unique=False):
    # Rounded values: no subnormals (XLA flushes them to zero) and exact in float32 casts.
    elements = st.floats(lo, hi).map(lambda v: round(v, 4))
    return hnp.arrays(dtype, shape, elements=elements, unique=unique)


def away_from_zero(shape, lo=0.1, hi=3.0):
    mag = st.floats(lo, hi).map(lambda v: round(v, 4))
    return hnp.arrays(np.float64, shape, elements=st.one_of(mag, mag.map(operator.neg)))


float_dtypes = st.sampled_from([np.float32, np.float64])

# ---------------------------------------------------------------- elementwise unary

# name -> (domain of the drawn values, has a kink at 0)
UNARY = {
    "exp": (-4.0, 4.0),
    "log": (0.1, 10.0),
    "log1p": (-0.9, 10.0),
    "expm1": (-4.0, 4.0),
    "sqrt": (0.1, 10.0),
    "square": (-4.0, 4.0),
    "tanh": (-4.0, 4.0),
    "sin": (-4.0, 4.0),
    "cos": (-4.0, 4.0),
    "negative": (-4.0, 4.0),
    "abs": None,  # kink at 0: values drawn away from it
    "sign": None,
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data(), dt=float_dtypes)
def test_unary_values_and_grads(name, data, dt):
    shape = data.draw(shapes())
    dom = UNARY[name]
    x = data.draw(away_from_zero(shape) if dom is None else arrays(shape, *dom))
    f, nf, jf = getattr(fnp, name), getattr(np, name), getattr(jnp, name)
    xd = x.astype(dt)
    check(f(xd), nf(xd))
    check(f(fnp.asarray(xd)), jit_eval(jf, xd, key=(name,)))
    check_grad_vs_jax(f, jf, x, key=(name,))


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "tanh"])
def test_unary_of_integers_promotes_like_numpy(name):
    x = np.array([1, 2, 3], np.int32)
    check(getattr(fnp, name)(fnp.asarray(x)), getattr(np, name)(x))


@given(data=st.data())
def test_clip(data):
    shape = data.draw(shapes())
    x = data.draw(arrays(shape))
    lo, hi = -1.0, 1.5
    check(fnp.clip(x, lo, hi), np.clip(x, lo, hi))
    check(fnp.clip(x, max=hi), np.clip(x, None, hi))
    check(fnp.clip(x.astype(np.float32), lo, hi), np.clip(x.astype(np.float32), lo, hi))
    # Away from the clip bounds, the gradient is 1 inside and 0 outside (as JAX).
    x = np.where(np.abs(np.abs(x - 0.25) - 1.25) < 1e-3, 0.0, x)
    check_grad_vs_jax(
        lambda v: fnp.clip(v, lo, hi), lambda v: jnp.clip(v, lo, hi), x, key=("clip",)
    )


# ---------------------------------------------------------------- elementwise binary

BINARY = {
    "add": (operator.add, np.add, jnp.add),
    "subtract": (operator.sub, np.subtract, jnp.subtract),
    "multiply": (operator.mul, np.multiply, jnp.multiply),
    "divide": (operator.truediv, np.divide, jnp.divide),
    "power": (operator.pow, np.power, jnp.power),
    "maximum": (fnp.maximum, np.maximum, jnp.maximum),
    "minimum": (fnp.minimum, np.minimum, jnp.minimum),
    "logaddexp": (fnp.logaddexp, np.logaddexp, jnp.logaddexp),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data(), dt=float_dtypes)
def test_binary_broadcasting_values_and_grads(name, data, dt):
    op, nf, jf = BINARY[name]
    sx, sy = data.draw(broadcast_pairs())
    positive = name in ("divide", "power")
    lo = 0.2 if positive else -3.0
    x, y = data.draw(arrays(sx, lo, 3.0)), data.draw(arrays(sy, lo, 3.0))
    xd, yd = x.astype(dt), y.astype(dt)
    # As a function of fgrad.numpy and as an operator on fgrad arrays.
    check(getattr(fnp, name)(xd, yd), nf(xd, yd))
    check(op(fnp.asarray(xd), fnp.asarray(yd)), nf(xd, yd))
    check(op(fnp.asarray(xd), fnp.asarray(yd)), jit_eval(jf, xd, yd, key=(name,)))
    check_grad_vs_jax(op, jf, x, y, argnums=(0, 1), key=(name,))


@pytest.mark.parametrize(
    "op", [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]
)
@given(data=st.data())
def test_comparison_operators(op, data):
    sx, sy = data.draw(broadcast_pairs())
    vals = st.sampled_from([-1.0, 0.0, 0.5, 2.0])
    x = data.draw(hnp.arrays(np.float32, sx, elements=vals))
    y = data.draw(hnp.arrays(np.float64, sy, elements=vals))
    check(op(fnp.asarray(x), fnp.asarray(y)), op(x, y))
    check(op(fnp.asarray(x), 0.5), op(x, 0.5))
    check(op(0.5, fnp.asarray(x)), op(0.5, x))


def test_scalar_operators_both_sides():
    x = np.array([1.0, 2.0, 4.0], np.float32)
    a = fnp.asarray(x)
    check(a + 1, x + 1)
    check(1 + a, 1 + x)
    check(a - 1.5, x - 1.5)
    check(1.5 - a, 1.5 - x)
    check(2 * a, 2 * x)
    check(a / 2, x / 2)
    check(2 / a, 2 / x)
    check(a**2, x**2)
    check(a**0.5, x**0.5)
    check(2.0**a, 2.0**x)
    check(-a, -x)
    check(+a, +x)
    check(abs(-a), x)
    check(a // 1.5, x // 1.5)
    check(a % 1.5, x % 1.5)
    m = fnp.asarray(np.arange(6.0).reshape(2, 3))
    check(m @ fnp.asarray(x), np.arange(6.0).reshape(2, 3) @ x)


def test_integer_arithmetic_matches_numpy():
    x = np.array([-7, -3, 0, 5, 9], np.int32)
    y = np.array([2, -2, 3, 3, -4], np.int32)
    a, b = fnp.asarray(x), fnp.asarray(y)
    check(a + b, x + y)
    check(a * b, x * y)
    check(a // b, x // y)
    check(a % b, x % y)
    check(a / b, x / y)  # int / int -> float64, as NumPy
    check(a**2, x**2)
    check(-a, -x)


@given(data=st.data())
def test_where(data):
    sc, sx, sy = data.draw(
        st.sampled_from([((), (3,), (3,)), ((2, 3), (3,), ()), ((2, 1), (1, 3), (2, 3))])
    )
    c = data.draw(hnp.arrays(np.bool_, sc))
    x, y = data.draw(arrays(sx)), data.draw(arrays(sy))
    check(fnp.where(c, x, y), np.where(c, x, y))
    check(fnp.where(c, x.astype(np.float32), 0.0), np.where(c, x.astype(np.float32), 0.0))
    check_grad_vs_jax(fnp.where, jnp.where, c, x, y, argnums=(1, 2), key=("where",))


def test_isfinite_isnan_any_all():
    x = np.array([[1.0, np.nan, np.inf], [-np.inf, 0.0, 2.0]], np.float32)
    check(fnp.isfinite(x), np.isfinite(x))
    check(fnp.isnan(x), np.isnan(x))
    check(fnp.isinf(x), np.isinf(x))
    b = np.array([[True, False, False], [True, True, True]])
    for axis in (None, 0, 1, -1, (0, 1)):
        check(fnp.any(b, axis=axis), np.any(b, axis=axis))
        check(fnp.all(b, axis=axis), np.all(b, axis=axis))
    check(fnp.any(fnp.asarray(b), axis=1, keepdims=True), np.any(b, axis=1, keepdims=True))
    check(fnp.all(np.array([0.0, 2.0])), np.all(np.array([0.0, 2.0])))
    check(fnp.any(np.array([0, 0, 3])), np.any(np.array([0, 0, 3])))
    check(fnp.isfinite(np.array([1, 2])), np.isfinite(np.array([1, 2])))


# ---------------------------------------------------------------- reductions


def axes_for(ndim):
    choices = [None] + list(range(-ndim, ndim))
    if ndim >= 2:
        choices += [(0, ndim - 1), tuple(range(ndim))]
    return st.sampled_from(choices)


REDUCTIONS = {
    "sum": (fnp.sum, np.sum, jnp.sum),
    "mean": (fnp.mean, np.mean, jnp.mean),
    "max": (fnp.max, np.max, jnp.max),
    "min": (fnp.min, np.min, jnp.min),
    "var": (fnp.var, np.var, jnp.var),
    "std": (fnp.std, np.std, jnp.std),
    "prod": (fnp.prod, np.prod, jnp.prod),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@given(data=st.data(), dt=float_dtypes, keepdims=st.booleans())
def test_reductions(name, data, dt, keepdims):
    f, nf, jf = REDUCTIONS[name]
    shape = data.draw(shapes(min_dims=1))
    axis = data.draw(axes_for(len(shape)))
    # Distinct values: no ties for max/min; std needs a nonzero spread.
    x = data.draw(arrays(shape, 0.2, 2.0, unique=True))
    xd = x.astype(dt)
    check(f(xd, axis=axis, keepdims=keepdims), nf(xd, axis=axis, keepdims=keepdims))
    check(
        f(fnp.asarray(xd), axis=axis, keepdims=keepdims),
        jit_eval(lambda v: jf(v, axis=axis, keepdims=keepdims), xd, key=(name, axis, keepdims)),
    )
    if name == "std" and np.any(np.std(x, axis=axis) == 0):
        return  # the derivative of sqrt at 0 is infinite
    check_grad_vs_jax(
        lambda v: f(v, axis=axis, keepdims=keepdims),
        lambda v: jf(v, axis=axis, keepdims=keepdims),
        x,
        rtol=1e-8,
        key=(name, axis, keepdims),
    )


def test_reductions_of_integers_follow_numpy():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    check(fnp.sum(x), np.sum(x))
    check(fnp.sum(x, axis=0), np.sum(x, axis=0))
    check(fnp.mean(x, axis=1), np.mean(x, axis=1))
    check(fnp.max(x, axis=1), np.max(x, axis=1))
    check(fnp.prod(x[:, 1:3] + 0), np.prod(x[:, 1:3]))
    check(fnp.sum(np.array([True, True, False])), np.sum(np.array([True, True, False])))
    check(fnp.var(np.array([1, 2, 4])), np.var(np.array([1, 2, 4])))


def test_var_std_ddof():
    x = np.array([[1.0, 2.0, 4.0], [3.0, 0.5, 1.0]])
    check(fnp.var(x, ddof=1), np.var(x, ddof=1))
    check(fnp.std(x, axis=1, ddof=1), np.std(x, axis=1, ddof=1))


@given(data=st.data())
def test_argmax_argmin(data):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape, unique=True))
    for f, nf in ((fnp.argmax, np.argmax), (fnp.argmin, np.argmin)):
        check(f(x), nf(x), dtype=False)
        assert np.issubdtype(f(x).dtype, np.integer)
        for axis in range(-len(shape), len(shape)):
            check(f(x, axis=axis), nf(x, axis=axis), dtype=False)
            check(f(x, axis=axis, keepdims=True), nf(x, axis=axis, keepdims=True), dtype=False)
    # Ties: the first occurrence, as NumPy and JAX.
    t = np.array([1.0, 3.0, 3.0, 0.0])
    check(fnp.argmax(t), np.argmax(t), dtype=False)
    check(fnp.argmin(-t), np.argmin(-t), dtype=False)


@given(data=st.data(), dt=float_dtypes)
def test_cumsum(data, dt):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape))
    xd = x.astype(dt)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check(fnp.cumsum(xd), np.cumsum(xd))
    check(fnp.cumsum(xd, axis=axis), np.cumsum(xd, axis=axis))
    check_grad_vs_jax(
        lambda v: fnp.cumsum(v, axis=axis),
        lambda v: jnp.cumsum(v, axis=axis),
        x,
        key=("cumsum", axis),
    )
    check(fnp.cumsum(np.array([1, 2, 3], np.int32)), np.cumsum(np.array([1, 2, 3], np.int32)))


@given(data=st.data(), dt=float_dtypes)
def test_sort(data, dt):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape, unique=True))
    xd = x.astype(dt)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check(fnp.sort(xd), np.sort(xd))
    check(fnp.sort(xd, axis=axis), np.sort(xd, axis=axis))
    check_grad_vs_jax(
        lambda v: fnp.sort(v, axis=axis), lambda v: jnp.sort(v, axis=axis), x, key=("sort", axis)
    )
    check(fnp.sort(xd, axis=None), np.sort(xd, axis=None))


@pytest.mark.parametrize(
    "shape, ord, axis",
    [
        ((5,), None, None),
        ((5,), 2, None),
        ((5,), 1, None),
        ((5,), np.inf, None),
        ((3, 4), None, None),
        ((3, 4), "fro", None),
        ((3, 4), None, 1),
        ((3, 4), 2, 0),
        ((3, 4), 1, -1),
    ],
)
def test_linalg_norm(shape, ord, axis):
    x = np.random.default_rng(0).uniform(-2, 2, shape)
    check(fnp.linalg.norm(x, ord=ord, axis=axis), np.linalg.norm(x, ord=ord, axis=axis))
    x32 = x.astype(np.float32)
    check(fnp.linalg.norm(x32, ord=ord, axis=axis), np.linalg.norm(x32, ord=ord, axis=axis))
    check(
        fnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True),
        np.linalg.norm(x, ord=ord, axis=axis, keepdims=True),
    )
    check_grad_vs_jax(
        lambda v: fnp.linalg.norm(v, ord=ord, axis=axis),
        lambda v: jnp.linalg.norm(v, ord=ord, axis=axis),
        x,
    )


# ---------------------------------------------------------------- contractions

MATMUL_SHAPES = [
    ((2, 3), (3, 4)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((3,), (3,)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((1, 2, 3), (4, 3, 2)),
    ((2, 1, 2, 3), (3, 3, 2)),
    ((3,), (2, 3, 4)),
]


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    check(fnp.matmul(a, b), np.matmul(a, b))
    check(fnp.asarray(a) @ fnp.asarray(b), a @ b)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    check(fnp.matmul(a32, b32), np.matmul(a32, b32))
    check(fnp.matmul(a32, b), np.matmul(a32, b))  # promotes to float64
    check_grad_vs_jax(fnp.matmul, jnp.matmul, a, b, argnums=(0, 1))


@pytest.mark.parametrize(
    "sa, sb", [((), (3,)), ((3,), ()), ((3,), (3,)), ((2, 3), (3,)), ((2, 3), (3, 4)),
               ((2, 3, 4), (4, 5)), ((2, 3), (4, 3, 5)), ((2, 2, 3), (4, 3, 5))]
)
def test_dot(sa, sb):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    check(fnp.dot(a, b), np.dot(a, b))
    check_grad_vs_jax(fnp.dot, jnp.dot, a, b, argnums=(0, 1))
    if sa:
        check(fnp.asarray(a).dot(b), a.dot(b))


EINSUMS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij->j", [(2, 3)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("i,i->", [(3,), (3,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,ij->i", [(2, 3), (2, 3)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("bij,bjk->bik", [(5, 2, 3), (5, 3, 4)]),
    ("bqd,bkd->bqk", [(2, 3, 4), (2, 5, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ij,kj->ik", [(2, 3), (4, 3)]),
    ("bi,ij->bj", [(5, 3), (3, 2)]),
]


@pytest.mark.parametrize("spec, shps", EINSUMS)
def test_einsum(spec, shps):
    rng = np.random.default_rng(3)
    ops = [rng.normal(size=s) for s in shps]
    check(fnp.einsum(spec, *ops), np.einsum(spec, *ops))
    check(fnp.einsum(spec, *ops), jit_eval(lambda *xs: jnp.einsum(spec, *xs), *ops))
    nums = tuple(range(len(ops)))
    check_grad_vs_jax(
        lambda *xs: fnp.einsum(spec, *xs), lambda *xs: jnp.einsum(spec, *xs), *ops, argnums=nums
    )


# ---------------------------------------------------------------- shape manipulation

X234 = np.arange(24.0).reshape(2, 3, 4) / 7.0 - 1.0

SHAPE_OPS = {
    "reshape": (lambda m, x: m.reshape(x, (4, 6))),
    "reshape_minus1": (lambda m, x: m.reshape(x, (-1, 4))),
    "reshape_flat": (lambda m, x: m.reshape(x, -1)),
    "transpose": (lambda m, x: m.transpose(x)),
    "transpose_axes": (lambda m, x: m.transpose(x, (1, 2, 0))),
    "transpose_neg": (lambda m, x: m.transpose(x, (-1, 0, 1))),
    "swapaxes": (lambda m, x: m.swapaxes(x, 0, 2)),
    "swapaxes_neg": (lambda m, x: m.swapaxes(x, -1, 1)),
    "expand_dims0": (lambda m, x: m.expand_dims(x, 0)),
    "expand_dims_neg": (lambda m, x: m.expand_dims(x, -1)),
    "expand_dims_tuple": (lambda m, x: m.expand_dims(x, (0, 2))),
    "squeeze_all": (lambda m, x: m.squeeze(m.reshape(x, (2, 1, 3, 1, 4)))),
    "squeeze_axis": (lambda m, x: m.squeeze(m.reshape(x, (2, 1, 3, 1, 4)), axis=1)),
    "squeeze_neg": (lambda m, x: m.squeeze(m.reshape(x, (2, 3, 4, 1)), axis=-1)),
    "broadcast_to": (lambda m, x: m.broadcast_to(x, (5, 2, 3, 4))),
    "broadcast_to_size1": (lambda m, x: m.broadcast_to(m.reshape(x, (2, 3, 4, 1)), (2, 3, 4, 3))),
    "broadcast_to_mid": (lambda m, x: m.broadcast_to(m.sum(x, axis=1, keepdims=True), (2, 3, 4))),
    "concatenate0": (lambda m, x: m.concatenate([x, x * 2], axis=0)),
    "concatenate_neg": (lambda m, x: m.concatenate([x, x[..., :2]], axis=-1)),
    "concatenate_none": (lambda m, x: m.concatenate([x, x[0]], axis=None)),
    "stack0": (lambda m, x: m.stack([x, x + 1])),
    "stack1": (lambda m, x: m.stack([x, x + 1, x * 3], axis=1)),
    "stack_neg": (lambda m, x: m.stack([x, x + 1], axis=-1)),
    "split_int": (lambda m, x: m.split(x, 2, axis=2)[1]),
    "split_list": (lambda m, x: m.concatenate(m.split(x, [1, 3], axis=2)[::-1], axis=2)),
    "split_axis1": (lambda m, x: m.split(x, 3, axis=1)[2]),
    "pad_int": (lambda m, x: m.pad(x, 1)),
    "pad_pairs": (lambda m, x: m.pad(x, ((0, 1), (2, 0), (1, 1)))),
    "pad_value": (lambda m, x: m.pad(x, ((1, 1), (0, 0), (0, 2)), constant_values=3.0)),
    "take_flat": (lambda m, x: m.take(x, np.array([0, 5, 23, 5]))),
    "take_axis0": (lambda m, x: m.take(x, np.array([1, 0, 1]), axis=0)),
    "take_axis1": (lambda m, x: m.take(x, np.array([[2, 0], [1, 1]]), axis=1)),
    "take_axis_neg": (lambda m, x: m.take(x, np.array([3, 0]), axis=-1)),
}


@pytest.mark.parametrize("name", sorted(SHAPE_OPS))
def test_shape_ops(name):
    f = SHAPE_OPS[name]
    check(f(fnp, fnp.asarray(X234)), f(np, X234))
    check(f(fnp, fnp.asarray(X234.astype(np.float32))), f(np, X234.astype(np.float32)))
    check(f(fnp, fnp.asarray(X234)), jit_eval(lambda x: f(jnp, x), X234))
    check_grad_vs_jax(lambda x: f(fnp, x), lambda x: f(jnp, x), X234)


def test_split_returns_list_of_arrays():
    parts = fnp.split(fnp.arange(6.0), 3)
    assert len(parts) == 3
    for p, e in zip(parts, np.split(np.arange(6.0, dtype=np.float32), 3)):
        check(p, e)
    parts = fnp.split(fnp.arange(6.0), [2, 5])
    for p, e in zip(parts, np.split(np.arange(6.0, dtype=np.float32), [2, 5])):
        check(p, e)


def test_take_negative_indices_wrap_as_numpy():
    x = np.arange(5.0)
    check(fnp.take(x, np.array([-1, -5, 2])), np.take(x, np.array([-1, -5, 2])))


def test_concatenate_promotes():
    a, b = np.ones(2, np.float32), np.arange(3, dtype=np.int32)
    check(fnp.concatenate([a, b]), np.concatenate([a, b]))
    check(fnp.stack([np.ones(2, np.int32), np.zeros(2, np.float64)]),
          np.stack([np.ones(2, np.int32), np.zeros(2, np.float64)]))


# ---------------------------------------------------------------- indexing

X456 = np.arange(120.0).reshape(4, 5, 6) / 10.0 - 3.0

INDEXES = {
    "int": 1,
    "neg_int": -1,
    "np_int": np.int64(2),
    "slice": np.s_[1:3],
    "slice_step": np.s_[::2],
    "neg_step": np.s_[::-1],
    "neg_step2": np.s_[::-2],
    "neg_step_bounds": np.s_[3:0:-1],
    "neg_step_mid_axis": np.s_[:, 4:1:-2],
    "neg_start": np.s_[-2:],
    "empty_slice": np.s_[1:1],
    "int_int": (1, 2),
    "int_slice": np.s_[2, 1:4],
    "slice_int": np.s_[:, 2],
    "ellipsis_int": np.s_[..., 1],
    "ellipsis_mid": np.s_[1, ..., 2],
    "ellipsis_step": np.s_[..., ::2],
    "none": np.s_[None],
    "none_mid": np.s_[:, None, 1],
    "none_ellipsis": np.s_[None, ..., None],
    "int_ellipsis_none": np.s_[1, ..., None],
    "list": [0, 2],
    "list_dup": [0, 2, 0],
    "list_neg": [-1, 0],
    "int_array_2d": np.array([[0, 1], [3, 3]]),
    "slice_list": np.s_[:, [1, 3]],
    "adv_adjacent": ([0, 1], [1, 2]),
    "adv_adjacent_mid": np.s_[:, [0, 1], [2, 3]],
    "adv_separated": np.s_[[0, 1], :, [1, 2]],
    "int_slice_list": np.s_[1, :, [0, 2]],  # int + array split by a slice: front
    "slice_int_list": np.s_[:, 1, [0, 2]],  # adjacent: stays in place
    "adv_broadcast": np.s_[np.array([[0], [2]]), :, np.array([1, 3, 5])],
    "adv_with_none": np.s_[None, [0, 1], 1:3],
    "bool_full": X456 > 0.5,
    "bool_2d": (X456.sum(axis=2) > 0),
    "bool_axis1": np.s_[:, np.array([True, False, True, False, True])],
    "bool_list": [True, False, False, True],
}


@pytest.mark.parametrize("name", sorted(INDEXES))
def test_indexing(name):
    idx = INDEXES[name]
    check(fnp.asarray(X456)[idx], X456[idx])
    check(fnp.asarray(X456.astype(np.float32))[idx], X456.astype(np.float32)[idx])
    # JAX refuses Python lists as indices; give it the equivalent array.
    jidx = np.asarray(idx) if isinstance(idx, list) else idx
    check(fnp.asarray(X456)[idx], jit_eval(lambda x: x[jidx], X456))
    check_grad_vs_jax(lambda x: x[idx], lambda x: x[jidx], X456)


def test_indexing_with_fgrad_arrays_and_int_arrays():
    x = fnp.asarray(X456)
    i = fnp.asarray([3, 0, 3])
    check(x[i], X456[[3, 0, 3]])
    check(x[:, i[:2]], X456[:, [3, 0]])
    check(x[fnp.asarray(1)], X456[1])
    check(x[x > 0], X456[X456 > 0])
    check(fnp.asarray(np.arange(5))[np.array([4, 1])], np.arange(5)[[4, 1]])


def test_indexing_out_of_bounds_int_raises():
    with pytest.raises(IndexError):
        fnp.asarray(X456)[4]
    with pytest.raises(IndexError):
        fnp.asarray(X456)[0, 5]
    with pytest.raises(IndexError):
        fnp.asarray(X456)[0, 0, 0, 0]


def test_indexing_under_grad_with_traced_index_array():
    # An integer index that is itself an argument (traced): lowered to a gather.
    def f(x, i):
        return fnp.sum(fnp.sin(x[i]))

    i = fnp.asarray([2, 0, 2])
    g = fgrad.grad(f)(fnp.asarray(X456), i)
    jg = jax.grad(lambda x: jnp.sum(jnp.sin(x[jnp.asarray([2, 0, 2])])))(X456)
    check(g, np.asarray(jg))
    jaxpr = fgrad.make_jaxpr(lambda x, i: x[i])(fnp.asarray(X456), i)
    assert "gather" in str(jaxpr)


# ---------------------------------------------------------------- .at[] updates

AT_CASES = {
    "int": 1,
    "neg_int": -1,
    "slice": np.s_[1:3],
    "neg_step": np.s_[::-2],
    "tuple": (1, 2),
    "slice_int": np.s_[:, 2],
    "ellipsis": np.s_[..., 0],
    "int_array": np.array([0, 3]),
    "int_array_neg": np.array([-1, 0]),
    "adv_pair": (np.array([0, 1]), np.array([2, 4])),
    "adv_slice": np.s_[np.array([0, 3]), 1:3],
    "mask": X456 > 1.0,
}


@pytest.mark.parametrize("name", sorted(AT_CASES))
@pytest.mark.parametrize("mode", ["set", "add", "mul", "min", "max", "get"])
def test_at_updates_match_jax(name, mode):
    idx = AT_CASES[name]
    x = fnp.asarray(X456)
    if mode == "get":
        check(x.at[idx].get(), jit_eval(lambda a: a.at[idx].get(), X456))
        return
    # A scalar update, and an update shaped like the selection.
    sel_shape = X456[idx].shape
    vals = np.linspace(-2.0, 2.0, int(np.prod(sel_shape))).reshape(sel_shape)
    for v in (0.5, vals):
        out = getattr(x.at[idx], mode)(v)
        check(out, jit_eval(lambda a, v=v: getattr(a.at[idx], mode)(v), X456))
    # float32 stays float32 and Python-scalar updates are weak.
    out32 = getattr(fnp.asarray(X456.astype(np.float32)).at[idx], mode)(2.0)
    assert out32.dtype == np.float32


def test_at_add_accumulates_duplicates():
    x = fnp.zeros(5)
    idx = np.array([0, 2, 0, 0, 4])
    upd = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    out = x.at[idx].add(fnp.asarray(upd))
    expected = jnp.zeros(5, jnp.float32).at[idx].add(upd)
    check(out, np.asarray(expected))
    check(out, np.array([8.0, 0.0, 2.0, 0.0, 5.0], np.float32))
    # Rows of a matrix, duplicates included, with broadcasting of the update.
    m = fnp.ones((3, 2))
    check(m.at[np.array([1, 1])].add(1.0), np.array([[1, 1], [3, 3], [1, 1]], np.float32))


def test_at_does_not_mutate_and_broadcasts_row_updates():
    x = fnp.zeros((3, 4))
    y = x.at[1].set(fnp.arange(4.0))
    check(x, np.zeros((3, 4), np.float32))
    check(y[1], np.arange(4.0, dtype=np.float32))
    z = x.at[:, 0].set(7.0)
    check(z, np.zeros((3, 4), np.float32) + np.eye(3, 4, dtype=np.float32)[:, :1] * 0
          + np.array([[7, 0, 0, 0]] * 3, np.float32))


@pytest.mark.parametrize("mode", ["set", "add", "mul"])
def test_at_update_grads_match_jax(mode):
    idx = np.array([0, 3])
    x = np.linspace(-1.0, 2.0, 20).reshape(4, 5)
    v = np.linspace(0.5, 1.5, 10).reshape(2, 5)

    def f(a, b):
        return getattr(a.at[idx], mode)(b) * a

    def jf(a, b):
        kw = {"unique_indices": True} if mode == "mul" else {}  # JAX needs it for mul grads
        return getattr(a.at[idx], mode)(b, **kw) * a

    check_grad_vs_jax(f, jf, x, v, argnums=(0, 1))


# ---------------------------------------------------------------- immutability


def test_setitem_is_an_error_pointing_to_at():
    x = fnp.zeros(3)
    with pytest.raises(TypeError, match=r"\.at"):
        x[0] = 1.0
    with pytest.raises(TypeError, match=r"\.at"):
        x[1:] = fnp.ones(2)


def test_np_asarray_is_read_only_and_shares_memory():
    x = fnp.arange(6.0).reshape(2, 3)
    a = np.asarray(x)
    assert isinstance(a, np.ndarray)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 5.0
    assert np.shares_memory(a, np.asarray(x))  # no copy on conversion
    check(x, np.arange(6.0, dtype=np.float32).reshape(2, 3))


def test_creation_from_numpy_copies():
    src = np.ones(3)
    x = fnp.asarray(src)
    src[0] = 5.0
    check(x, np.ones(3))
    assert src.flags.writeable  # the caller's array is untouched


def test_eager_results_are_fgrad_arrays():
    x = fnp.ones((2, 3))
    outs = [
        x + 1,
        x.sum(),
        fnp.exp(x),
        x[0],
        x.T,
        x.reshape(3, 2),
        fnp.matmul(x, x.T),
        fnp.zeros(2),
        fnp.arange(3),
        fnp.eye(2),
        fnp.where(x > 0, x, 0.0),
        x.at[0].set(2.0),
        fnp.sum(np.ones(3)),
        fnp.asarray(np.ones(3)),
        fnp.maximum(np.ones(2), np.zeros(2)),
        fgrad.grad(lambda v: fnp.sum(v * v))(x),
    ]
    for o in outs:
        assert type(o) is fgrad.Array, type(o)
        assert not isinstance(o, np.ndarray)


# ---------------------------------------------------------------- methods and properties


def test_array_methods_and_properties():
    v = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    x = fnp.asarray(v)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and x.dtype == np.float32
    check(x.T, v.T)
    check(x.reshape(3, 2), v.reshape(3, 2))
    check(x.reshape((6,)), v.reshape((6,)))
    check(x.reshape(-1, 2), v.reshape(-1, 2))
    check(x.sum(), v.sum())
    check(x.sum(axis=0), v.sum(axis=0))
    check(x.sum(1, keepdims=True), v.sum(1, keepdims=True))
    check(x.mean(), v.mean())
    check(x.mean(axis=1), v.mean(axis=1))
    check(x.astype(np.int32), v.astype(np.int32))
    check(x.astype(fnp.float64), v.astype(np.float64))
    check(x.max(axis=0), v.max(axis=0))
    check(x.transpose(1, 0), v.transpose(1, 0))
    assert x[1, 2].item() == 5.0 and isinstance(x[1, 2].item(), float)
    assert fnp.asarray(3).item() == 3 and isinstance(fnp.asarray(3).item(), int)
    assert x.block_until_ready() is x
    assert len(x) == 2
    assert x.tolist() == v.tolist()
    assert float(x[0, 1]) == 1.0 and int(x[1, 0]) == 3
    assert [r.tolist() for r in x] == v.tolist()


def test_methods_work_on_tracers_under_grad():
    def f(p):
        assert p.shape == (2, 3) and p.ndim == 2 and p.size == 6 and p.dtype == np.float64
        q = p.T.reshape(6).reshape((3, 2)).astype(fnp.float64)
        r = p.block_until_ready()
        return q.sum() + r.mean() * 2.0 + (p * p).sum(axis=0).sum()

    v = np.arange(6.0).reshape(2, 3)
    check(fgrad.grad(f)(fnp.asarray(v)), np.ones((2, 3)) + 2.0 / 6.0 + 2 * v)


# ---------------------------------------------------------------- creation


def test_creation_functions():
    check(fnp.zeros(3), np.zeros(3, np.float32))
    check(fnp.zeros((2, 3)), np.zeros((2, 3), np.float32))
    check(fnp.ones((2, 1), fnp.float64), np.ones((2, 1)))
    check(fnp.ones(2, dtype=np.int32), np.ones(2, np.int32))
    check(fnp.full((2, 2), 3.5), np.full((2, 2), 3.5, np.float32))
    check(fnp.full(3, 2), np.full(3, 2, np.int32))
    check(fnp.full((2,), 1.5, fnp.float64), np.full((2,), 1.5))
    check(fnp.full((2,), np.float64(1.5)), np.full((2,), 1.5))
    i = np.arange(6, dtype=np.int32).reshape(2, 3)
    check(fnp.zeros_like(i), np.zeros_like(i))
    check(fnp.ones_like(fnp.ones(3, fnp.float64)), np.ones(3))
    check(fnp.full_like(i, 7), np.full_like(i, 7))
    check(fnp.full_like(np.ones(2, np.float32), 0.25), np.full(2, 0.25, np.float32))
    check(fnp.zeros_like(i, dtype=np.float32), np.zeros((2, 3), np.float32))
    check(fnp.arange(5), np.arange(5, dtype=np.int32))
    check(fnp.arange(2, 7), np.arange(2, 7, dtype=np.int32))
    check(fnp.arange(1, 8, 3), np.arange(1, 8, 3, dtype=np.int32))
    check(fnp.arange(5, 0, -2), np.arange(5, 0, -2, dtype=np.int32))
    check(fnp.arange(0.0, 1.0, 0.25), np.arange(0.0, 1.0, 0.25, dtype=np.float32))
    check(fnp.arange(4, dtype=np.float64), np.arange(4, dtype=np.float64))
    check(fnp.eye(3), np.eye(3, dtype=np.float32))
    check(fnp.eye(2, 3), np.eye(2, 3, dtype=np.float32))
    check(fnp.eye(3, k=1), np.eye(3, k=1, dtype=np.float32))
    check(fnp.eye(3, k=-1, dtype=np.int32), np.eye(3, k=-1, dtype=np.int32))
    check(fnp.linspace(0.0, 1.0, 5), np.linspace(0.0, 1.0, 5, dtype=np.float32))
    check(fnp.linspace(0, 1, 4, endpoint=False), np.linspace(0, 1, 4, endpoint=False,
                                                                dtype=np.float32))
    check(fnp.linspace(-1, 1, 3, dtype=np.float64), np.linspace(-1, 1, 3))
    for a, b in [(fnp.zeros(3), jnp.zeros(3, jnp.float32)), (fnp.eye(2), jnp.eye(2, dtype=jnp.float32))]:
        check(a, np.asarray(b))


def test_asarray_from_python_and_numpy():
    check(fnp.asarray([1.0, 2.0]), np.array([1.0, 2.0], np.float32))
    check(fnp.asarray([[1, 2], [3, 4]]), np.array([[1, 2], [3, 4]], np.int32))
    check(fnp.asarray([1, 2.5]), np.array([1, 2.5], np.float32))
    check(fnp.asarray(1.5), np.asarray(1.5, np.float32))
    check(fnp.asarray(2), np.asarray(2, np.int32))
    check(fnp.asarray(True), np.asarray(True))
    check(fnp.asarray(np.float64(1.5)), np.asarray(1.5))
    check(fnp.asarray(np.arange(3)), np.arange(3))
    check(fnp.asarray(np.ones(2, np.float16)), np.ones(2, np.float16))
    check(fnp.asarray([1.0, 2.0], dtype=fnp.float64), np.array([1.0, 2.0]))
    check(fnp.array([fnp.ones(2), fnp.zeros(2)]), np.array([[1, 1], [0, 0]], np.float32))
    x = fnp.ones(2)
    assert fnp.asarray(x) is x
