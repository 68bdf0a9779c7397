"""Tests for fgrad.ad: vjp, grad, value_and_grad, jvp, jacfwd, jacrev, hessian.

JAX (x64) is the oracle for derivatives; a hand-written NumPy backprop checks a
2-layer MLP to 1e-10; structural tests check that reverse mode is built from the
traced IR (only primitives, no re-run of the forward function).
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import core, lax, tree


def close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def same_tree(got, want, rtol=1e-10):
    """Same structure, and leaves equal in value, shape and dtype."""
    g_leaves, g_def = tree.tree_flatten(got)
    w_leaves, w_def = jax.tree_util.tree_flatten(want)
    assert len(g_leaves) == len(w_leaves)
    for g, w in zip(g_leaves, w_leaves):
        assert isinstance(g, fgrad.Array)
        assert g.shape == np.shape(w) and g.dtype == np.asarray(w).dtype, (g, w)
        close(g, w, rtol)


X = np.array([0.3, -1.2, 2.0])


# ---------------------------------------------------------------- higher-order grads


def test_grad_of_grad_and_third_derivative():
    f = lambda x: fnp.sin(x) * x**3  # noqa: E731
    jf = lambda x: jnp.sin(x) * x**3  # noqa: E731
    x = 0.7
    d1, d2, d3 = fgrad.grad(f), fgrad.grad(fgrad.grad(f)), fgrad.grad(fgrad.grad(fgrad.grad(f)))
    j1, j2, j3 = jax.grad(jf), jax.grad(jax.grad(jf)), jax.grad(jax.grad(jax.grad(jf)))
    w1, w2, w3 = jax.jit(lambda v: (j1(v), j2(v), j3(v)))(x)
    x64 = fnp.asarray(np.float64(x))
    close(d1(x64), w1)
    close(d2(x64), w2)
    close(d3(x64), w3)
    # And by hand: f''' of x**2 * exp(x) is (x**2 + 6x + 6) exp(x).
    g3 = fgrad.grad(fgrad.grad(fgrad.grad(lambda v: v**2 * fnp.exp(v))))(x64)
    close(g3, (x**2 + 6 * x + 6) * np.exp(x))


def test_higher_order_through_nonlinear_primitives():
    fns = [
        (lambda x: fnp.tanh(x) * fnp.log1p(x * x), lambda x: jnp.tanh(x) * jnp.log1p(x * x)),
        (
            lambda x: fnp.sqrt(1.0 + x**2) / (2.0 + fnp.cos(x)),
            lambda x: jnp.sqrt(1.0 + x**2) / (2.0 + jnp.cos(x)),
        ),
        (lambda x: fnp.maximum(x, 0.1) ** 3, lambda x: jnp.maximum(x, 0.1) ** 3),
    ]
    for f, jf in fns:
        d2 = jax.grad(jax.grad(jf))
        oracle = jax.jit(lambda x, d2=d2: (d2(x), jax.grad(d2)(x)))
        for x in (0.4, -0.8):
            x64 = fnp.asarray(np.float64(x))
            j2, j3 = oracle(x)
            close(fgrad.grad(fgrad.grad(f))(x64), j2)
            close(fgrad.grad(fgrad.grad(fgrad.grad(f)))(x64), j3)


def test_make_jaxpr_of_grad_prints_the_backward_program():
    f = lambda x: fnp.sum(fnp.sin(x) * x)  # noqa: E731
    jaxpr = fgrad.make_jaxpr(fgrad.grad(f))(fnp.ones(3))
    text = str(jaxpr)
    assert text.startswith("{ lambda ")
    assert "a:f32[3]" in text or "b:f32[3]" in text
    assert "sin" in text and "cos" in text and "mul" in text
    assert jaxpr.out_avals == [core.ShapedArray((3,), np.float32)]
    # The jaxpr computes the gradient when evaluated.
    (g,) = jaxpr(fnp.asarray(np.float32([0.1, 0.2, 0.3])))
    x = np.float32([0.1, 0.2, 0.3])
    close(g, np.cos(x) * x + np.sin(x), rtol=1e-6)
    for eqn in jaxpr.eqns:
        assert eqn.primitive.name in core.primitives


def test_grad_under_make_jaxpr_of_grad_of_grad():
    f = lambda x: fnp.sum(fnp.exp(x) * x)  # noqa: E731
    jaxpr = fgrad.make_jaxpr(fgrad.grad(lambda x: fnp.sum(fgrad.grad(f)(x))))(fnp.ones(2))
    (g,) = jaxpr(fnp.asarray(np.float32([0.5, 1.0])))
    x = np.float32([0.5, 1.0])
    close(g, np.exp(x) * (x + 2.0), rtol=1e-6)


# ---------------------------------------------------------------- pytree params


class Layer(NamedTuple):
    w: Any
    b: Any


@tree.register_dataclass
@dataclasses.dataclass
class Model:
    first: Any
    second: Any
    name: str = dataclasses.field(default="model", metadata={"static": True})


def _params():
    rng = np.random.default_rng(0)
    return {
        "layers": [
            Layer(rng.normal(size=(3, 2)), rng.normal(size=2)),
            {"w": rng.normal(size=(2, 2)), "scale": rng.normal()},
        ],
        "model": Model(first=rng.normal(size=2), second=(rng.normal(size=(2,)), 0.5)),
    }


def _loss(p, x, m):
    h = m.tanh(x @ p["layers"][0].w + p["layers"][0].b)
    h = m.sin(h @ p["layers"][1]["w"]) * p["layers"][1]["scale"]
    h = h * p["model"].first + p["model"].second[0] ** 2
    return m.sum(h * h) * p["model"].second[1]


def test_grad_through_nested_dict_list_namedtuple_dataclass():
    p_np = _params()
    x = np.random.default_rng(1).normal(size=(4, 3))
    p = tree.tree_map(lambda v: fnp.asarray(np.float64(v)), p_np)
    g = fgrad.grad(_loss)(p, x, fnp)
    # Same structure (and static metadata) as the params.
    assert tree.tree_structure(g) == tree.tree_structure(p)
    assert isinstance(g["layers"][0], Layer) and isinstance(g["model"], Model)
    assert g["model"].name == "model"
    # Values equal JAX's: JAX knows dict/list/namedtuple; the dataclass goes as a tuple.
    jp = {
        "layers": p_np["layers"],
        "model": (p_np["model"].first, p_np["model"].second),
    }

    def jloss(jp):
        q = {"layers": jp["layers"], "model": Model(*jp["model"])}
        return _loss(q, x, jnp)

    jg = jax.jit(jax.grad(jloss))(jax.tree_util.tree_map(jnp.float64, jp))
    close(g["layers"][0].w, jg["layers"][0].w)
    close(g["layers"][0].b, jg["layers"][0].b)
    close(g["layers"][1]["w"], jg["layers"][1]["w"])
    close(g["layers"][1]["scale"], jg["layers"][1]["scale"])
    close(g["model"].first, jg["model"][0])
    close(g["model"].second[0], jg["model"][1][0])
    close(g["model"].second[1], jg["model"][1][1])


# ---------------------------------------------------------------- argnums, has_aux, value_and_grad


def f3(x, y, z):
    return fnp.sum(fnp.sin(x) * y) + z**2


def jf3(x, y, z):
    return jnp.sum(jnp.sin(x) * y) + z**2


ARGS = (X, np.array([1.0, 2.0, -0.5]), 1.5)


def _fargs():
    return tuple(fnp.asarray(np.float64(a)) if np.ndim(a) == 0 else fnp.asarray(a) for a in ARGS)


@pytest.mark.parametrize("argnums", [0, 1, 2, (0,), (0, 2), (2, 0), (0, 1, 2)])
def test_argnums(argnums):
    g = fgrad.grad(f3, argnums=argnums)(*_fargs())
    jg = jax.grad(jf3, argnums=argnums)(*ARGS)
    if isinstance(argnums, int):
        assert isinstance(g, fgrad.Array)
        close(g, jg)
    else:
        assert isinstance(g, tuple) and len(g) == len(argnums)
        for a, b in zip(g, jg):
            close(a, b)


def test_has_aux_and_value_and_grad():
    def f(x, y, z):
        out = f3(x, y, z)
        return out, {"double": out * 2.0, "note": "aux passes through"}

    args = _fargs()
    g, aux = fgrad.grad(f, has_aux=True)(*args)
    close(g, jax.grad(jf3)(*ARGS))
    assert aux["note"] == "aux passes through"
    assert isinstance(aux["double"], fgrad.Array)  # aux comes out concrete, not a tracer
    close(aux["double"], 2 * jf3(*ARGS))

    v, g = fgrad.value_and_grad(f3, argnums=(0, 2))(*args)
    jv, jg = jax.value_and_grad(jf3, argnums=(0, 2))(*ARGS)
    close(v, jv)
    close(g[0], jg[0])
    close(g[1], jg[1])

    (v, aux), g = fgrad.value_and_grad(f, argnums=1, has_aux=True)(*args)
    (jv, _), jg = jax.value_and_grad(lambda *a: (jf3(*a), None), argnums=1, has_aux=True)(*ARGS)
    close(v, jv)
    close(g, jg)
    close(aux["double"], 2 * jv)


def test_grad_passes_keyword_arguments_through():
    def f(x, scale=1.0):
        return fnp.sum(x * x) * scale

    close(fgrad.grad(f)(fnp.asarray(X), scale=3.0), 6 * X)


def test_grad_accepts_python_scalars():
    assert fgrad.grad(lambda x: x * x)(3.0).item() == 6.0
    v, g = fgrad.value_and_grad(lambda x: x**3)(2.0)
    assert (v.item(), g.item()) == (8.0, 12.0)


# ---------------------------------------------------------------- vjp / jvp / jacobians vs JAX

FUNCS = {
    "tanh_matvec": (
        lambda x: fnp.tanh(fnp.asarray(np.arange(6.0).reshape(2, 3) / 5) @ x),
        lambda x: jnp.tanh(jnp.asarray(np.arange(6.0).reshape(2, 3) / 5) @ x),
    ),
    "softmax": (
        lambda x: fnp.exp(x - fnp.max(x)) / fnp.sum(fnp.exp(x - fnp.max(x))),
        lambda x: jnp.exp(x - jnp.max(x)) / jnp.sum(jnp.exp(x - jnp.max(x))),
    ),
    "outer_sin": (
        lambda x: fnp.sin(fnp.outer(x, x)) + fnp.cumsum(x),
        lambda x: jnp.sin(jnp.outer(x, x)) + jnp.cumsum(x),
    ),
    "norm_pow": (
        lambda x: fnp.linalg.norm(x) * x**2 / (1.0 + x[0] ** 2),
        lambda x: jnp.linalg.norm(x) * x**2 / (1.0 + x[0] ** 2),
    ),
}


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_jvp_vjp_jacobians_match_jax(name):
    f, jf = FUNCS[name]
    x, t = fnp.asarray(X), np.array([0.5, -1.0, 2.0])
    ct = np.linspace(-1, 1, np.size(f(x))).reshape(np.shape(f(x)))

    @jax.jit  # one compile for all of JAX's answers
    def oracle(x, t, ct):
        jout, jtan = jax.jvp(jf, (x,), (t,))
        return jout, jtan, jax.vjp(jf, x)[1](ct)[0], jax.jacfwd(jf)(x), jax.jacrev(jf)(x)

    jout, jtan, jg, jfwd, jrev = oracle(X, t, ct)
    out, tan = fgrad.jvp(f, (x,), (fnp.asarray(t),))
    close(out, jout)
    close(tan, jtan)

    y, f_vjp = fgrad.vjp(f, x)
    (g,) = f_vjp(fnp.asarray(ct))
    close(y, jout)
    close(g, jg)
    # <ct, J t> == <J^T ct, t>
    close(np.sum(np.asarray(tan) * ct), np.sum(np.asarray(g) * t))

    close(fgrad.jacfwd(f)(x), jfwd)
    close(fgrad.jacrev(f)(x), jrev)


@pytest.mark.parametrize("name", ["softmax", "norm_pow"])
def test_hessian_matches_jax(name):
    f, jf = FUNCS[name]
    h = fgrad.hessian(lambda x: fnp.sum(fnp.sin(f(x))))(fnp.asarray(X))
    jh = jax.jit(jax.hessian(lambda x: jnp.sum(jnp.sin(jf(x)))))(X)
    assert h.shape == (3, 3)
    close(h, jh, rtol=1e-9)
    close(h, np.asarray(h).T, rtol=1e-9)


def test_jacobians_of_pytrees_and_argnums():
    def f(a, b):
        return {"s": fnp.sum(a * b["u"]), "v": fnp.sin(a) * b["k"]}

    def jf(a, b):
        return {"s": jnp.sum(a * b["u"]), "v": jnp.sin(a) * b["k"]}

    a = np.array([0.1, 0.2])
    b = {"u": np.array([1.0, -1.0]), "k": 3.0}
    fb = tree.tree_map(lambda v: fnp.asarray(np.float64(v)), b)
    for fj, jj in ((fgrad.jacfwd, jax.jacfwd), (fgrad.jacrev, jax.jacrev)):
        got = fj(f, argnums=(0, 1))(fnp.asarray(a), fb)
        want = jax.jit(jj(jf, argnums=(0, 1)))(a, b)
        same_tree(got, want)


def test_jvp_with_pytrees():
    def f(p):
        return {"y": fnp.tanh(p["w"]) * p["c"], "z": p["w"].sum()}

    p = {"w": fnp.asarray(X), "c": fnp.asarray(np.float64(2.0))}
    t = {"w": fnp.asarray(np.ones(3)), "c": fnp.asarray(np.float64(0.5))}
    out, tan = fgrad.jvp(f, (p,), (t,))
    jout, jtan = jax.jvp(
        lambda q: {"y": jnp.tanh(q["w"]) * q["c"], "z": q["w"].sum()},
        ({"w": X, "c": 2.0},),
        ({"w": np.ones(3), "c": 0.5},),
    )
    same_tree(out, jout)
    same_tree(tan, jtan)


def test_vjp_with_pytree_output_and_multiple_primals():
    def f(a, b):
        return (a * b, {"s": fnp.sum(a)})

    a, b = fnp.asarray(X), fnp.asarray(np.float64(2.0))
    out, f_vjp = fgrad.vjp(f, a, b)
    ga, gb = f_vjp((fnp.asarray(np.ones(3)), {"s": fnp.asarray(np.float64(1.0))}))
    close(ga, np.full(3, 2.0) + 1.0)
    close(gb, X.sum())
    assert gb.shape == () and gb.dtype == np.float64


# ---------------------------------------------------------------- MLP vs hand-written backprop


def _mlp_params(rng):
    return {
        "l1": {"w": rng.normal(size=(4, 5)) * 0.5, "b": rng.normal(size=5) * 0.1},
        "l2": {"w": rng.normal(size=(5, 3)) * 0.5, "b": rng.normal(size=3) * 0.1},
    }


def _numpy_backprop(p, x, y):
    """Forward and backward of tanh MLP + softmax cross-entropy, by hand."""
    z1 = x @ p["l1"]["w"] + p["l1"]["b"]
    h = np.tanh(z1)
    z2 = h @ p["l2"]["w"] + p["l2"]["b"]
    z2s = z2 - z2.max(axis=1, keepdims=True)
    logp = z2s - np.log(np.exp(z2s).sum(axis=1, keepdims=True))
    n = x.shape[0]
    loss = -np.sum(y * logp) / n
    dz2 = (np.exp(logp) - y) / n
    dh = dz2 @ p["l2"]["w"].T
    dz1 = dh * (1 - h**2)
    grads = {
        "l1": {"w": x.T @ dz1, "b": dz1.sum(axis=0)},
        "l2": {"w": h.T @ dz2, "b": dz2.sum(axis=0)},
    }
    return loss, grads


def _fgrad_loss(p, x, y):
    h = fnp.tanh(x @ p["l1"]["w"] + p["l1"]["b"])
    z = h @ p["l2"]["w"] + p["l2"]["b"]
    z = z - fgrad.stop_gradient(fnp.max(z, axis=1, keepdims=True))
    logp = z - fnp.log(fnp.sum(fnp.exp(z), axis=1, keepdims=True))
    return -fnp.sum(y * logp) / x.shape[0]


def test_mlp_grad_matches_hand_derived_backprop():
    rng = np.random.default_rng(42)
    p = _mlp_params(rng)
    x = rng.normal(size=(8, 4))
    y = np.eye(3)[rng.integers(0, 3, size=8)]
    loss, grads = _numpy_backprop(p, x, y)
    fp = tree.tree_map(fnp.asarray, p)
    v, g = fgrad.value_and_grad(_fgrad_loss)(fp, fnp.asarray(x), fnp.asarray(y))
    close(v, loss, rtol=1e-10)
    for layer in ("l1", "l2"):
        for k in ("w", "b"):
            assert g[layer][k].dtype == np.float64 and g[layer][k].shape == p[layer][k].shape
            np.testing.assert_allclose(
                np.asarray(g[layer][k]), grads[layer][k], rtol=1e-10, atol=1e-12
            )


def test_mlp_grads_in_float32_stay_float32():
    rng = np.random.default_rng(0)
    p = tree.tree_map(lambda v: fnp.asarray(np.float32(v)), _mlp_params(rng))
    x = fnp.asarray(rng.normal(size=(8, 4)).astype(np.float32))
    y = fnp.asarray(np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=8)])
    g = fgrad.grad(_fgrad_loss)(p, x, y)
    for leaf, pleaf in zip(tree.tree_leaves(g), tree.tree_leaves(p)):
        assert leaf.dtype == np.float32 and leaf.shape == pleaf.shape


# ---------------------------------------------------------------- zeros, dtypes, control flow


def test_unused_inputs_get_zeros_of_the_right_shape_and_dtype():
    def f(p, q, r):
        return fnp.sum(p["a"] * 2.0)

    p = {"a": fnp.ones(3), "unused": fnp.ones((2, 2))}
    q = fnp.asarray(np.ones(4, np.float64))
    r = fnp.asarray(np.float32(1.0))
    gp, gq, gr = fgrad.grad(f, argnums=(0, 1, 2))(p, q, r)
    close(gp["a"], np.full(3, 2.0))
    for got, like in ((gp["unused"], p["unused"]), (gq, q), (gr, r)):
        assert isinstance(got, fgrad.Array)
        assert got.shape == like.shape and got.dtype == like.dtype
        assert not np.any(np.asarray(got))
    # An output that does not depend on the input at all.
    g = fgrad.grad(lambda x: fnp.asarray(np.float32(3.0)))(fnp.ones((2, 3)))
    assert g.shape == (2, 3) and g.dtype == np.float32 and not np.any(np.asarray(g))
    # The same through vjp and jvp.
    _, f_vjp = fgrad.vjp(lambda a, b: a * 2.0, fnp.ones(2), fnp.ones(5))
    ga, gb = f_vjp(fnp.ones(2))
    assert gb.shape == (5,) and gb.dtype == np.float32 and not np.any(np.asarray(gb))
    _, t = fgrad.jvp(lambda a: fnp.ones(3), (fnp.ones(2),), (fnp.ones(2),))
    assert t.shape == (3,) and not np.any(np.asarray(t))


def test_python_if_on_values_works_under_grad():
    def f(x):
        if x > 0:  # concrete under grad (no jit)
            return x**2
        return -3.0 * x

    assert fgrad.grad(f)(2.0).item() == 4.0
    assert fgrad.grad(f)(-2.0).item() == -3.0

    def g(x):
        total = 0.0
        while fnp.sum(x) < 10.0:  # a Python loop on a traced value
            x = x * 2.0
            total = total + fnp.sum(x)
        if float(x[0]) > 1.0 and int(fnp.argmax(x)) == 2:
            total = total * 1.0
        return total

    # x doubles until sum >= 10: [1, 2, 3] -> [2, 4, 6] -> stop; total = 12 = 2 * sum(x).
    close(fgrad.grad(g)(fnp.asarray([1.0, 2.0, 3.0])), np.full(3, 2.0))
    # Also inside jvp and grad of grad.
    close(fgrad.jvp(f, (1.5,), (1.0,))[1], 3.0)
    close(fgrad.grad(fgrad.grad(f))(1.5), 2.0)


def test_vjp_function_is_built_from_the_ir():
    calls = []

    def f(x, w):
        calls.append(1)
        return fnp.tanh(x @ w).sum(axis=0) * 2.0

    x, w = fnp.ones((2, 3)), fnp.ones((3, 4)) * 0.1
    out, f_vjp = fgrad.vjp(f, x, w)
    assert len(calls) == 1
    ct = fnp.ones(4)
    g1 = f_vjp(ct)
    g2 = f_vjp(ct * 2.0)
    assert len(calls) == 1  # the backward pass never runs the user's function again
    close(g2[0], 2 * np.asarray(g1[0]), rtol=1e-6)
    # make_jaxpr of the vjp function holds only registered primitives.
    jaxpr = fgrad.make_jaxpr(f_vjp)(ct)
    assert len(calls) == 1
    assert jaxpr.eqns, "the backward program is not empty"
    for eqn in jaxpr.eqns:
        assert eqn.primitive is core.primitives[eqn.primitive.name]
    assert [a.shape for a in jaxpr.out_avals] == [(2, 3), (3, 4)]
    got = jaxpr(fnp.ones(4))
    close(got[0], g1[0], rtol=1e-6)
    close(got[1], g1[1], rtol=1e-6)


def test_stop_gradient():
    def f(x):
        return fnp.sum(x * fgrad.stop_gradient(x) + lax.stop_gradient(x**2))

    x = fnp.asarray(X)
    close(fgrad.grad(f)(x), X)  # only the first factor is differentiated
    _, t = fgrad.jvp(f, (x,), (fnp.asarray(np.ones(3)),))
    close(t, X.sum())
    # Applied to a pytree, leaf by leaf; the values pass through unchanged.
    p = fgrad.stop_gradient({"a": x, "b": [fnp.ones(2)]})
    close(p["a"], X)
    assert p["b"][0].shape == (2,)
    # Second order: stop_gradient blocks the derivative at every order.
    h = fgrad.grad(fgrad.grad(lambda v: v * fgrad.stop_gradient(v) ** 2))(2.0)
    assert h.item() == 0.0


def test_grad_of_max_and_abs_follow_jax_at_ties_and_kinks():
    x = np.array([1.0, 3.0, 3.0])
    close(fgrad.grad(lambda v: fnp.max(v))(fnp.asarray(x)), jax.grad(jnp.max)(x))
    close(
        fgrad.grad(lambda a, b: fnp.maximum(a, b), argnums=(0, 1))(
            fnp.asarray(np.float64(1.0)), fnp.asarray(np.float64(1.0))
        ),
        jax.grad(jnp.maximum, argnums=(0, 1))(1.0, 1.0),
    )
    close(fgrad.grad(fnp.abs)(fnp.asarray(np.float64(0.0))), jax.grad(jnp.abs)(0.0))
    close(
        fgrad.grad(lambda v: fnp.sum(fnp.maximum(v, 0.0)))(fnp.asarray(np.zeros(2))),
        jax.grad(lambda v: jnp.sum(jnp.maximum(v, 0.0)))(np.zeros(2)),
    )
    close(
        fgrad.grad(fnp.logaddexp, argnums=(0, 1))(
            fnp.asarray(np.float64(0.5)), fnp.asarray(np.float64(0.5))
        ),
        jax.grad(jnp.logaddexp, argnums=(0, 1))(0.5, 0.5),
    )


def test_transforms_compose():
    x = np.array([0.3, -0.2])
    fx = fnp.asarray(x)
    # jvp of grad, grad of jvp, vjp of vjp: all second derivatives of sum(sin) / sum(u**3).
    _, t = fgrad.jvp(fgrad.grad(lambda v: fnp.sum(fnp.sin(v))), (fx,), (fnp.ones_like(fx),))
    close(t, -np.sin(x))
    g = fgrad.grad(lambda v: fgrad.jvp(lambda u: fnp.sum(u**3), (v,), (fnp.ones_like(v),))[1])(fx)
    close(g, 6 * x)
    (h,) = fgrad.vjp(lambda v: fgrad.vjp(fnp.sin, v)[1](fnp.ones_like(v))[0], fx)[1](
        fnp.ones_like(fx)
    )
    close(h, -np.sin(x))
    # A closure over an outer tracer.
    close(fgrad.grad(lambda a: fgrad.grad(lambda b: a * b * b)(3.0))(2.0), 6.0)
    # hessian of a function of a dict, against JAX.
    p = {"a": fx, "b": fnp.asarray(np.float64(2.0))}
    h = fgrad.hessian(lambda q: fnp.sum(q["a"] ** 3) * q["b"])(p)
    jh = jax.jit(jax.hessian(lambda q: jnp.sum(q["a"] ** 3) * q["b"]))({"a": x, "b": 2.0})
    for i in ("a", "b"):
        for j in ("a", "b"):
            close(h[i][j], jh[i][j])


def test_grad_of_one_element_tuple_output_is_a_clear_error():
    with pytest.raises(TypeError, match="scalar"):
        fgrad.grad(lambda v: (fnp.sum(v),))(fnp.ones(2))
