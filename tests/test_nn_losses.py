"""Losses against plain JAX formulas (float64), reductions, stability, penalties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import nn

rng = np.random.default_rng(0)
P = rng.standard_normal((4, 3))
T = rng.standard_normal((4, 3))
PROB = rng.uniform(0.05, 0.95, (4, 3))
BIN = (rng.uniform(size=(4, 3)) > 0.5).astype(np.float64)
SIGN = 2.0 * BIN - 1.0


def _bce_logits(x, t):
    return jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x)))


CASES = [
    ("mse", nn.mse, lambda p, t: (p - t) ** 2, P, T),
    ("mae", nn.mae, lambda p, t: jnp.abs(p - t), P, T),
    (
        "bce",
        nn.binary_cross_entropy,
        lambda p, t: -(t * jnp.log(p) + (1 - t) * jnp.log(1 - p)),
        PROB,
        BIN,
    ),
    (
        "bce_soft",
        nn.binary_cross_entropy,
        lambda p, t: -(t * jnp.log(p) + (1 - t) * jnp.log(1 - p)),
        PROB,
        PROB[::-1],
    ),
    (
        "bce_logits",
        lambda p, t, **kw: nn.binary_cross_entropy(p, t, from_logits=True, **kw),
        _bce_logits,
        P,
        BIN,
    ),
    ("hinge", nn.hinge, lambda p, t: jnp.maximum(0.0, 1 - t * p), P, SIGN),
    (
        "softmax_ce",
        nn.softmax_cross_entropy,
        lambda p, t: -jnp.sum(t * jax.nn.log_softmax(p), -1),
        P,
        np.eye(3)[[0, 2, 1, 1]],
    ),
    (
        "softmax_ce_soft",
        nn.softmax_cross_entropy,
        lambda p, t: -jnp.sum(t * jax.nn.log_softmax(p), -1),
        P,
        jax.nn.softmax(T),
    ),
]


@pytest.mark.parametrize("name,ours,ref,p,t", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_matches_jax_formula(name, ours, ref, p, t, reduction):
    elementwise = np.asarray(ref(jnp.asarray(p), jnp.asarray(t)))
    expected = {"mean": elementwise.mean(), "sum": elementwise.sum(), "none": elementwise}
    got = ours(fnp.asarray(p), fnp.asarray(np.asarray(t)), reduction=reduction)
    np.testing.assert_allclose(np.asarray(got), expected[reduction], rtol=1e-12, atol=1e-14)
    if reduction == "mean":  # default reduction, and the gradient w.r.t. predictions
        default = ours(fnp.asarray(p), fnp.asarray(np.asarray(t)))
        np.testing.assert_allclose(default.item(), expected["mean"], rtol=1e-12)
        g = fgrad.grad(lambda v: ours(v, fnp.asarray(np.asarray(t))))(fnp.asarray(p))
        g_ref = jax.grad(lambda v: jnp.mean(ref(v, jnp.asarray(t))))(jnp.asarray(p))
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-10, atol=1e-14)


def test_softmax_cross_entropy_integer_labels_equal_one_hot():
    labels = np.array([0, 2, 1, 1])
    a = nn.softmax_cross_entropy(fnp.asarray(P), fnp.asarray(labels), reduction="none")
    b = nn.softmax_cross_entropy(fnp.asarray(P), fnp.asarray(np.eye(3)[labels]), reduction="none")
    c = nn.softmax_cross_entropy_with_integer_labels(fnp.asarray(P), fnp.asarray(labels))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
    np.testing.assert_allclose(c.item(), np.asarray(b).mean(), rtol=1e-12)
    assert a.shape == (4,)
    g = fgrad.grad(lambda v: nn.softmax_cross_entropy(v, fnp.asarray(labels)))(fnp.asarray(P))
    expected = (np.asarray(jax.nn.softmax(P)) - np.eye(3)[labels]) / 4
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="integer labels"):
        nn.softmax_cross_entropy(fnp.asarray(P), fnp.asarray(np.array([0, 1])))


def test_losses_are_finite_for_extreme_inputs():
    logits = fnp.asarray(np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32))
    ce = nn.softmax_cross_entropy(logits, fnp.asarray(np.array([1, 1])), reduction="none")
    np.testing.assert_allclose(np.asarray(ce), [2e4, 0.0])
    x = fnp.asarray(np.array([1e4, -1e4, 50.0], np.float32))
    t = fnp.asarray(np.array([0.0, 1.0, 1.0], np.float32))
    bce = nn.binary_cross_entropy(x, t, from_logits=True, reduction="none")
    np.testing.assert_allclose(np.asarray(bce), [1e4, 1e4, 0.0], atol=1e-6)
    g = fgrad.grad(lambda v: nn.binary_cross_entropy(v, t, from_logits=True))(x)
    np.testing.assert_allclose(np.asarray(g), np.array([1.0, -1.0, 0.0]) / 3, atol=1e-7)
    # Probabilities of exactly 0 and 1 are clipped: finite loss, no NaN gradient.
    p = fnp.asarray(np.array([0.0, 1.0, 1.0], np.float32))
    loss = nn.binary_cross_entropy(
        p, fnp.asarray(np.array([1.0, 0.0, 1.0], np.float32)), reduction="none"
    )
    assert np.all(np.isfinite(np.asarray(loss))) and np.asarray(loss)[0] > 15
    assert np.asarray(loss)[2] < 1e-6


def test_loss_errors():
    with pytest.raises(ValueError, match="reduction"):
        nn.mse(fnp.zeros(3), fnp.zeros(3), reduction="avg")
    with pytest.raises(ValueError, match="same shape"):
        nn.mse(fnp.zeros(3), fnp.zeros(4))


def test_penalties_weights_only_rule():
    params = {
        "Dense_0": {"w": fnp.asarray([1.0, -2.0]), "b": fnp.asarray([10.0])},
        "BatchNorm_1": {"scale": fnp.asarray([3.0]), "bias": fnp.asarray([4.0])},
        "LSTM_2": {"w_x": fnp.asarray([1.0]), "w_h": fnp.asarray([-1.0]), "b": fnp.asarray([7.0])},
        "Embedding_3": {"table": fnp.asarray([[0.5, 0.5]])},
        "ids": fnp.asarray([3, 4]),  # integer leaves never count
    }
    assert nn.l1_penalty(params).item() == pytest.approx(1 + 2 + 10 + 3 + 4 + 1 + 1 + 7 + 1)
    assert nn.l1_penalty(params, weights_only=True).item() == pytest.approx(1 + 2 + 1 + 1 + 1)
    assert nn.l2_penalty(params).item() == pytest.approx(1 + 4 + 100 + 9 + 16 + 1 + 1 + 49 + 0.5)
    assert nn.l2_penalty(params, weights_only=True).item() == pytest.approx(1 + 4 + 1 + 1 + 0.5)
    g = fgrad.grad(lambda p: nn.l2_penalty(p, weights_only=True))(
        {"w": fnp.asarray([1.0, -2.0]), "b": fnp.asarray([3.0])}
    )
    np.testing.assert_allclose(np.asarray(g["w"]), [2.0, -4.0])
    np.testing.assert_allclose(np.asarray(g["b"]), [0.0])
    assert nn.l2_penalty({}).item() == 0.0
