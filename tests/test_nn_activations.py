"""Activations against jax.nn (float64), gradients at the kinks, numerical stability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import nn

X = np.array([-3.0, -1.5, -0.2, 0.0, 0.3, 1.0, 2.5, 7.0])

ELEMENTWISE = [
    ("relu", nn.relu, jax.nn.relu),
    ("relu6", nn.relu6, jax.nn.relu6),
    ("sigmoid", nn.sigmoid, jax.nn.sigmoid),
    ("tanh", nn.tanh, jnp.tanh),
    ("elu", nn.elu, jax.nn.elu),
    ("elu_alpha", lambda x: nn.elu(x, 0.5), lambda x: jax.nn.elu(x, 0.5)),
    ("leaky_relu", nn.leaky_relu, jax.nn.leaky_relu),
    ("leaky_relu_slope", lambda x: nn.leaky_relu(x, 0.2), lambda x: jax.nn.leaky_relu(x, 0.2)),
    ("softplus", nn.softplus, jax.nn.softplus),
    ("log_sigmoid", nn.log_sigmoid, jax.nn.log_sigmoid),
    ("silu", nn.silu, jax.nn.silu),
    ("swish", nn.swish, jax.nn.swish),
    ("gelu_tanh", nn.gelu, jax.nn.gelu),
    (
        "gelu_exact",
        lambda x: nn.gelu(x, approximate=False),
        lambda x: jax.nn.gelu(x, approximate=False),
    ),
]


@pytest.mark.parametrize("name,ours,ref", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_elementwise_values_and_grads_match_jax(name, ours, ref):
    x = fnp.asarray(X)
    np.testing.assert_allclose(
        np.asarray(ours(x)), np.asarray(ref(jnp.asarray(X))), rtol=1e-12, atol=1e-14
    )
    # Gradients everywhere, including the kinks at 0 (and 6 for relu6), match JAX's
    # conventions.
    xs = np.concatenate([X, [6.0]])
    g = fgrad.grad(lambda v: fnp.sum(ours(v)))(fnp.asarray(xs))
    g_ref = jax.grad(lambda v: jnp.sum(ref(v)))(jnp.asarray(xs))
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-10, atol=1e-14)


def test_relu_grad_at_zero_is_zero():
    assert fgrad.grad(lambda x: nn.relu(x))(fnp.asarray(0.0)).item() == 0.0
    assert fgrad.grad(lambda x: nn.relu(x))(fnp.asarray(1e-30)).item() == 1.0


def test_default_dtype_and_integer_inputs():
    x32 = fnp.asarray([1.0, -1.0])
    for f in (nn.relu, nn.sigmoid, nn.gelu, nn.softmax, nn.elu, nn.softplus):
        assert f(x32).dtype == np.float32
    assert nn.relu(fnp.asarray([1, -2])).dtype == np.float32


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_matches_jax(axis):
    x = np.random.default_rng(0).standard_normal((3, 4)) * 3
    for ours, ref in ((nn.softmax, jax.nn.softmax), (nn.log_softmax, jax.nn.log_softmax)):
        np.testing.assert_allclose(
            np.asarray(ours(fnp.asarray(x), axis=axis)), np.asarray(ref(x, axis=axis)), rtol=1e-12
        )
    np.testing.assert_allclose(
        np.asarray(nn.logsumexp(fnp.asarray(x), axis=axis)),
        np.asarray(jax.nn.logsumexp(x, axis=axis)),
        rtol=1e-12,
    )
    w = np.random.default_rng(1).standard_normal((3, 4))
    g = fgrad.grad(lambda v: fnp.sum(nn.log_softmax(v, axis=axis) * w))(fnp.asarray(x))
    g_ref = jax.grad(lambda v: jnp.sum(jax.nn.log_softmax(v, axis=axis) * w))(x)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_stable_for_huge_logits(dtype):
    x = fnp.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype))
    ls = nn.log_softmax(x)
    sm = nn.softmax(x)
    assert np.all(np.isfinite(np.asarray(ls))) and np.all(np.isfinite(np.asarray(sm)))
    np.testing.assert_allclose(np.asarray(ls)[0], [0.0, -2e4, -1e4])
    np.testing.assert_allclose(np.asarray(sm)[1], [1 / 3] * 3, rtol=1e-6)
    g = fgrad.grad(lambda v: fnp.sum(nn.log_softmax(v)[:, 0]))(x)
    assert np.all(np.isfinite(np.asarray(g)))
    lse = nn.logsumexp(x, axis=-1)
    np.testing.assert_allclose(np.asarray(lse), [1e4, -1e4 + np.log(3)], rtol=1e-6)
    # softplus / log_sigmoid at the extremes.
    big = fnp.asarray(np.array([1e4, -1e4], dtype))
    np.testing.assert_allclose(np.asarray(nn.softplus(big)), [1e4, 0.0])
    np.testing.assert_allclose(np.asarray(nn.log_sigmoid(big)), [0.0, -1e4])
    assert np.all(np.isfinite(np.asarray(fgrad.grad(lambda v: fnp.sum(nn.elu(v)))(big))))


def test_one_hot():
    labels = fnp.asarray(np.array([0, 2, 1, 5]))
    out = nn.one_hot(labels, 3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        np.asarray(out), np.asarray(jax.nn.one_hot(np.array([0, 2, 1, 5]), 3))
    )
    assert nn.one_hot(labels, 3, dtype=np.int32).dtype == np.int32
    col = nn.one_hot(fnp.asarray(np.array([[1, 0]])), 2, axis=0)
    assert col.shape == (2, 1, 2)
    np.testing.assert_array_equal(np.asarray(col)[:, 0, :], [[0, 1], [1, 0]])


def test_activations_trace_under_jit():
    f = fgrad.jit(lambda x: nn.gelu(nn.softmax(x)) + nn.relu(x))
    x = fnp.asarray(np.linspace(-2, 2, 6).reshape(2, 3))
    np.testing.assert_allclose(
        np.asarray(f(x)), np.asarray(nn.gelu(nn.softmax(x)) + nn.relu(x)), rtol=1e-6
    )
