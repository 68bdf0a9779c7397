"""Compiled loops (fgrad.backends.cpu.loops) and grad-of-scan without recomputation."""

import inspect

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fgrad.backends.cpu import compiler, loops


def _scans(jaxpr):
    return [e for e in jaxpr.eqns if e.primitive.name == "scan"]


def _assert_trees_close(a, b, rtol=1e-10, atol=1e-12):
    for x, y in zip(fgrad.tree.leaves(a), fgrad.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture
def seq():
    rng = np.random.default_rng(1)
    return (
        fnp.asarray(rng.normal(size=(3, 3)) * 0.5),
        fnp.asarray(rng.normal(size=(5, 2, 3))),
        fnp.asarray(rng.normal(size=(5,))),
    )


def _two_carries(w, xs, s, reverse):
    def step(carry, x):
        h, c = carry
        xt, st = x
        z = fnp.tanh(h @ w + xt * st)
        c = 0.5 * c + fnp.sin(z)
        return (z, c), (z.sum(), c * st)  # a scalar y and an array y

    init = (fnp.zeros((2, 3), xs.dtype) + 0.1, fnp.ones((2, 3), xs.dtype))
    return lax.scan(step, init, (xs, s), reverse=reverse)


@pytest.mark.parametrize("reverse", [False, True])
def test_jitted_scan_matches_eager_multiple_carries_and_ys(seq, reverse):
    w, xs, s = seq

    def f(w, xs, s):
        return _two_carries(w, xs, s, reverse)

    _assert_trees_close(fgrad.jit(f)(w, xs, s), f(w, xs, s))


@pytest.mark.parametrize("reverse", [False, True])
def test_jitted_grad_of_scan_matches_eager_and_unrolled(seq, reverse):
    w, xs, s = seq

    def loss(w, xs, s):
        (h, c), (tot, cs) = _two_carries(w, xs, s, reverse)
        return (h * c).sum() + (tot * tot).sum() + (cs**2).mean()

    def unrolled(w, xs, s):
        h, c = fnp.zeros((2, 3), xs.dtype) + 0.1, fnp.ones((2, 3), xs.dtype)
        tots, css = [], []
        order = range(4, -1, -1) if reverse else range(5)
        for t in order:
            h = fnp.tanh(h @ w + xs[t] * s[t])
            c = 0.5 * c + fnp.sin(h)
            tots.append(h.sum())
            css.append(c * s[t])
        tot = fnp.stack(tots)
        return (h * c).sum() + (tot * tot).sum() + (fnp.stack(css) ** 2).mean()

    g = fgrad.grad(loss, argnums=(0, 1, 2))
    expected = fgrad.grad(unrolled, argnums=(0, 1, 2))(w, xs, s)
    _assert_trees_close(g(w, xs, s), expected)
    _assert_trees_close(fgrad.jit(g)(w, xs, s), expected)
    _assert_trees_close(fgrad.jit(fgrad.value_and_grad(loss))(w, xs, s)[1], expected[0])


def test_scan_unused_ys_length_zero_and_scalar_xs():
    def f(x):
        c, ys = lax.scan(lambda c, x: (c * x + 1.0, (c, x * 2.0)), x[0], x)
        return c  # the ys are unused

    x = fnp.asarray([1.0, 2.0, 3.0])
    np.testing.assert_allclose(float(fgrad.jit(f)(x)), float(f(x)))
    np.testing.assert_allclose(
        np.asarray(fgrad.jit(fgrad.grad(f))(x)), np.asarray(fgrad.grad(f)(x)), rtol=1e-12
    )

    def empty(c):
        return lax.scan(lambda c, x: (c + 1.0, c), c, None, length=0)

    c = fnp.asarray([1.0, 2.0])
    out_c, ys = fgrad.jit(empty)(c)
    np.testing.assert_allclose(np.asarray(out_c), [1.0, 2.0])
    assert np.asarray(ys).shape == (0, 2)
    assert not np.shares_memory(np.asarray(out_c), np.asarray(c))


def test_fori_loop_grad_under_jit_with_int_counter():
    def f(x):
        return lax.fori_loop(0, 4, lambda i, v: v * x + i.astype(x.dtype), x)

    x = fnp.asarray(0.7)
    np.testing.assert_allclose(float(fgrad.jit(fgrad.grad(f))(x)), float(fgrad.grad(f)(x)))
    # v = x^5 + x^2 + 2x + 3
    np.testing.assert_allclose(float(fgrad.grad(f)(x)), 5 * 0.7**4 + 2 * 0.7 + 2, rtol=1e-6)


def test_while_and_cond_under_jit_match_eager():
    def f(x, n):
        v = lax.while_loop(lambda v: v[0] < n, lambda v: (v[0] + 1, v[1] * 1.5), (0, x))[1]
        return lax.cond(v.sum() > 10.0, lambda a: a * 2.0, lambda a: a - 1.0, v)

    x = fnp.asarray([1.0, 2.0])
    for n in (0, 1, 5):
        np.testing.assert_allclose(np.asarray(fgrad.jit(f)(x, n)), np.asarray(f(x, n)))
    out = fgrad.jit(lambda x: lax.while_loop(lambda v: v.sum() < 0.0, lambda v: v, x))(x)
    assert not np.shares_memory(np.asarray(out), np.asarray(x))  # zero iterations


def test_grad_of_scan_records_residuals_in_a_mergeable_forward_scan(seq):
    w, xs, s = seq

    def loss(w, xs, s):
        (h, c), _ = _two_carries(w, xs, s, False)
        return (h * c).sum()

    closed = fgrad.make_jaxpr(fgrad.value_and_grad(loss))(w, xs, s)
    jaxpr = closed.jaxpr
    fwd, record, back = _scans(jaxpr)
    body, rec_body = fwd.params["jaxpr"], record.params["jaxpr"]
    # The same equations (objects), more outputs: the residuals. Mergeable.
    assert all(a is b for a, b in zip(rec_body.eqns, body.eqns, strict=True))
    assert rec_body.outvars[: len(body.outvars)] == body.outvars
    assert len(rec_body.outvars) > len(body.outvars)
    # The backward body applies VJP rules only: it does not recompute the forward.
    assert len(back.params["jaxpr"].eqns) > 0
    merged = loops.merge_scans(jaxpr)
    assert len(_scans(merged)) == 2
    assert [e.params["reverse"] for e in _scans(merged)] == [False, True]
    # The merged program gives the same values.
    before = fgrad.core.eval_jaxpr(jaxpr, closed.consts, w, xs, s)
    after = fgrad.core.eval_jaxpr(merged, closed.consts, w, xs, s)
    _assert_trees_close(before, after)


@pytest.mark.skipif(
    "optimize_loops" not in inspect.getsource(compiler),
    reason="the compiler does not run loops.optimize_loops on its jaxpr yet",
)
def test_jitted_grad_of_scan_runs_the_forward_loop_once(seq, monkeypatch):
    w, xs, s = seq
    calls = {"fwd": 0}
    real = loops.ScanLoop.__init__

    def spy_init(self, eqn, make_program):
        real(self, eqn, make_program)
        if not eqn.params["reverse"]:
            fn = self._fn

            def counted(*a):
                calls["fwd"] += 1
                return fn(*a)

            self._fn = counted

    monkeypatch.setattr(loops.ScanLoop, "__init__", spy_init)

    def loss(w, xs, s):
        (h, c), _ = _two_carries(w, xs, s, False)
        return (h * c).sum()

    fgrad.jit(fgrad.value_and_grad(loss))(w, xs, s)
    assert calls["fwd"] == 1


def _accumulating_scan(a, b, v0):
    """Carries updated by per-step sums: the pattern of a weight's cotangent."""

    def step(carry, x):
        acc_tn, acc_nt, acc_v, h = carry
        at, bt = x
        h = fnp.tanh(at * h.sum())  # a carry the sums do not hoist
        y = bt * 2.0
        acc_tn = acc_tn + lax.dot_general(h, y, (((0,), (0,)), ((), ())))  # h.T @ y
        acc_nt = lax.dot_general(y, h[:, :2], (((1,), (1,)), ((), ()))) + acc_nt  # y @ h.T
        acc_v = acc_v + y
        return (acc_tn, acc_nt, acc_v, h), y

    init = (fnp.zeros((3, 2), a.dtype), fnp.zeros((4, 4), a.dtype), v0, a[0])
    return lax.scan(step, init, (a, b), reverse=True)


def test_hoisted_scan_sums_match_the_loop():
    rng = np.random.default_rng(2)
    a = fnp.asarray(rng.normal(size=(6, 4, 3)))
    b = fnp.asarray(rng.normal(size=(6, 4, 2)))
    v0 = fnp.asarray(rng.normal(size=(4, 2)))
    closed = fgrad.make_jaxpr(_accumulating_scan)(a, b, v0)
    hoisted = loops.hoist_scan_sums(closed.jaxpr)
    (scan,) = _scans(hoisted)
    # acc_nt and acc_v leave the loop; acc_tn stays: stacking h (not yet a stacked
    # input or output) would take more memory than its (3, 2) carry.
    assert scan.params["num_carry"] == 2
    expected = _accumulating_scan(a, b, v0)
    got = fgrad.core.eval_jaxpr(hoisted, closed.consts, a, b, v0)
    _assert_trees_close(got, fgrad.tree.leaves(expected))
    compiled = compiler.Program(fgrad.core.ClosedJaxpr(hoisted, closed.consts))
    _assert_trees_close(compiled(*(np.asarray(x) for x in (a, b, v0))), fgrad.tree.leaves(expected))


def test_optimized_grad_of_an_rnn_matches_unoptimized(seq):
    w, xs, s = seq

    def loss(w, xs, s):
        def step(h, x):
            h = fnp.tanh(h @ w + x[0] * x[1])
            return h, h.sum()

        h, ys = lax.scan(step, fnp.zeros((2, 3), xs.dtype) + 0.1, (xs, s))
        return (h**2).sum() + ys.sum()

    closed = fgrad.make_jaxpr(fgrad.value_and_grad(loss, argnums=(0, 1, 2)))(w, xs, s)
    optimized = loops.optimize_loops(closed.jaxpr)
    scans = _scans(optimized)
    assert len(scans) == 2  # forward once, backward once
    assert scans[1].params["num_carry"] < _scans(closed.jaxpr)[2].params["num_carry"]
    args = [np.asarray(x) for x in (w, xs, s)]
    before = compiler.Program(closed)(*args)
    after = compiler.Program(fgrad.core.ClosedJaxpr(optimized, closed.consts))(*args)
    _assert_trees_close(after, before)


def test_sum_of_zero_pads_becomes_a_concatenate():
    def f(z):  # the VJP of slicing z into gates is a sum of pads
        parts = [fnp.tanh(z[:, :2]), z[:, 2:5] * 3.0, fnp.sin(z[:, 5:])]
        return sum((p**2).sum() for p in parts)

    z = fnp.asarray(np.random.default_rng(3).normal(size=(4, 7)))
    closed = fgrad.make_jaxpr(fgrad.grad(f))(z)
    names = [e.primitive.name for e in closed.jaxpr.eqns]
    assert names.count("pad") == 3
    rewritten = loops.pads_to_concatenate(closed.jaxpr)
    names = [e.primitive.name for e in rewritten.eqns]
    assert names.count("pad") == 0 and names.count("concatenate") == 1
    expected = fgrad.grad(f)(z)
    got = compiler.Program(fgrad.core.ClosedJaxpr(rewritten, closed.consts))(np.asarray(z))
    _assert_trees_close(got, [expected])

    def overlapping(z):  # pads that overlap (or leave gaps) stay pads
        return (z[:, :4] ** 2).sum() + (z[:, 2:] ** 2).sum()

    closed = fgrad.make_jaxpr(fgrad.grad(overlapping))(z)
    rewritten = loops.pads_to_concatenate(closed.jaxpr)
    assert [e.primitive.name for e in rewritten.eqns].count("pad") == 2


def test_loop_bodies_passing_inputs_through_keep_values_and_buffers_apart():
    """Loop bodies hand passed-through inputs straight back (no defensive copy): the
    results must still hold the right values, the stacked outputs must be copies, and
    no output may be the caller's own buffer."""
    init = fnp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    xs = fnp.asarray(np.ones((4, 2, 3), np.float32))
    const = fnp.asarray(np.full((2, 3), 7.0, np.float32))

    def f(init, xs, const):
        carry, ys = lax.scan(lambda c, x: ((c[0], const), (c[0], x)), (init, init), xs)
        w = lax.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, s[1]), (0, init))
        k = lax.cond(True, lambda a: a, lambda a: a * 2.0, const)
        return carry, ys, w[1], k

    got = fgrad.jit(f)(init, xs, const)
    want = f(init, xs, const)
    for g, w in zip(fgrad.tree.leaves(got), fgrad.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    (c0, c1), (y0, y1), w1, k = got
    for out in (c0, c1, w1, k):
        for arg in (init, xs, const):
            assert not np.shares_memory(np.asarray(out), np.asarray(arg))
    assert not np.shares_memory(np.asarray(y0), np.asarray(init))
    assert not np.shares_memory(np.asarray(y1), np.asarray(xs))
