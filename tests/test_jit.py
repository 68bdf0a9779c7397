"""jit: caching, static arguments, pytrees, fusion, and agreement with eager execution."""

import logging
import warnings
from collections import namedtuple

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import core, lax


def _rng(seed=0):
    return np.random.default_rng(seed)


def _mlp_params(rng, sizes=(3, 5, 2), dtype=np.float32):
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"w{i}"] = fnp.asarray(rng.normal(size=(m, n)).astype(dtype))
        params[f"b{i}"] = fnp.asarray(rng.normal(size=(n,)).astype(dtype))
    return params


def _mlp_loss(params, x, y):
    h = fnp.tanh(x @ params["w0"] + params["b0"])
    logits = h @ params["w1"] + params["b1"]
    logp = logits - fnp.logsumexp(logits, axis=1, keepdims=True)
    return -fnp.mean(fnp.sum(logp * y, axis=1))


FUNCTIONS = {
    "chain": lambda x: fnp.exp(fnp.tanh(x) * 2.0 - 1.0) / (1.0 + x * x),
    "broadcast": lambda x: (
        x + fnp.arange(x.shape[-1], dtype=x.dtype) * fnp.ones((2, 1, 1), x.dtype)
    ),
    "reduce": lambda x: fnp.sum(x * x, axis=0) + fnp.max(x, axis=-1, keepdims=True).mean(),
    "matmul": lambda x: (x @ x.T) @ x,
    "index": lambda x: x[1:, ::2] * 2.0 + x[fnp.asarray([0, 2]), 1:][0, 0],
    "at": lambda x: x.at[0, 1].add(5.0).at[:, 0].set(-1.0),
    "concat": lambda x: fnp.concatenate([x, fnp.sin(x)], axis=1).sum(axis=1),
    "where": lambda x: fnp.where(x > 0, fnp.sqrt(fnp.abs(x)), x**3),
    "select_int": lambda x: (x > 0).astype(fnp.int32) * 3 + 1,
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_jit_matches_eager(name, backend):
    fn = FUNCTIONS[name]
    x = fnp.asarray(_rng(1).normal(size=(3, 4)).astype(np.float32))
    expected = fn(x)
    got = fgrad.jit(fn, backend=backend)(x)
    assert isinstance(got, fgrad.Array)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=2e-6, atol=1e-6)


def test_no_retrace_on_same_signature_and_retrace_on_new_shape():
    calls = []

    @fgrad.jit
    def f(x):
        calls.append(1)
        return x * 2.0

    f(fnp.ones(3))
    f(fnp.zeros(3))
    assert len(calls) == 1 and f.trace_count == 1
    f(fnp.ones(4))
    assert len(calls) == 2 and f.trace_count == 2
    f(fnp.ones(3, dtype=fnp.float64))
    assert f.trace_count == 3


def test_python_floats_are_dynamic():
    f = fgrad.jit(lambda x, lr: x - lr * x)
    a = f(fnp.ones(2), 0.1)
    b = f(fnp.ones(2), 0.5)
    assert f.trace_count == 1
    np.testing.assert_allclose(np.asarray(a), [0.9, 0.9], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(b), [0.5, 0.5], rtol=1e-6)


def test_static_argnums_and_argnames():
    def f(x, n, *, mode="sum"):
        y = x
        for _ in range(n):  # Python control flow on a static value
            y = y * 2.0
        return y.sum() if mode == "sum" else y.max()

    g = fgrad.jit(f, static_argnums=1, static_argnames="mode")
    x = fnp.asarray([1.0, 2.0])
    assert g(x, 2).item() == 12.0
    assert g(x, 3).item() == 24.0
    assert g(x, 3, mode="max").item() == 16.0
    assert g.trace_count == 3
    g(x, 3, mode="max")
    assert g.trace_count == 3


def test_unhashable_static_argument_is_a_clear_error():
    g = fgrad.jit(lambda x, cfg: x * len(cfg), static_argnums=1)
    with pytest.raises(TypeError, match="static arguments must be hashable") as info:
        g(fnp.ones(2), [1, 2])
    assert "test_jit.py" in str(info.value)


def test_pytrees_in_and_out_and_closures():
    Pair = namedtuple("Pair", "a b")
    w = fnp.asarray([1.0, -1.0])  # closed over: becomes a constvar

    @fgrad.jit
    def f(tree):
        return {"sum": tree["p"].a + tree["p"].b * w, "list": [tree["q"][0] * 2.0, None]}

    out = f({"p": Pair(fnp.ones(2), fnp.ones(2)), "q": [fnp.ones(1)]})
    assert out["list"][1] is None
    np.testing.assert_allclose(np.asarray(out["sum"]), [2.0, 0.0])
    jaxpr = fgrad.make_jaxpr(f.fun)({"p": Pair(fnp.ones(2), fnp.ones(2)), "q": [fnp.ones(1)]})
    assert len(jaxpr.jaxpr.constvars) == 1


def test_concretization_error_under_jit_names_the_fix():
    @fgrad.jit
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(fgrad.ConcretizationError) as info:
        f(fnp.ones(3))
    msg = str(info.value)
    assert "lax.cond" in msg and "static_argnums" in msg and "test_jit.py" in msg


def test_jit_of_grad_grad_of_jit_and_nested_jit():
    params = _mlp_params(_rng(2), dtype=np.float64)
    x = fnp.asarray(_rng(3).normal(size=(4, 3)))
    y = fnp.asarray(np.eye(2)[[0, 1, 1, 0]])
    eager = fgrad.grad(_mlp_loss)(params, x, y)
    jitted = fgrad.jit(fgrad.grad(_mlp_loss))(params, x, y)
    outer = fgrad.grad(fgrad.jit(_mlp_loss))(params, x, y)
    nested = fgrad.jit(lambda p, a, b: fgrad.jit(fgrad.grad(_mlp_loss))(p, a, b))(params, x, y)
    for got in (jitted, outer, nested):
        for k in eager:
            np.testing.assert_allclose(np.asarray(got[k]), np.asarray(eager[k]), rtol=1e-10)


def test_training_step_matches_eager_to_float32_rounding():
    rng = _rng(4)
    params = _mlp_params(rng)
    x = fnp.asarray(rng.normal(size=(8, 3)).astype(np.float32))
    y = fnp.asarray(np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)])

    def step(p, x, y, lr):
        loss, g = fgrad.value_and_grad(_mlp_loss)(p, x, y)
        return loss, fgrad.tree.map(lambda a, b: a - lr * b, p, g)

    jstep = fgrad.jit(step)
    pe, pj = params, params
    for _ in range(20):
        le, pe = step(pe, x, y, 0.1)
        lj, pj = jstep(pj, x, y, 0.1)
    assert jstep.trace_count == 1
    np.testing.assert_allclose(float(lj), float(le), rtol=1e-5)
    for k in pe:
        np.testing.assert_allclose(np.asarray(pj[k]), np.asarray(pe[k]), rtol=1e-5, atol=1e-6)
        assert pj[k].dtype == np.float32


def test_elementwise_chain_becomes_one_loop():
    f = fgrad.jit(lambda x, b: fnp.tanh(x * 2.0 + b) * fnp.exp(-x) - 1.0)
    x, b = fnp.ones((4, 3)), fnp.ones(3)
    program = f.program(x, b)
    groups = program.groups
    assert len(groups) == 1
    assert [e.primitive.name for e in groups[0].eqns] == [
        "mul",
        "broadcast_in_dim",
        "add",
        "tanh",
        "neg",
        "exp",
        "mul",
        "sub",
    ]
    assert len(groups[0].outputs) == 1  # intermediates never materialise
    (src,) = program.segment_sources.values()
    assert src.count("for i") == 2  # one 2-D loop nest
    assert src.count("np.empty(") == 1  # and one output array, no intermediates
    assert "np.matmul" not in program.source and program.source.count("_seg") == 1


def test_training_step_dispatches_no_eager_primitive_and_one_call_per_group(monkeypatch):
    rng = _rng(5)
    params = _mlp_params(rng)
    x = fnp.asarray(rng.normal(size=(8, 3)).astype(np.float32))
    y = fnp.asarray(np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)])

    @fgrad.jit
    def step(p, x, y):
        loss, g = fgrad.value_and_grad(_mlp_loss)(p, x, y)
        return loss, fgrad.tree.map(lambda a, b: a - 0.1 * b, p, g)

    program = step.program(params, x, y)
    counts = {"eager": 0}
    real_execute = core.execute

    def counting_execute(*a, **k):
        counts["eager"] += 1
        return real_execute(*a, **k)

    monkeypatch.setattr(core, "execute", counting_execute)
    calls = {}
    for name, kernel in list(program.kernels.items()):

        def wrapped(*args, _k=kernel, _n=name):
            calls[_n] = calls.get(_n, 0) + 1
            return _k(*args)

        program._globals[name] = wrapped
    step(params, x, y)
    assert counts["eager"] == 0
    # Fusion groups run inside segments: one Numba call per segment, each once.
    assert calls and set(calls.values()) == {1}
    assert len(calls) == len(program.segment_sources) <= len(program.groups)


def test_new_batch_size_retraces_without_new_numba_compile():
    f = fgrad.jit(lambda x, w, b: fnp.tanh(x @ w + b) * 2.0)
    w, b = fnp.ones((3, 4)), fnp.ones(4)
    f(fnp.ones((8, 3)), w, b)
    prog8 = f.program(fnp.ones((8, 3)), w, b)
    kernels8 = {k: v for k, v in prog8.kernels.items()}
    sigs8 = sum(len(k.signatures) for k in kernels8.values())
    f(fnp.ones((5, 3)), w, b)
    prog5 = f.program(fnp.ones((5, 3)), w, b)
    assert f.trace_count == 2
    assert set(map(id, prog5.kernels.values())) == set(map(id, kernels8.values()))
    assert sum(len(k.signatures) for k in prog5.kernels.values()) == sigs8


def test_log_compiles_and_retrace_warning_names_the_argument(caplog):
    f = fgrad.jit(lambda x, y: x + y.sum())
    old = fgrad.config.retrace_warning_threshold
    fgrad.config.update("log_compiles", True)
    fgrad.config.update("retrace_warning_threshold", 2)
    try:
        with caplog.at_level(logging.WARNING, logger="fgrad.jit"):
            f(fnp.ones(2), fnp.ones(3))
        assert any("traced and compiled" in r.getMessage() for r in caplog.records)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            f(fnp.ones(2), fnp.ones(4))
        msgs = [str(x.message) for x in w if issubclass(x.category, fgrad.RetraceWarning)]
        assert msgs and "argument 1" in msgs[0] and "f32[3]" in msgs[0] and "f32[4]" in msgs[0]
    finally:
        fgrad.config.update("log_compiles", False)
        fgrad.config.update("retrace_warning_threshold", old)


def test_jit_cache_is_bounded():
    f = fgrad.jit(lambda x: x + 1.0)
    old = fgrad.config.jit_cache_size
    fgrad.config.update("jit_cache_size", 3)
    try:
        for n in range(1, 7):
            f(fnp.ones(n))
        assert f.cache_size() == 3 and f.trace_count == 6
    finally:
        fgrad.config.update("jit_cache_size", old)


def test_identity_output_does_not_freeze_caller_buffer():
    x = np.arange(3.0)
    out = fgrad.jit(lambda a: a)(x)
    x[0] = 10.0  # the caller's array stays writable and independent
    assert out.tolist() == [0.0, 1.0, 2.0]


def test_integer_and_bool_programs():
    f = fgrad.jit(lambda i, m: fnp.where(m, i * 2, i // 2) + lax.convert_element_type(m, np.int32))
    i = fnp.asarray([1, -3, 4, 7])
    m = fnp.asarray([True, False, True, False])
    np.testing.assert_array_equal(
        np.asarray(f(i, m)), np.where([1, 0, 1, 0], [2, -6, 8, 14], [0, -2, 2, 3]) + [1, 0, 1, 0]
    )


def test_jitted_training_step_with_optimizer_state_compiles_once():
    from fgrad import optim

    rng = _rng(6)
    params = _mlp_params(rng)
    x = fnp.asarray(rng.normal(size=(8, 3)).astype(np.float32))
    y = fnp.asarray(np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)])
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-2))

    def step(p, state, x, y):
        loss, g = fgrad.value_and_grad(_mlp_loss)(p, x, y)
        updates, state = opt.update(g, state, p)
        return optim.apply_updates(p, updates), state, loss

    jstep = fgrad.jit(step)
    pe, se = params, opt.init(params)
    pj, sj = params, opt.init(params)
    for _ in range(15):
        pe, se, le = step(pe, se, x, y)
        pj, sj, lj = jstep(pj, sj, x, y)
    assert jstep.trace_count == 1
    np.testing.assert_allclose(float(lj), float(le), rtol=1e-5)
    for a, b in zip(fgrad.tree.leaves(sj), fgrad.tree.leaves(se)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
