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


# JAX compiles once per (function, shape, dtype) and that compile, not fgrad, dominates
# the run time of this file. So: JAX's value and gradient come from one jitted call, a
# function is jitted once per ``key`` (a fresh lambda per hypothesis example would
# recompile every time), and hypothesis compares with JAX only on small shape pools
# (GRAD_SHAPES) while NumPy, which is cheap, checks values on freely drawn shapes.
_JITTED: dict = {}


def _jax_value_and_grad(jf, argnums, key):
    def both(*xs):
        return jf(*xs), jax.grad(jsum_sin(jf), argnums=argnums)(*xs)

    if key is None:
        return jax.jit(both)
    key = (key, argnums)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(both)
    return _JITTED[key]


def check_vs_jax(f, jf, *args, argnums=0, rtol=1e-9, atol=1e-12, key=None):
    """``f(*args)`` and the gradient of ``sum(sin(f(*args)))`` equal JAX's (float64).

    The gradient must also keep the dtype of the argument it is taken for.
    """
    jval, jg = _jax_value_and_grad(jf, argnums, key)(*args)
    compare_with_jax(f, args, argnums, jval, jg, rtol, atol)


def check_cases_vs_jax(cases, argnums=0, rtol=1e-9, atol=1e-12, key=None):
    """``check_vs_jax`` for several ``(f, jf, args)`` cases, with one JAX call for all."""

    def run(all_args):
        return [
            (jf(*a), jax.grad(jsum_sin(jf), argnums=argnums)(*a))
            for (_, jf, _), a in zip(cases, all_args)
        ]

    if key is None:
        fn = jax.jit(run)
    else:
        fn = _JITTED.setdefault((key, argnums, "cases"), jax.jit(run))
    results = fn([args for _, _, args in cases])
    for (f, _, args), (jval, jg) in zip(cases, results):
        compare_with_jax(f, args, argnums, jval, jg, rtol, atol)


def compare_with_jax(f, args, argnums, jval, jg, rtol=1e-9, atol=1e-12):
    check(f(*[fnp.asarray(a) for a in args]), np.asarray(jval), rtol=rtol, atol=atol)
    g = fgrad.grad(sum_sin(f), argnums=argnums)(*[fnp.asarray(a) for a in args])
    g, jg = (g, jg) if isinstance(argnums, tuple) else ((g,), (jg,))
    for a, b in zip(g, jg):
        check(a, np.asarray(b), rtol=rtol, atol=atol)


_TABLES: dict = {}


def jax_table(table, cases):
    """JAX's (value, gradient of sum(sin(.))) for every case of a parametrized table.

    ``cases`` maps a case name to ``(jf, args, argnums)``; all of them are computed by
    one jitted call, made once per table.
    """
    if table not in _TABLES:

        def run(all_args):
            return {
                n: (jf(*all_args[n]), jax.grad(jsum_sin(jf), argnums=nums)(*all_args[n]))
                for n, (jf, _, nums) in cases.items()
            }

        _TABLES[table] = jax.jit(run)({n: tuple(c[1]) for n, c in cases.items()})
    return _TABLES[table]


def check_table_case(table, cases, name, f, rtol=1e-9, atol=1e-12):
    """Compare fgrad's ``f`` with case ``name`` of a JAX table (value and gradient)."""
    _, args, argnums = cases[name]
    jval, jg = jax_table(table, cases)[name]
    compare_with_jax(f, args, argnums, jval, jg, rtol, atol)


def shapes(min_dims=0, max_dims=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=4)


GRAD_SHAPES = [(), (2, 3)]
GRAD_BROADCAST_PAIRS = [((2, 3), (2, 3)), ((), (3,)), ((2, 1), (1, 3))]


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
    check(f(fnp.asarray(xd)), nf(xd))
    xgs = [data.draw(away_from_zero(s) if dom is None else arrays(s, *dom)) for s in GRAD_SHAPES]
    check_cases_vs_jax([(f, jf, (xg,)) for xg in xgs], key=name)


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
    xg = data.draw(arrays((2, 3)))
    xg = np.where(np.abs(np.abs(xg - 0.25) - 1.25) < 1e-3, 0.0, xg)
    check_vs_jax(lambda v: fnp.clip(v, lo, hi), lambda v: jnp.clip(v, lo, hi), xg, key="clip")


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
    (sx, sy), _ = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_side=3))
    lo = 0.2 if name in ("divide", "power") else -3.0
    x, y = data.draw(arrays(sx, lo, 3.0)), data.draw(arrays(sy, lo, 3.0))
    xd, yd = x.astype(dt), y.astype(dt)
    # As a function of fgrad.numpy and as an operator on fgrad arrays.
    check(getattr(fnp, name)(xd, yd), nf(xd, yd))
    check(op(fnp.asarray(xd), fnp.asarray(yd)), nf(xd, yd))
    pairs = [
        (data.draw(arrays(sx, lo, 3.0)), data.draw(arrays(sy, lo, 3.0)))
        for sx, sy in GRAD_BROADCAST_PAIRS
    ]
    check_cases_vs_jax([(op, jf, xy) for xy in pairs], argnums=(0, 1), key=name)


@pytest.mark.parametrize(
    "op", [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]
)
@given(data=st.data())
def test_comparison_operators(op, data):
    (sx, sy), _ = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_side=3))
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


def test_integer_powers_stay_integer():
    e = np.array([0, 1, 2, 5, 10], np.int32)
    check(2 ** fnp.asarray(e), 2**e)
    check(
        fnp.power(fnp.asarray(np.array([-3, 2, 7, 1, -1], np.int32)), fnp.asarray(e)),
        np.power(np.array([-3, 2, 7, 1, -1], np.int32), e),
    )
    check(fnp.asarray(e) ** 3, e**3)
    check(
        fnp.power(np.array([3, 2]), np.array([4, 40])),
        np.power(np.array([3, 2]), np.array([4, 40])),
    )
    with pytest.raises(ValueError, match="negative"):
        fnp.asarray(e) ** -1
    with pytest.raises(ValueError, match="negative"):
        fnp.power(fnp.asarray(e), fnp.asarray(-e))
    # Under a trace the exponent's bits are not known: all of them are used.
    jaxpr = fgrad.make_jaxpr(lambda b, x: b**x)(fnp.asarray(e), fnp.asarray(e))
    check(jaxpr(fnp.asarray(e), fnp.asarray(e))[0], e**e)


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
    (sc, sx, sy), _ = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_side=3))
    c = data.draw(hnp.arrays(np.bool_, sc))
    x, y = data.draw(arrays(sx)), data.draw(arrays(sy))
    check(fnp.where(c, x, y), np.where(c, x, y))
    check(fnp.where(c, x.astype(np.float32), 0.0), np.where(c, x.astype(np.float32), 0.0))
    c = data.draw(hnp.arrays(np.bool_, (2, 1)))
    x, y = data.draw(arrays((1, 3))), data.draw(arrays(()))
    check_vs_jax(fnp.where, jnp.where, c, x, y, argnums=(1, 2), key="where")


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
    check(f(fnp.asarray(xd), axis=axis, keepdims=keepdims), nf(xd, axis=axis, keepdims=keepdims))
    # Against JAX on (2, 3) for every axis choice; keepdims only reshapes, so its
    # gradient must agree with the one without.
    x = data.draw(arrays((2, 3), 0.2, 2.0, unique=True))
    cases = [
        (lambda v, a=a: f(v, axis=a), lambda v, a=a: jf(v, axis=a), (x,))
        for a in (None, 0, 1, -1, (0, 1))
    ]
    check_cases_vs_jax(cases, rtol=1e-8, key=name)
    fk = lambda v: f(v, axis=axis if len(shape) == 2 else 1, keepdims=True)  # noqa: E731
    fn = lambda v: f(v, axis=axis if len(shape) == 2 else 1)  # noqa: E731
    check(fgrad.grad(sum_sin(fk))(fnp.asarray(x)), fgrad.grad(sum_sin(fn))(x), rtol=1e-12)


def test_linalg_norm_edge_cases():
    v, m = np.array([0.0, -2.0, 3.0]), np.arange(6.0).reshape(2, 3)
    check(fnp.linalg.norm(v, 0), np.linalg.norm(v, 0))
    check(fnp.linalg.norm(np.ones((2, 3, 4))), np.linalg.norm(np.ones((2, 3, 4))))
    for ord in (2, -2, "nuc"):  # need singular values: refused, never silently wrong
        with pytest.raises(ValueError, match="not supported"):
            fnp.linalg.norm(m, ord)
    with pytest.raises(ValueError):
        fnp.linalg.norm(v, "fro")


def test_reduction_edge_cases():
    with pytest.raises(ValueError, match="zero-size"):
        fnp.max(np.ones((0, 3)))
    with pytest.raises(ValueError, match="zero-size"):
        fnp.min(np.ones((2, 0)), axis=1)
    check(fnp.max(np.ones((0, 3)), axis=1), np.max(np.ones((0, 3)), axis=1))
    check(fnp.max(np.ones((0, 3)), initial=2.0), np.max(np.ones((0, 3)), initial=2.0))
    check(fnp.sum(np.ones((0, 3)), axis=0), np.sum(np.ones((0, 3)), axis=0))
    check(fnp.prod(np.ones((0,))), np.prod(np.ones((0,))))
    x = np.arange(6.0).reshape(2, 3)
    check(fnp.max(x, initial=10.0), np.max(x, initial=10.0))
    check(
        fnp.mean(x.astype(np.float32), dtype=np.float64),
        np.mean(x.astype(np.float32), dtype=np.float64),
    )
    check(
        fnp.mean(x.astype(np.int32), dtype=np.float32),
        np.mean(x.astype(np.int32), dtype=np.float32),
    )
    check(fnp.argmax(x, keepdims=True), np.argmax(x, keepdims=True), dtype=False)
    check(fnp.argmin(x, keepdims=True), np.argmin(x, keepdims=True), dtype=False)


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
    axis = data.draw(st.sampled_from([0, 1, -1]))
    x = data.draw(arrays((2, 3)))
    check_vs_jax(
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
    check(fnp.sort(xd, axis=None), np.sort(xd, axis=None))
    axis = data.draw(st.sampled_from([0, 1, -1]))
    x = data.draw(arrays((2, 3), unique=True))
    check_vs_jax(
        lambda v: fnp.sort(v, axis=axis), lambda v: jnp.sort(v, axis=axis), x, key=("sort", axis)
    )


NORMS = [
    ((5,), None, None),
    ((5,), 2, None),
    ((5,), 1, None),
    ((5,), np.inf, None),
    ((5,), -np.inf, None),
    ((5,), 3, None),
    ((5,), 0.5, None),
    ((3, 4), None, None),
    ((3, 4), "fro", None),
    ((3, 4), 1, None),
    ((3, 4), -1, None),
    ((3, 4), np.inf, None),
    ((3, 4), -np.inf, (1, 0)),
    ((3, 4), 1, (1, 0)),
    ((3, 4), None, 1),
    ((3, 4), 2, 0),
    ((3, 4), 1, -1),
    ((2, 3, 4), "fro", (2, 0)),
    ((2, 3, 4), np.inf, (1, 2)),
]
NORM_CASES = {
    str(i): (
        lambda v, o=o, a=a: jnp.linalg.norm(v, ord=o, axis=a),
        (np.random.default_rng(0).uniform(-2, 2, s),),
        0,
    )
    for i, (s, o, a) in enumerate(NORMS)
}


@pytest.mark.parametrize("case", range(len(NORMS)))
def test_linalg_norm(case):
    _, ord, axis = NORMS[case]
    (x,) = NORM_CASES[str(case)][1]
    check(fnp.linalg.norm(x, ord=ord, axis=axis), np.linalg.norm(x, ord=ord, axis=axis))
    x32 = x.astype(np.float32)
    check(fnp.linalg.norm(x32, ord=ord, axis=axis), np.linalg.norm(x32, ord=ord, axis=axis))
    check(
        fnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True),
        np.linalg.norm(x, ord=ord, axis=axis, keepdims=True),
    )
    f = lambda v: fnp.linalg.norm(v, ord=ord, axis=axis)  # noqa: E731
    check_table_case("norm", NORM_CASES, str(case), f)


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


def _normal_args(seed, *shps):
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=s) for s in shps)


MATMUL_CASES = {str(sh): (jnp.matmul, _normal_args(1, *sh), (0, 1)) for sh in MATMUL_SHAPES}


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    a, b = MATMUL_CASES[str((sa, sb))][1]
    check(fnp.matmul(a, b), np.matmul(a, b))
    check(fnp.asarray(a) @ fnp.asarray(b), a @ b)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    check(fnp.matmul(a32, b32), np.matmul(a32, b32))
    check(fnp.matmul(a32, b), np.matmul(a32, b))  # promotes to float64
    check_table_case("matmul", MATMUL_CASES, str((sa, sb)), fnp.matmul)


DOT_SHAPES = [
    ((), (3,)),
    ((3,), ()),
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((2, 3, 4), (4, 5)),
    ((2, 3), (4, 3, 5)),
    ((2, 2, 3), (4, 3, 5)),
]
DOT_CASES = {str(sh): (jnp.dot, _normal_args(2, *sh), (0, 1)) for sh in DOT_SHAPES}


@pytest.mark.parametrize("sa, sb", DOT_SHAPES)
def test_dot(sa, sb):
    a, b = DOT_CASES[str((sa, sb))][1]
    check(fnp.dot(a, b), np.dot(a, b))
    check_table_case("dot", DOT_CASES, str((sa, sb)), fnp.dot)
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


EINSUM_CASES = {
    spec: (
        lambda *xs, spec=spec: jnp.einsum(spec, *xs),
        _normal_args(3, *shps),
        tuple(range(len(shps))),
    )
    for spec, shps in EINSUMS
}


@pytest.mark.parametrize("spec", [spec for spec, _ in EINSUMS])
def test_einsum(spec):
    ops = EINSUM_CASES[spec][1]
    check(fnp.einsum(spec, *ops), np.einsum(spec, *ops))
    check_table_case("einsum", EINSUM_CASES, spec, lambda *xs: fnp.einsum(spec, *xs))


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


SHAPE_OP_CASES = {n: (lambda x, f=f: f(jnp, x), (X234,), 0) for n, f in SHAPE_OPS.items()}


@pytest.mark.parametrize("name", sorted(SHAPE_OPS))
def test_shape_ops(name):
    f = SHAPE_OPS[name]
    check(f(fnp, fnp.asarray(X234)), f(np, X234))
    check(f(fnp, fnp.asarray(X234.astype(np.float32))), f(np, X234.astype(np.float32)))
    check_table_case("shape_ops", SHAPE_OP_CASES, name, lambda x: f(fnp, x))


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
    check(
        fnp.stack([np.ones(2, np.int32), np.zeros(2, np.float64)]),
        np.stack([np.ones(2, np.int32), np.zeros(2, np.float64)]),
    )


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


# JAX refuses Python lists as indices; it gets the equivalent arrays.
INDEX_CASES = {
    n: (lambda x, j=np.asarray(i) if isinstance(i, list) else i: x[j], (X456,), 0)
    for n, i in INDEXES.items()
}


@pytest.mark.parametrize("name", sorted(INDEXES))
def test_indexing(name):
    idx = INDEXES[name]
    check(fnp.asarray(X456)[idx], X456[idx])
    check(fnp.asarray(X456.astype(np.float32))[idx], X456.astype(np.float32)[idx])
    check_table_case("indexing", INDEX_CASES, name, lambda x: x[idx])


def _index_grad_oracle(x, idx):
    """Gradient of sum(sin(x[idx])) by NumPy: cos at each selected position, accumulated."""
    pos = np.arange(x.size).reshape(x.shape)[idx]
    w = np.cos(x.ravel()[pos])
    g = np.bincount(np.ravel(pos), np.ravel(w), minlength=x.size)
    return g.astype(x.dtype).reshape(x.shape)


@given(data=st.data())
def test_basic_indexing_fuzz(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    idx = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) / 7.0
    check(fnp.asarray(x)[idx], x[idx])
    g = fgrad.grad(lambda v: fnp.sum(fnp.sin(v[idx])))(fnp.asarray(x))
    check(g, _index_grad_oracle(x, idx))
    # .at[] with the same index, against NumPy's in-place forms.
    v = np.ones(x[idx].shape) * 2.5
    want = x.copy()
    want[idx] = v
    check(fnp.asarray(x).at[idx].set(v), want)
    want = x.copy()
    want[idx] += v
    check(fnp.asarray(x).at[idx].add(v), want)


@given(data=st.data())
def test_advanced_indexing_fuzz(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    idx = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(max_dims=2)))
    # Mix in a slice in a drawn position (both of NumPy's placement rules get hit).
    if len(idx) < len(shape) and data.draw(st.booleans()):
        k = data.draw(st.integers(0, len(idx)))
        idx = idx[:k] + (slice(None, None, data.draw(st.sampled_from([1, -1, 2]))),) + idx[k:]
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) / 7.0
    check(fnp.asarray(x)[idx], x[idx])
    g = fgrad.grad(lambda v: fnp.sum(fnp.sin(v[idx])))(fnp.asarray(x))
    check(g, _index_grad_oracle(x, idx))
    # Duplicates accumulate under .at[].add, as np.add.at.
    v = np.linspace(1.0, 2.0, x[idx].size).reshape(x[idx].shape)
    want = x.copy()
    np.add.at(want, idx, v)
    check(fnp.asarray(x).at[idx].add(v), want)
    want = x.copy()
    np.maximum.at(want, idx, v)
    check(fnp.asarray(x).at[idx].max(v), want)


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


AT_MODES = ["set", "add", "mul", "min", "max"]


def _at_values(idx):
    sel_shape = X456[idx].shape
    return np.linspace(-2.0, 2.0, int(np.prod(sel_shape))).reshape(sel_shape)


def _all_at_modes(a, v, idx):
    """Every ``.at`` mode, with an update shaped like the selection and a scalar one."""
    outs = {m: getattr(a.at[idx], m)(v) for m in AT_MODES}
    outs.update({m + "_scalar": getattr(a.at[idx], m)(0.5) for m in AT_MODES})
    outs["get"] = a.at[idx].get()
    return outs


_AT_EXPECTED: dict = {}


def jax_at_results():
    if not _AT_EXPECTED:  # one compile for every case and mode
        run = jax.jit(
            lambda x, vals: {n: _all_at_modes(x, vals[n], i) for n, i in AT_CASES.items()}
        )
        _AT_EXPECTED.update(run(X456, {n: _at_values(i) for n, i in AT_CASES.items()}))
    return _AT_EXPECTED


@pytest.mark.parametrize("name", sorted(AT_CASES))
def test_at_updates_match_jax(name):
    idx = AT_CASES[name]
    got = _all_at_modes(fnp.asarray(X456), fnp.asarray(_at_values(idx)), idx)
    expected = jax_at_results()[name]
    assert got.keys() == expected.keys()
    for k in got:
        check(got[k], np.asarray(expected[k]))
    # float32 stays float32: Python-scalar updates are weak.
    x32 = fnp.asarray(X456.astype(np.float32))
    for m in AT_MODES:
        assert getattr(x32.at[idx], m)(2.0).dtype == np.float32


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
    check(
        z,
        np.zeros((3, 4), np.float32)
        + np.eye(3, 4, dtype=np.float32)[:, :1] * 0
        + np.array([[7, 0, 0, 0]] * 3, np.float32),
    )


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

    check_vs_jax(f, jf, x, v, argnums=(0, 1))


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
    check(fnp.zeros_like([[1.0, 2.0]]), np.zeros((1, 2), np.float32))
    check(fnp.full_like([1, 2], 5), np.full(2, 5, np.int32))
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
    check(
        fnp.linspace(0, 1, 4, endpoint=False),
        np.linspace(0, 1, 4, endpoint=False, dtype=np.float32),
    )
    check(fnp.linspace(-1, 1, 3, dtype=np.float64), np.linspace(-1, 1, 3))
    for a, b in [
        (fnp.zeros(3), jnp.zeros(3, jnp.float32)),
        (fnp.eye(2), jnp.eye(2, dtype=jnp.float32)),
    ]:
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
