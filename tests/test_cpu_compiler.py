"""The CPU compiler's program-level optimisations: reductions fused into their
producers' loops and buffers reused once their last reader has run.

Both paths are exercised: small programs (every array <= ``MERGE_MAX_ELEMENTS``) merge
their steps into segments, large ones compile one kernel per fusion group.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad.backends.cpu.segments import MERGE_MAX_ELEMENTS

SMALL, LARGE = (6, 5), (200, 120)  # LARGE has more than MERGE_MAX_ELEMENTS elements
assert LARGE[0] * LARGE[1] > MERGE_MAX_ELEMENTS >= SMALL[0] * SMALL[1]


def _eager_and_jit(f, *args):
    return np.asarray(f(*args)), np.asarray(fgrad.jit(f)(*args))


def _reduce_names(group):
    return [e.primitive.name for e in group.eqns if e.primitive.name.startswith("reduce_")]


@pytest.mark.parametrize("shape", [SMALL, LARGE])
def test_sum_of_elementwise_chain_is_one_loop_without_the_intermediate(shape):
    f = fgrad.jit(lambda x: fnp.sum(fnp.exp(x) * 2.0 + 1.0, axis=1))
    x = fnp.asarray(np.linspace(-1, 1, shape[0] * shape[1], dtype=np.float32).reshape(shape))
    program = f.program(x)
    (group,) = program.groups
    assert _reduce_names(group) == ["reduce_sum"]
    # The (n, m) chain result is never written: the only output is the (n,) sum.
    assert [v.aval.shape for v in group.outputs] == [(shape[0],)]
    (src,) = program.segment_sources.values()
    assert src.count("np.empty(") == 0 and src.count("np.full(") == 1
    expect = np.sum(np.exp(np.asarray(x, np.float64)) * 2 + 1, axis=1)
    np.testing.assert_allclose(np.asarray(f(x)), expect, rtol=1e-6)


def test_reading_a_fused_reduction_closes_its_group():
    # softmax: the max and the sum must be complete before their consumers run.
    def softmax(x):
        e = fnp.exp(x - fnp.max(x, axis=1, keepdims=True))
        return e / fnp.sum(e, axis=1, keepdims=True)

    x = fnp.asarray(np.random.default_rng(0).normal(size=LARGE).astype(np.float32))
    eager, jitted = _eager_and_jit(softmax, x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-7)
    groups = fgrad.jit(softmax).program(x).groups
    assert any(_reduce_names(g) == ["reduce_sum"] for g in groups)


def test_intermediate_read_elsewhere_is_still_written():
    def f(x):
        y = fnp.tanh(x) * 3.0
        return fnp.sum(y, axis=0), y + 1.0

    x = fnp.asarray(np.random.default_rng(1).normal(size=LARGE).astype(np.float32))
    program = fgrad.jit(f).program(x)
    assert any(_reduce_names(g) for g in program.groups)
    s_j, y_j = fgrad.jit(f)(x)
    y64 = np.tanh(np.asarray(x, np.float64)) * 3
    # float32 sums of 200 terms of size ~3: compare with float64 at float32 precision.
    np.testing.assert_allclose(np.asarray(s_j), y64.sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y_j), y64 + 1, rtol=1e-6, atol=1e-6)


_REDUCERS = {"sum": fnp.sum, "max": fnp.max, "min": fnp.min}


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    op=st.sampled_from(sorted(_REDUCERS)),
    dtype=st.sampled_from([np.float32, np.float64, np.int32]),
    large=st.booleans(),
)
def test_fused_reductions_match_eager(shape, data, op, dtype, large):
    if large:  # push the program past the merge threshold to use per-group kernels
        shape = (MERGE_MAX_ELEMENTS // 4 + 1,) + shape[1:]
    axes = data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1).map(sorted))
    rng = np.random.default_rng(len(shape) * 7 + len(axes))
    raw = rng.normal(size=shape) * 4
    if dtype == np.int32:
        raw = np.round(raw)
    x = fnp.asarray(raw.astype(dtype))

    def f(x):
        return _REDUCERS[op](x * x - x, axis=tuple(axes))

    eager, jitted = _eager_and_jit(f, x)
    assert jitted.dtype == eager.dtype and jitted.shape == eager.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(jitted, eager, rtol=tol, atol=tol)


def test_fused_max_propagates_nan_like_eager():
    x = np.ones(LARGE, np.float32)
    x[3, 7] = np.nan
    f = lambda x: fnp.max(x * 2.0, axis=1)  # noqa: E731
    eager, jitted = _eager_and_jit(f, fnp.asarray(x))
    np.testing.assert_array_equal(np.isnan(jitted), np.isnan(eager))
    assert np.isnan(jitted[3]) and np.isnan(jitted).sum() == 1


def test_float32_sum_accumulates_accurately():
    # 1e6 float32 ones plus a constant: a float32 running sum would drift.
    x = fnp.asarray(np.full((1000, 1000), 0.1, np.float32))
    got = float(np.asarray(fgrad.jit(lambda x: fnp.sum(x * 1.0))(x)))
    assert abs(got - 100000.0) / 100000.0 < 1e-6


def test_grad_through_fused_reductions_matches_eager():
    rng = np.random.default_rng(3)
    w = fnp.asarray(rng.normal(size=(30, 700)).astype(np.float32))

    def loss(w):
        return fnp.mean(fnp.log(fnp.sum(fnp.exp(fnp.tanh(w)), axis=1)))

    g_e = np.asarray(fgrad.grad(loss)(w))
    g_j = np.asarray(fgrad.jit(fgrad.grad(loss))(w))
    np.testing.assert_allclose(g_j, g_e, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- buffer reuse


def _deep(x, w):
    h = x
    outs = []
    for k in range(4):
        h = fnp.tanh(h @ w + 0.1 * k)
        outs.append(h * 2.0)  # a value returned to the caller: never reused
    return h.sum(), outs[1]


def test_dead_intermediates_are_reused_and_results_match_eager():
    rng = np.random.default_rng(7)
    x = fnp.asarray(rng.normal(size=(150, 150)).astype(np.float32) * 0.2)
    w = fnp.asarray(rng.normal(size=(150, 150)).astype(np.float32) * 0.1)
    f = fgrad.jit(_deep)
    program = f.program(x, w)
    assert not program.merged
    assert program.buffers_reused >= 3
    assert "out=v" in program.source  # a matmul into a dead buffer
    s_e, o_e = _deep(x, w)
    s_j, o_j = f(x, w)
    np.testing.assert_allclose(np.asarray(o_j), np.asarray(o_e), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(np.asarray(s_j)), float(np.asarray(s_e)), rtol=1e-5)


def test_outputs_of_one_call_survive_the_next_call():
    rng = np.random.default_rng(8)
    w = fnp.asarray(rng.normal(size=(150, 150)).astype(np.float32) * 0.1)
    f = fgrad.jit(_deep)
    x1 = fnp.asarray(rng.normal(size=(150, 150)).astype(np.float32))
    x2 = fnp.asarray(rng.normal(size=(150, 150)).astype(np.float32))
    _, first = f(x1, w)
    kept = np.array(np.asarray(first))
    f(x2, w)
    np.testing.assert_array_equal(np.asarray(first), kept)


def test_jitted_mlp_training_step_reuses_buffers_and_matches_eager():
    rng = np.random.default_rng(9)
    p = {
        "w1": fnp.asarray(rng.normal(size=(64, 300)).astype(np.float32) * 0.1),
        "w2": fnp.asarray(rng.normal(size=(300, 300)).astype(np.float32) * 0.05),
        "w3": fnp.asarray(rng.normal(size=(300, 10)).astype(np.float32) * 0.1),
    }
    x = fnp.asarray(rng.normal(size=(128, 64)).astype(np.float32))
    y = fnp.asarray(np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)])

    def loss(p, x, y):
        h = fgrad.nn.relu(x @ p["w1"])
        h = fgrad.nn.relu(h @ p["w2"])
        logits = h @ p["w3"]
        return fnp.mean(fgrad.nn.logsumexp(logits, axis=1) - fnp.sum(logits * y, axis=1))

    def step(p, x, y):
        value, g = fgrad.value_and_grad(loss)(p, x, y)
        return value, fgrad.tree.map(lambda a, b: a - 0.1 * b, p, g)

    jitted = fgrad.jit(step)
    assert jitted.program(p, x, y).buffers_reused >= 1
    v_e, p_e = step(p, x, y)
    v_j, p_j = jitted(p, x, y)
    np.testing.assert_allclose(float(np.asarray(v_j)), float(np.asarray(v_e)), rtol=1e-5)
    for k in p:
        np.testing.assert_allclose(np.asarray(p_j[k]), np.asarray(p_e[k]), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- slices as offset loads


def _gates(z, c):
    hid = z.shape[1] // 4
    i = fgrad.nn.sigmoid(z[:, :hid])
    f = fgrad.nn.sigmoid(z[:, hid : 2 * hid])
    g = fnp.tanh(z[:, 2 * hid : 3 * hid])
    o = fgrad.nn.sigmoid(z[:, 3 * hid :])
    c = f * c + i * g
    return o * fnp.tanh(c), c


@pytest.mark.parametrize("batch", [3, 70])
def test_unit_stride_slices_fuse_as_offset_loads(batch):
    rng = np.random.default_rng(11)
    z = fnp.asarray(rng.normal(size=(batch, 4 * 64)).astype(np.float32))
    c = fnp.asarray(rng.normal(size=(batch, 64)).astype(np.float32))
    f = fgrad.jit(_gates)
    program = f.program(z, c)
    names = [e.primitive.name for g in program.groups for e in g.eqns]
    assert names.count("slice") == 4 and len(program.groups) == 1
    assert "_f" not in program.source  # no slice runs outside the fused loop
    (h_e, c_e), (h_j, c_j) = _gates(z, c), f(z, c)
    np.testing.assert_allclose(np.asarray(h_j), np.asarray(h_e), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c_j), np.asarray(c_e), rtol=1e-5, atol=1e-6)


def test_slice_offsets_are_runtime_arguments():
    # A slice whose start depends on the batch size: the kernel source is the same.
    def f(x):
        n = x.shape[0] // 2
        return fnp.exp(x[n:]) + x[:n]

    srcs = []
    for n in (8, 12):
        x = fnp.asarray(np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 10)
        program = fgrad.jit(f).program(x)
        srcs.append(sorted(program.segment_sources.values()))
        xs = np.asarray(x)
        np.testing.assert_allclose(
            np.asarray(fgrad.jit(f)(x)), np.exp(xs[n // 2 :]) + xs[: n // 2], rtol=1e-6
        )
    assert srcs[0] == srcs[1]


@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
    data=st.data(),
)
def test_fused_slices_match_eager(shape, data):
    starts = [data.draw(st.integers(0, n - 1)) for n in shape]
    limits = [data.draw(st.integers(s + 1, n)) for s, n in zip(starts, shape)]
    x = fnp.asarray(np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32))

    def f(x):
        idx = tuple(slice(s, e) for s, e in zip(starts, limits))
        return fnp.tanh(x[idx]) * 2.0 + x[idx]

    eager, jitted = _eager_and_jit(f, x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- recycling across calls

_BIG = (300, 200)  # 240 KB of float32: above RECYCLE_MIN_BYTES


def _big_step(w, x):
    h = fnp.tanh(x @ w)
    return w - 0.01 * (x.T @ h), h * 2.0


def _big_args(seed):
    rng = np.random.default_rng(seed)
    w = fnp.asarray(rng.normal(size=(200, 200)).astype(np.float32) * 0.1)
    x = fnp.asarray(rng.normal(size=_BIG).astype(np.float32))
    return w, x


def test_outputs_the_caller_keeps_are_never_overwritten():
    f = fgrad.jit(_big_step)
    kept, expected = [], []
    for seed in range(6):
        w, x = _big_args(seed)
        out = f(w, x)
        kept.append(out)
        expected.append([np.array(np.asarray(o)) for o in out])
    for out, want in zip(kept, expected):
        for o, e in zip(out, want):
            np.testing.assert_array_equal(np.asarray(o), e)


def test_a_training_loop_recycles_dropped_results():
    f = fgrad.jit(_big_step)
    w, x = _big_args(0)
    seen = set()
    for _ in range(8):
        w, h = f(w, x)
        seen.add(id(np.asarray(h)))
    # Dropped results come back: a handful of distinct arrays, not one per call.
    assert len(seen) <= 3
    program = f.program(w, x)
    assert sum(len(v) for v in program.recycler._arrays.values()) <= sum(
        program.recycler._cap.values()
    )
    w_ref, x_ref = _big_args(0)
    for _ in range(8):
        w_ref, _ = _big_step(w_ref, x_ref)
    np.testing.assert_allclose(np.asarray(w), np.asarray(w_ref), rtol=1e-4, atol=1e-5)


def test_a_view_the_caller_keeps_keeps_its_buffer():
    f = fgrad.jit(_big_step)
    w, x = _big_args(1)
    _, h = f(w, x)
    view = np.asarray(h)[::7, 3:9]
    want = view.copy()
    del h
    for seed in range(4):
        f(*_big_args(seed + 10))
    np.testing.assert_array_equal(view, want)


def test_concurrent_calls_never_share_a_recycled_array():
    import threading

    f = fgrad.jit(_big_step)
    inputs = [_big_args(seed) for seed in range(4)]
    want = [[np.asarray(o) for o in _big_step(*a)] for a in inputs]
    f(*inputs[0])  # compile once
    errors = []

    def worker(k):
        for _ in range(25):
            got = f(*inputs[k])
            for g, e in zip(got, want[k]):
                if not np.allclose(np.asarray(g), e, rtol=1e-4, atol=1e-5):
                    errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
