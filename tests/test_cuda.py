"""The CUDA backend against the reference and CPU backends, on Numba's CUDA simulator.

Without a GPU these tests run the backend's kernels on Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set below before ``numba.cuda`` is imported; it changes
nothing for ``numba.njit`` CPU code). On a machine with a GPU, run them on the device
with ``NUMBA_ENABLE_CUDASIM=0 pytest tests/test_cuda.py``.

* every primitive, one small fixed case per dtype: the CUDA backend (eagerly, which
  compiles a one-equation program, and through ``jit``'s compile hook) equals the
  reference backend;
* a jitted MLP and a small CNN, loss and gradients, equal the CPU backend's; random
  bits (threefry2x32) are bit-identical; control flow runs as host loops over device
  data;
* fusion (one kernel per elementwise chain), kernels shared across batch sizes, the
  host fallback, device arrays, ``device_put`` and the error without a GPU;
* a PTX check: the kernels launched here compile for a real GPU (sm_80) through
  Numba's CUDA pipeline and ``ptxas``, where a CUDA toolkit is installed.

The simulator runs each CUDA thread as a Python thread, so every shape here is tiny.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from numba.core import config as numba_config  # noqa: E402

numba_config.reload_config()  # Numba read the environment when fgrad first imported it

import itertools  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from primitive_cases import CASES, Draw, load_tool  # noqa: E402

import fgrad  # noqa: E402
import fgrad.numpy as fnp  # noqa: E402
from fgrad import core, lax, nn, random  # noqa: E402
from fgrad.backends import cuda, reference  # noqa: E402
from fgrad.backends.cuda import program as cuda_program  # noqa: E402
from fgrad.backends.cuda import ptxcheck, runtime  # noqa: E402
from fgrad.device import device_put  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = load_tool()
TOOL.load_primitives()
PRIMS = TOOL.fgrad_primitives()
CASED = sorted(n for n in PRIMS if n in CASES)
BY_DTYPE = [(n, dt) for n in CASED for dt in CASES[n].dtypes]

if not runtime.is_available():  # pragma: no cover - e.g. numba.cuda imported without the simulator
    pytest.skip(
        "CUDA backend unavailable: no GPU, and numba.cuda was imported before this module "
        "could enable the simulator (set NUMBA_ENABLE_CUDASIM=1 in tests/conftest.py)",
        allow_module_level=True,
    )

FIXED = settings(
    max_examples=3,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def fixed_cases(name: str, dtype: str, check, examples: int = 3):
    """Run ``check(prim, args, params)`` on a few small, always the same, cases."""
    case, prim = CASES[name], PRIMS[name]

    @settings(FIXED, max_examples=examples)
    @given(data=st.data())
    def run(data):
        args, params = case.gen(Draw(data, dtype))
        check(prim, [np.asarray(a) for a in args], params)

    run()


def read_only(args):
    out = []
    for a in args:
        a = np.array(a)
        a.flags.writeable = False
        out.append(a)
    return out


def assert_same(got, want, ctx=""):
    """As the CPU backend's sweep: float tolerance by dtype, everything else exact."""
    assert len(got) == len(want), ctx
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert (g.shape, g.dtype) == (w.shape, w.dtype), ctx
        if w.dtype.kind == "f":
            tol = 1e-5 if w.dtype.itemsize <= 4 else 1e-12
            finite = np.abs(w[np.isfinite(w)])
            atol = tol * (float(finite.max()) if finite.size else 1.0)
            np.testing.assert_allclose(g, w, rtol=tol, atol=atol, err_msg=ctx)
        else:
            np.testing.assert_array_equal(g, w, err_msg=ctx)


def describe(prim, args, params) -> str:
    shapes = ", ".join(f"{a.dtype.name}{list(a.shape)}" for a in args)
    shown = {k: v for k, v in params.items() if isinstance(v, int | float | str | tuple)}
    return f"{prim.name}({shapes}) {shown}"


# ---------------------------------------------------------------- every primitive


@pytest.mark.parametrize(("name", "dtype"), BY_DTYPE)
def test_cuda_backend_matches_reference(name, dtype):
    def check(prim, args, params):
        want = reference.run(prim, read_only(args), params)
        got = cuda.run(prim, read_only(args), params)
        assert all(isinstance(g, cuda.CudaArray) for g in got)
        assert_same(got, want, describe(prim, args, params))

    fixed_cases(name, dtype, check)


@pytest.mark.parametrize("name", CASED)
def test_cuda_compiled_program_matches_reference(name):
    """The jit seam: the primitive traced into a jaxpr and compiled for CUDA."""

    def check(prim, args, params):
        if not args:
            return  # nothing to trace (iota_2x32_shape): under jit it is a constant
        closed = fgrad.make_jaxpr(lambda *xs: prim.bind(*xs, **params))(
            *[core.Array(np.array(a)) for a in args]
        )
        got = cuda.compile(closed)(*read_only(args))
        want = reference.run(prim, read_only(args), params)
        assert_same(got, want, describe(prim, args, params))

    fixed_cases(name, CASES[name].dtypes[0], check, examples=1)


def test_only_the_expected_primitives_fall_back_to_the_host():
    on_host = set()
    for name in CASED:

        def check(prim, args, params):
            avals = [core.get_aval(a) for a in args]
            if cuda._eager_program(prim, avals, params).host_steps:
                on_host.add(prim.name)

        fixed_cases(name, CASES[name].dtypes[0], check, examples=2)
    assert on_host <= {"argsort", "debug_print", "scatter"}, on_host


@pytest.mark.parametrize("dtype", ["float32", "int32"])
@pytest.mark.parametrize(
    ("shape", "axes"), [((3, 40), (1,)), ((2, 20, 3), (1, 2)), ((5, 3, 7), (0, 2))]
)
def test_shared_memory_tree_reductions(shape, axes, dtype):
    """Reductions of many elements per output, innermost axis reduced: the block-per-
    output tree (the small cases above take the one-thread-per-output kernel)."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 1.2).astype(dtype)
    if dtype == "float32":
        x.flat[5] = np.nan  # max/min/argmax propagate (and find) the NaN as NumPy does
    for name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        params = {"axes": axes}
        want = reference.run(PRIMS[name], [x], params)
        assert_same(cuda.run(PRIMS[name], [x], params), want, f"{name}{shape}{axes}")
    if len(axes) == 1:
        for name in ("argmax", "argmin"):
            params = {"axis": axes[0], "index_dtype": np.dtype(np.int32)}
            want = reference.run(PRIMS[name], [x], params)
            assert_same(cuda.run(PRIMS[name], [x], params), want, f"{name}{shape}{axes}")


def test_scatter_set_keeps_the_last_duplicate_and_add_accumulates():
    x = np.zeros((4, 2), np.float32)
    idx = np.array([1, 3, 1, -1, 7], np.int32)  # -1 wraps to 3; 7 is dropped
    u = np.arange(10, dtype=np.float32).reshape(5, 2)
    for mode in ("set", "add", "max", "min"):
        got = cuda.run(PRIMS["scatter"], [x, idx, u], {"mode": mode})
        want = reference.run(PRIMS["scatter"], [x, idx, u], {"mode": mode})
        assert_same(got, want, mode)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_select_and_scatter_add_routes_to_the_first_maximum(dtype, tmp_path):
    """The max-pool VJP on the device, against the reference: ties (first maximum in
    row-major window order wins), -inf and all-padding windows, NaN, padding and
    overlapping windows that send several sources to one element; no host step, and
    its kernels compile for sm_80."""
    prim = PRIMS["select_and_scatter_add"]
    rng = np.random.default_rng(0)
    records = []
    for shape in ((1, 5, 6, 2), (7,), (3, 4)):
        nd = len(shape)
        x = rng.integers(0, 3, shape).astype(dtype)  # few values: many ties
        if dtype != "int32":
            x.flat[0] = -np.inf  # a window starting in the padding then takes the -inf
            x.flat[1] = -np.inf
            if nd == 4 and dtype == "float32":
                x.flat[7] = np.nan
        for w, s, pad in itertools.product((2, 3), (1, 2), (0, 1, 2)):
            if nd == 4:  # NHWC pooling over the two spatial axes
                wd, ws, pd = (1, w, w, 1), (1, s, s, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0))
            else:
                wd, ws, pd = (w,) * nd, (s,) * nd, ((pad, pad),) * nd
            q = tuple((n + lo + hi - k) // st + 1 for n, k, st, (lo, hi) in zip(shape, wd, ws, pd))
            if min(q) <= 0:
                continue
            src = (rng.integers(1, 9, q)).astype(dtype)
            params = {"window_dimensions": wd, "window_strides": ws, "padding": pd}
            avals = [core.get_aval(a) for a in (src, x)]
            assert not cuda._eager_program(prim, avals, params).host_steps
            want = reference.run(prim, read_only([src, x]), params)
            records += _launches(cuda.run, prim, read_only([src, x]), params)
            got = cuda.run(prim, read_only([src, x]), params)
            assert_same(got, want, describe(prim, [src, x], params))
            np.testing.assert_array_equal(np.asarray(got[0]), want[0])  # same order: exact
    _ptx_check(records, tmp_path)


# ---------------------------------------------------------------- programs


def _values_and_grads(model, in_shape, batch=4, seed=0):
    params, state = model.init(random.key(seed), in_shape)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch,) + tuple(in_shape[1:])).astype(np.float32)
    y = rng.integers(0, 3, batch).astype(np.int32)

    def loss(params, x, y, key):
        logits, _ = model.apply(params, state, x, key=key, train=True)
        return nn.losses.softmax_cross_entropy(logits, y)

    return fgrad.value_and_grad(loss), (params, x, y, random.key(seed + 1))


def _assert_trees_close(got, want, rtol=2e-5, atol=1e-6):
    got_leaves, want_leaves = fgrad.tree.tree_leaves(got), fgrad.tree.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


MLP = nn.Sequential([nn.Dense(8), nn.relu, nn.Dropout(0.25), nn.Dense(3)])
CNN = nn.Sequential(
    [
        nn.Conv2D(3, (3, 3), padding="SAME"),
        nn.relu,
        nn.MaxPool2D((2, 2)),
        nn.Conv2D(4, (2, 2), strides=2),
        nn.Flatten(),
        nn.Dense(3),
    ]
)


@pytest.mark.parametrize(
    ("model", "in_shape"), [(MLP, (1, 5)), (CNN, (1, 6, 6, 2))], ids=["mlp", "cnn"]
)
def test_jitted_loss_and_gradient_match_the_cpu(model, in_shape):
    fn, args = _values_and_grads(model, in_shape)
    want = fn(*args)  # eagerly on the CPU backend (its jit would add a Numba compile)
    f = fgrad.jit(fn, backend="cuda")
    _assert_trees_close(f(*args), want)
    prog = f.program(*args)
    assert isinstance(prog, cuda_program.CudaProgram)
    assert not prog.host_steps  # everything on the device
    assert prog.groups  # elementwise chains fused


def test_random_bits_are_bit_identical_to_the_cpu():
    def draws(key):
        k1, k2, k3 = random.split(key, 3)
        return (
            random.bits(k1, (5, 3)),
            random.uniform(k2, (7,)),
            random.bernoulli(k3, 0.3, (6,)),
            random.normal(k1, (2, 3), dtype=np.float64),
        )

    key = random.key(42)
    want = draws(key)
    got = fgrad.jit(draws, backend="cuda")(key)
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    np.testing.assert_allclose(np.asarray(got[3]), np.asarray(want[3]), rtol=1e-14)


def test_control_flow_runs_as_host_loops_over_device_data():
    def f(w, xs, n):
        def body(c, x):
            c = fnp.tanh(c @ w + x)
            return c, c.sum()

        c, ys = lax.scan(body, fnp.zeros((2, 3), np.float32), xs)
        c = lax.cond(ys.sum() > 0, lambda c: c * 2.0, lambda c: c - 1.0, c)
        c = lax.fori_loop(0, n, lambda i, c: c * 0.5 + 1.0, c)
        return c, ys

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3)).astype(np.float32)
    xs = rng.normal(size=(4, 2, 3)).astype(np.float32)
    n = np.int32(3)
    _assert_trees_close(fgrad.jit(f, backend="cuda")(w, xs, n), f(w, xs, n))
    loss = lambda w, xs: f(w, xs, n)[0].sum()  # noqa: E731 - backprop through time
    _assert_trees_close(fgrad.jit(fgrad.grad(loss), backend="cuda")(w, xs), fgrad.grad(loss)(w, xs))


def _launches(fn, *args):
    runtime.record_launches = []
    try:
        fn(*args)
        return list(runtime.record_launches)
    finally:
        runtime.record_launches = None


def test_an_elementwise_chain_is_one_kernel_launch():
    f = fgrad.jit(lambda x, y, b: fnp.tanh(x * y + b[None, :]) * 2.0 - fnp.exp(-x), backend="cuda")
    x = np.ones((3, 4), np.float32)
    b = np.arange(4, dtype=np.float32)
    f(x, x, b)  # compile
    launches = _launches(f, x, x, b)
    assert [name for _, name, _ in launches] == ["fused"]
    np.testing.assert_allclose(
        np.asarray(f(x, x, b)), np.tanh(x * x + b) * 2 - np.exp(-x), rtol=1e-6
    )


def test_kernels_are_shared_across_batch_sizes():
    fn, args = _values_and_grads(MLP, (1, 5), batch=4)
    f = fgrad.jit(fn, backend="cuda")
    f(*args)
    compiled = len(runtime._kernels)
    _, args6 = _values_and_grads(MLP, (1, 5), batch=6)
    _assert_trees_close(f(*args6), fn(*args6))
    assert f.trace_count == 2  # a new signature retraces ...
    assert len(runtime._kernels) == compiled  # ... but compiles no new kernel


def test_host_fallback_runs_the_reference_implementation():
    x = np.array([[3.0, 1.0, 2.0], [0.5, -1.0, 4.0]], np.float32)
    f = fgrad.jit(lambda x: lax.argsort(x, 1) * 2 + 1, backend="cuda")
    prog = f.program(x)
    assert [s.__qualname__.split(".")[0] for s in prog.host_steps] == ["host_runner"]
    np.testing.assert_array_equal(np.asarray(f(x)), np.argsort(x, 1, kind="stable") * 2 + 1)


# ---------------------------------------------------------------- device arrays


def test_device_arrays_copy_back_with_np_asarray():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = runtime.to_device(x)
    assert isinstance(d, cuda.CudaArray) and d.shape == (2, 3) and d.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(d), x)
    assert d.reshape((3, 2)).buf is d.buf  # a free view
    np.testing.assert_array_equal(np.asarray(d.rows(1)), x[1])
    (y,) = cuda.run(PRIMS["exp"], [d], {})
    assert isinstance(y, cuda.CudaArray)
    np.testing.assert_allclose(np.asarray(y), np.exp(x), rtol=1e-6)
    assert float(runtime.to_device(np.float32(2.5))) == 2.5
    assert runtime.to_device(np.zeros((0, 3))).shape == (0, 3)


def test_compiled_programs_keep_values_on_the_device():
    f = fgrad.jit(lambda x: (x * 2.0).sum(), backend="cuda")
    x = np.ones((4, 4), np.float32)
    prog = f.program(x)
    (out,) = prog.run_device(runtime.to_device(x))
    assert isinstance(out, cuda.CudaArray) and float(out) == 32.0


def test_default_backend_cuda_runs_eager_operations():
    old = fgrad.config.default_backend
    fgrad.config.update("default_backend", "cuda")
    try:
        x = fnp.asarray([[1.0, -2.0], [3.0, 0.5]])
        y = (fnp.tanh(x) * 2.0).sum(axis=0)
        g = fgrad.grad(lambda x: (x * x).sum())(x)
    finally:
        fgrad.config.update("default_backend", old)
    np.testing.assert_allclose(np.asarray(y), (np.tanh(np.asarray(x)) * 2).sum(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g), 2 * np.asarray(x), rtol=1e-6)


def test_device_put_moves_pytrees():
    tree = {"w": np.ones((2, 2), np.float32), "s": 3.0, "k": random.key(0)}
    on_gpu = device_put(tree, "cuda")
    assert all(isinstance(v, fgrad.Array) for v in fgrad.tree.tree_leaves(on_gpu))
    assert on_gpu["s"].dtype == np.float32
    back = device_put(on_gpu, "cpu")
    _assert_trees_close(back, tree, rtol=0, atol=0)


# ---------------------------------------------------------------- without a GPU


def test_import_fgrad_needs_no_cuda_and_asking_for_it_is_a_clear_error():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import fgrad
        assert "numba.cuda" not in sys.modules, "import fgrad imported numba.cuda"
        try:
            fgrad.jit(lambda x: x + 1.0, backend="cuda")(np.ones(2, np.float32))
        except Exception as e:
            print(type(e).__name__, "::", e)
        """
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    if "CudaUnavailableError" not in out.stdout:
        pytest.skip("this machine has a usable GPU")
    message = out.stdout
    assert "backend 'cuda' is not available" in message
    assert "NUMBA_ENABLE_CUDASIM=1" in message and "fgrad[cuda]" in message


# ---------------------------------------------------------------- the kernels compile for a GPU


def _ptx_check(records, tmp_path):
    assert records
    path = tmp_path / "launches.json"
    path.write_text(json.dumps(records))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run(
        [sys.executable, "-m", "fgrad.backends.cuda.ptxcheck", str(path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode == ptxcheck.NO_TOOLKIT:
        pytest.skip(out.stdout.strip())
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert "kernel signatures compile" in out.stdout


def test_program_kernels_compile_for_a_real_gpu(tmp_path):
    """Every kernel the MLP and CNN programs launch compiles to PTX (and SASS)."""
    records = []
    for model, shape in ((MLP, (1, 5)), (CNN, (1, 6, 6, 2))):
        fn, args = _values_and_grads(model, shape)
        records += _launches(fgrad.jit(fn, backend="cuda"), *args)
    _ptx_check(records, tmp_path)


@pytest.mark.slow
def test_every_primitive_kernel_compiles_for_a_real_gpu(tmp_path):
    records = []
    for name, dtype in BY_DTYPE:

        def check(prim, args, params):
            records.extend(_launches(cuda.run, prim, args, params))

        fixed_cases(name, dtype, check, examples=2)
    _ptx_check(records, tmp_path)
