"""custom_jvp, custom_vjp and checkpoint."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax


def naive_log1pexp(x):
    return fnp.log(1.0 + fnp.exp(x))


@fgrad.custom_vjp
def log1pexp(x):
    return fnp.logaddexp(0.0, x)


log1pexp.defvjp(lambda x: (log1pexp(x), x), lambda x, g: (g * lax.logistic(x),))


@fgrad.custom_jvp
def log1pexp_jvp(x):
    return fnp.logaddexp(0.0, x)


@log1pexp_jvp.defjvp
def _log1pexp_jvp_rule(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp_jvp(x), t * lax.logistic(x)


def test_custom_vjp_avoids_the_nan_of_the_automatic_rule():
    x = fnp.asarray([-1000.0, -3.0, 0.0, 3.0, 800.0])
    automatic = fgrad.grad(lambda v: naive_log1pexp(v).sum())(x)
    assert np.isnan(np.asarray(automatic)).any()  # exp overflows: inf / inf
    custom = fgrad.grad(lambda v: log1pexp(v).sum())(x)
    expected = 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
    np.testing.assert_allclose(np.asarray(custom), expected, rtol=1e-6)
    assert np.isfinite(np.asarray(custom)).all()
    np.testing.assert_allclose(
        np.asarray(fgrad.jit(fgrad.grad(lambda v: log1pexp(v).sum()))(x)), expected, rtol=1e-6
    )


def test_custom_vjp_forward_mode_is_an_error():
    with pytest.raises(TypeError, match="forward-mode"):
        fgrad.jvp(log1pexp, (1.0,), (1.0,))


def test_custom_jvp_both_modes_and_second_order():
    x = fnp.asarray([-1000.0, 0.5, 900.0])
    g = fgrad.grad(lambda v: log1pexp_jvp(v).sum())(x)
    np.testing.assert_allclose(np.asarray(g), [0.0, 1 / (1 + np.exp(-0.5)), 1.0], rtol=1e-6)
    _, t = fgrad.jvp(log1pexp_jvp, (x,), (fnp.ones(3),))
    np.testing.assert_allclose(np.asarray(t), np.asarray(g), rtol=1e-6)
    # d2/dx2 log1pexp = s(1-s); at 0 that is 0.25.
    assert fgrad.grad(fgrad.grad(log1pexp_jvp))(0.0).item() == pytest.approx(0.25)


def test_custom_vjp_with_nondiff_argnums_and_pytrees():
    def f(scale, tree):
        return tree["a"] * scale + tree["b"]

    cf = fgrad.custom_vjp(f, nondiff_argnums=(0,))
    cf.defvjp(
        lambda scale, tree: (f(scale, tree), None),
        lambda scale, res, g: ({"a": g * scale * 100.0, "b": g},),
    )
    g = fgrad.grad(lambda t: cf(2.0, t).sum())({"a": fnp.ones(2), "b": fnp.ones(2)})
    assert g["a"].tolist() == [200.0, 200.0] and g["b"].tolist() == [1.0, 1.0]


def _deep_tanh(params, x, checkpointed):
    def block(w, h):
        return fnp.tanh(fnp.tanh(h @ w) @ w)

    if checkpointed:
        block = fgrad.checkpoint(block)
    h = x
    for w in params:
        h = block(w, h)
    return (h * h).sum()


def test_checkpoint_same_gradients_and_fewer_residuals():
    rng = np.random.default_rng(0)
    params = [fnp.asarray(rng.normal(size=(8, 8)) * 0.5) for _ in range(4)]
    x = fnp.asarray(rng.normal(size=(5, 8)))
    plain = fgrad.grad(_deep_tanh)(params, x, False)
    remat = fgrad.grad(_deep_tanh)(params, x, True)
    for a, b in zip(plain, remat):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
    saved_plain = fgrad.saved_residuals(lambda p: _deep_tanh(p, x, False), params)
    saved_remat = fgrad.saved_residuals(lambda p: _deep_tanh(p, x, True), params)
    # Arguments (params, x) are kept either way; the intermediates are what remat saves.
    bytes_plain = sum(r[2] for r in saved_plain if r[0] == "intermediate")
    bytes_remat = sum(r[2] for r in saved_remat if r[0] == "intermediate")
    assert bytes_remat <= bytes_plain / 2
    assert any("test_custom_derivatives.py" in r[3] for r in saved_plain)
    jitted = fgrad.jit(fgrad.grad(_deep_tanh), static_argnums=2)(params, x, True)
    for a, b in zip(plain, jitted):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_print_saved_residuals_output(capsys):
    fgrad.print_saved_residuals(lambda x: fnp.tanh(x).sum(), fnp.ones(3))
    out = capsys.readouterr().out
    assert "f32[3] 12 bytes  intermediate" in out and "total: 1 arrays, 12 bytes" in out
