"""lax.scan / cond / switch / while_loop / fori_loop: values, derivatives, IR, compilation."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.lax.control_flow import CarryTypeError


def _fd_grad(f, x, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (float(f(fnp.asarray(x + e))) - float(f(fnp.asarray(x - e)))) / (2 * eps)
    return g


def rnn_scan(w, xs):
    def step(h, x):
        h = fnp.tanh(h * w + x)
        return h, h * h

    h, ys = lax.scan(step, fnp.zeros(xs.shape[1], xs.dtype) + 0.1, xs)
    return h.sum() + ys.sum()


def rnn_unrolled(w, xs):
    h = fnp.zeros(xs.shape[1], xs.dtype) + 0.1
    total = 0.0
    for t in range(xs.shape[0]):
        h = fnp.tanh(h * w + xs[t])
        total = total + (h * h).sum()
    return h.sum() + total


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return fnp.asarray(rng.normal(size=(3,))), fnp.asarray(rng.normal(size=(6, 3)))


def test_scan_matches_unrolled_values_and_gradients(data):
    w, xs = data
    np.testing.assert_allclose(float(rnn_scan(w, xs)), float(rnn_unrolled(w, xs)), rtol=1e-12)
    for argnum in (0, 1):
        g_scan = fgrad.grad(rnn_scan, argnum)(w, xs)
        g_loop = fgrad.grad(rnn_unrolled, argnum)(w, xs)
        np.testing.assert_allclose(np.asarray(g_scan), np.asarray(g_loop), rtol=1e-10)
    fd = _fd_grad(lambda w_: rnn_scan(w_, xs), w)
    np.testing.assert_allclose(np.asarray(fgrad.grad(rnn_scan)(w, xs)), fd, rtol=1e-6)


def test_scan_second_order_and_jvp(data):
    w, xs = data
    h_scan = fgrad.hessian(rnn_scan)(w, xs)
    h_loop = fgrad.hessian(rnn_unrolled)(w, xs)
    np.testing.assert_allclose(np.asarray(h_scan), np.asarray(h_loop), rtol=1e-8, atol=1e-12)
    t = fnp.ones_like(w)
    _, jt = fgrad.jvp(lambda w_: rnn_scan(w_, xs), (w,), (t,))
    np.testing.assert_allclose(float(jt), float(fgrad.grad(rnn_scan)(w, xs).sum()), rtol=1e-10)


def test_scan_reverse_and_pytree_carry():
    xs = fnp.arange(5.0)
    (s, p), ys = lax.scan(
        lambda c, x: ((c[0] + x, c[1] * (x + 1)), c[0]), (0.0, 1.0), xs, reverse=True
    )
    assert s.item() == 10.0 and p.item() == 120.0
    assert ys.tolist() == [10.0, 9.0, 7.0, 4.0, 0.0]


def test_scan_ir_does_not_grow_with_length():
    def f(xs):
        return lax.scan(lambda c, x: (c * 0.9 + x, c), 0.0, xs)[0]

    short = fgrad.make_jaxpr(f)(fnp.ones(3))
    long = fgrad.make_jaxpr(f)(fnp.ones(100))
    assert len(short.eqns) == len(long.eqns) == 1
    assert "scan[" in str(long) and "length=100" in str(long)
    g_long = fgrad.make_jaxpr(fgrad.grad(lambda xs: f(xs)))(fnp.ones(100))
    g_short = fgrad.make_jaxpr(fgrad.grad(lambda xs: f(xs)))(fnp.ones(3))
    assert len(g_long.eqns) == len(g_short.eqns)


def test_jitted_scan_is_a_loop_in_the_program(data):
    w, xs = data
    jf = fgrad.jit(fgrad.value_and_grad(rnn_scan))
    value, grad = jf(w, xs)
    np.testing.assert_allclose(float(value), float(rnn_unrolled(w, xs)), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(grad), np.asarray(fgrad.grad(rnn_unrolled)(w, xs)), rtol=1e-10
    )
    program = jf.program(w, xs)
    assert "_loop" in program.source
    assert program.source.count("\n") < 30  # not unrolled over the 6 steps


def test_carry_type_mismatch_names_the_carry():
    with pytest.raises(CarryTypeError) as info:
        lax.scan(
            lambda c, x: ({"h": c["h"].astype(fnp.float64)}, x),
            {"h": fnp.ones(2)},
            fnp.ones((3, 2)),
        )
    msg = str(info.value)
    assert "['h']" in msg and "f32[2]" in msg and "f64[2]" in msg and "test_control_flow.py" in msg


def test_cond_and_switch_values_and_gradients():
    def f(x):
        return lax.cond(x.sum() > 0, lambda v: fnp.sin(v) * 2.0, lambda v: v**3, x)

    for x0 in ([0.5, 0.2], [-0.5, -0.2]):
        x = fnp.asarray(np.asarray(x0))
        expected = np.sin(x0) * 2 if sum(x0) > 0 else np.asarray(x0) ** 3
        np.testing.assert_allclose(np.asarray(f(x)), expected, rtol=1e-12)
        fd = _fd_grad(lambda v: f(v).sum(), x)
        np.testing.assert_allclose(np.asarray(fgrad.grad(lambda v: f(v).sum())(x)), fd, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(fgrad.jit(f)(x)), expected, rtol=1e-12)
    branches = [lambda v: v + 1.0, lambda v: v * 10.0, lambda v: -v]
    assert [lax.switch(i, branches, 2.0).item() for i in (-5, 0, 1, 2, 7)] == [
        3.0,
        3.0,
        20.0,
        -2.0,
        -2.0,
    ]
    jswitch = fgrad.jit(lambda i, v: lax.switch(i, branches, v))
    assert jswitch(1, 2.0).item() == 20.0 and jswitch(2, 2.0).item() == -2.0
    assert jswitch.trace_count == 1


def test_cond_branch_type_mismatch_is_an_error():
    with pytest.raises(TypeError, match="same types"):
        lax.cond(True, lambda v: v, lambda v: v.astype(fnp.float64), fnp.ones(2))


def test_fori_loop_static_bounds_is_differentiable_both_modes():
    def power(x):
        # i is int32: NumPy promotion (DESIGN) would widen f32 + i32, so cast it.
        return lax.fori_loop(0, 5, lambda i, v: v * x + i.astype(x.dtype), 1.0)

    def unrolled(x):
        v = 1.0
        for i in range(5):
            v = v * x + i
        return v

    x = fnp.asarray(1.3)
    np.testing.assert_allclose(float(power(x)), float(unrolled(x)), rtol=1e-6)
    np.testing.assert_allclose(
        float(fgrad.grad(power)(x)), float(fgrad.grad(unrolled)(x)), rtol=1e-6
    )
    _, t = fgrad.jvp(power, (x,), (fnp.asarray(1.0),))
    np.testing.assert_allclose(float(t), float(fgrad.grad(unrolled)(x)), rtol=1e-6)


def test_while_loop_forward_mode_and_reverse_mode_error():
    def f(x):
        return lax.while_loop(lambda v: v[0] < 50.0, lambda v: (v[0] * x, v[1] + 1), (1.0, 0))

    (val, n), (dval, _) = fgrad.jvp(f, (fnp.asarray(3.0),), (fnp.asarray(1.0),))
    assert val.item() == 81.0 and n.item() == 4
    assert dval.item() == pytest.approx(4 * 27.0)  # d/dx x^4
    assert fgrad.jit(f)(fnp.asarray(3.0))[0].item() == 81.0
    with pytest.raises(TypeError, match="fori_loop with static"):
        fgrad.grad(lambda x: f(x)[0])(fnp.asarray(3.0))


def test_fori_loop_with_traced_bounds_under_jit():
    f = fgrad.jit(lambda n: lax.fori_loop(0, n, lambda i, v: v + i, 0))
    assert f(fnp.asarray(5)).item() == 10 and f(fnp.asarray(7)).item() == 21
    assert f.trace_count == 1


def test_control_flow_prints_nested_jaxprs():
    text = str(fgrad.make_jaxpr(lambda x: lax.cond(x > 0, lambda v: v * 2.0, lambda v: v, x))(1.0))
    assert "cond[branches=" in text and text.count("lambda") == 3


def test_vmap_of_control_flow_matches_a_python_loop(data):
    w, xs = data
    ws = fnp.stack([w, w * 0.5, w * -1.0])
    batched = fgrad.vmap(rnn_scan, in_axes=(0, None))(ws, xs)
    np.testing.assert_allclose(
        np.asarray(batched), [float(rnn_scan(v, xs)) for v in ws], rtol=1e-12
    )
    per_example = fgrad.vmap(fgrad.grad(rnn_scan), in_axes=(0, None))(ws, xs)
    for row, v in zip(np.asarray(per_example), ws):
        np.testing.assert_allclose(row, np.asarray(fgrad.grad(rnn_scan)(v, xs)), rtol=1e-10)

    def g(x):  # batched predicate: becomes a select
        return lax.cond(x.sum() > 0, lambda v: v * 2.0, lambda v: -v, x)

    X = fnp.asarray(np.array([[1.0, 2.0], [-1.0, -3.0], [0.5, -0.1]]))
    np.testing.assert_allclose(
        np.asarray(fgrad.vmap(g)(X)), np.stack([np.asarray(g(x)) for x in X])
    )

    def h(x):  # each element stops at its own trip count
        return lax.while_loop(lambda v: v < 10.0, lambda v: v * 2.0, x)

    starts = fnp.asarray(np.array([1.0, 3.0, 20.0]))
    assert fgrad.vmap(h)(starts).tolist() == [16.0, 12.0, 20.0]
    assert fgrad.jit(fgrad.vmap(h))(starts).tolist() == [16.0, 12.0, 20.0]
