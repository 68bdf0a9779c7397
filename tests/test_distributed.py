"""fgrad.distributed and optim.data_parallel: one process, and 2 or 3 ranks under mpiexec.

The multi-process tests launch the helper scripts in tests/mpi_scripts/ with
``mpiexec`` (the ``mpi`` extra: ``pip install mpi4py mpich``, no system packages). They
are skipped only when mpi4py or an ``mpiexec`` cannot be found, with that reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import distributed as dist
from fgrad import optim
from fgrad.io import CheckpointError
from fgrad.optim.data_parallel import data_parallel

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "mpi_scripts"
#: Seconds a launch may take before the test calls it hung (a normal one takes 1-10 s).
LAUNCH_TIMEOUT = 120
#: A failing rank must end the job this fast (it takes about a second).
FAILURE_TIMEOUT = 30


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_mpi_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child_env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MV2_", "MPI_LOCAL")) and k != "FGRAD_MPI"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"  # several ranks on few cores: no oversubscribed BLAS threads
    return env


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int, str, float]:
    """Run ``cmd`` in its own process group; kill the whole group on timeout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_child_env() if env is None else env,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} still running after {timeout} s (hung):\n{out}")
    return proc.returncode, out, time.perf_counter() - t0


@pytest.fixture(scope="module")
def mpiexec() -> list[str]:
    """The launcher command (with Open MPI's flags for root and oversubscription)."""
    try:
        import mpi4py  # noqa: F401  (the package only: MPI itself is not initialised)
    except ImportError:
        pytest.skip("mpi4py is not installed: pip install mpi4py mpich (the `mpi` extra)")
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if exe is None:
        pytest.skip("no mpiexec found: pip install mpich (the `mpi` extra) or a system MPI")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    cmd = [exe]
    if "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout:
        cmd.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return cmd


def _launch(mpiexec: list[str], n: int, script: str, *args: str, timeout=LAUNCH_TIMEOUT):
    cmd = [*mpiexec, "-n", str(n), sys.executable, str(SCRIPTS / f"{script}.py"), *args]
    return _run(cmd, timeout)


# ---------------------------------------------------------------- one process


def test_single_process_is_rank_0_of_1():
    assert (dist.rank(), dist.size(), dist.is_main()) == (0, 1, True)
    dist.barrier()


def test_single_process_loads_no_mpi():
    """Without a launcher nothing imports mpi4py: not ``import fgrad``, not a collective."""
    code = textwrap.dedent(
        """
        import sys, numpy as np, fgrad
        from fgrad import distributed as dist
        from fgrad.optim.data_parallel import data_parallel
        from fgrad import optim
        tree = {"w": np.ones(3, np.float32)}
        dist.allreduce_mean(dist.broadcast(tree)); dist.shard(tree); dist.barrier()
        opt = data_parallel(optim.sgd(0.1)); opt.update(tree, opt.init(tree), tree)
        print(dist.size(), "mpi4py" in sys.modules, sys.excepthook is sys.__excepthook__)
        """
    )
    rc, out, _ = _run([sys.executable, "-c", code], LAUNCH_TIMEOUT)
    assert rc == 0, out
    assert out.split()[-3:] == ["1", "False", "True"], out


def test_launcher_without_mpi4py_is_a_clear_error():
    """Under a launcher (PMI_SIZE=2) a missing mpi4py must not mean N solo runs."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["mpi4py"] = None  # as if not installed
        from fgrad import distributed as dist
        try:
            dist.size()
        except ImportError as e:
            print("ImportError:", e)
        """
    )
    env = _child_env() | {"PMI_SIZE": "2", "PMI_RANK": "0"}
    rc, out, _ = _run([sys.executable, "-c", code], LAUNCH_TIMEOUT, env=env)
    assert "ImportError:" in out and "pip install mpi4py mpich" in out, out
    env["FGRAD_MPI"] = "0"  # the escape hatch: run as one process anyway
    code = "from fgrad import distributed as d; print('size', d.size())"
    rc, out, _ = _run([sys.executable, "-c", code], LAUNCH_TIMEOUT, env=env)
    assert rc == 0 and "size 1" in out, out


def test_single_process_collectives_pass_values_through():
    g = {"w": fnp.asarray([[0.5, -1.0]]), "b": np.float64(2.0), "n": [3.0, None]}
    for out in (dist.allreduce_mean(g), dist.allreduce_mean(g, weight=7), dist.allreduce_sum(g)):
        leaves = fgrad.tree.tree_leaves(out)
        assert all(isinstance(x, fgrad.Array) for x in leaves)
        assert [np.asarray(x).tolist() for x in leaves] == [2.0, 3.0, [[0.5, -1.0]]]
    assert out["w"] is g["w"]  # no copy
    assert dist.broadcast(g) is g
    ints = {"count": np.arange(3, dtype=np.int32)}
    assert np.asarray(dist.allreduce_sum(ints)["count"]).tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="allreduce_sum for integers"):
        dist.allreduce_mean(ints)


def test_single_process_does_not_freeze_callers_numpy_arrays():
    a = np.ones(3)
    dist.allreduce_sum({"a": a})
    dist.shard(a)
    a[0] = 2.0  # still writable


def test_collectives_refuse_traced_values():
    """Host operations: a clear error inside jit, also in one process."""

    @fgrad.jit
    def bad(g):
        return dist.allreduce_mean(g)

    with pytest.raises(TypeError, match="cannot run inside jit"):
        bad({"w": fnp.ones(2)})
    opt = data_parallel(optim.sgd(0.1))
    params = {"w": fnp.ones(2)}
    step = fgrad.jit(lambda g, s, p: opt.update(g, s, p))
    with pytest.raises(TypeError, match="outside"):
        step(params, opt.init(params), params)


def test_shard_one_process_and_errors():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    xs, ys = dist.shard((x, y))
    np.testing.assert_array_equal(np.asarray(xs), x)
    np.testing.assert_array_equal(np.asarray(ys), y)
    assert np.asarray(dist.shard(x, axis=1)).shape == (6, 2)
    with pytest.raises(ValueError, match="same length along axis 0"):
        dist.shard((x, np.arange(5)))


@given(n=st.integers(0, 200), p=st.integers(1, 17))
def test_shard_rule_first_ranks_take_the_remainder(n, p):
    bounds = [dist._shard_bounds(n, r, p) for r in range(p)]
    sizes = [b - a for a, b in bounds]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(p - 1))  # contiguous
    assert sizes == [n // p + (1 if r < n % p else 0) for r in range(p)]


def test_checkpoint_one_process(tmp_path):
    path = tmp_path / "ckpt.npz"
    state = {"w": fnp.asarray([1.0, 2.0]), "step": 4}
    dist.save_checkpoint(path, state)
    assert dist.load_checkpoint(path)["step"] == 4
    got = dist.load_checkpoint(path, like=state)
    np.testing.assert_array_equal(np.asarray(got["w"]), [1.0, 2.0])
    with pytest.raises(CheckpointError):
        dist.load_checkpoint(tmp_path / "missing.npz")


@pytest.mark.parametrize("jit_inner", [True, False])
def test_data_parallel_one_process_is_the_inner_optimizer(jit_inner):
    rng = np.random.default_rng(0)
    params = {"w": fnp.asarray(rng.normal(size=(4, 3)).astype(np.float32)), "b": fnp.zeros(3)}
    inner = optim.adam(1e-2)
    opt = data_parallel(inner, jit_inner=jit_inner)
    s_ref, s_dp = inner.init(params), opt.init(params)
    assert fgrad.tree.tree_structure(s_ref) == fgrad.tree.tree_structure(s_dp)
    p_ref = p_dp = params
    for step in range(3):
        g = {k: fnp.asarray(rng.normal(size=v.shape).astype(np.float32)) for k, v in params.items()}
        u_ref, s_ref = inner.update(g, s_ref, p_ref)
        u_dp, s_dp = opt.update(g, s_dp, p_dp, weight=step + 1)
        p_ref, p_dp = optim.apply_updates(p_ref, u_ref), optim.apply_updates(p_dp, u_dp)
    for k in params:
        np.testing.assert_allclose(np.asarray(p_dp[k]), np.asarray(p_ref[k]), rtol=1e-6)


# ---------------------------------------------------------------- 2 ranks: training


@pytest.fixture(scope="module")
def train_run(mpiexec, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("dp_train")
    rc, out, _ = _launch(mpiexec, 2, "dp_train", str(out_dir))
    assert rc == 0, out
    return out_dir


TRAIN = _load_script("dp_train")


@pytest.mark.parametrize("tag", [c[0] for c in TRAIN.CONFIGS])
def test_two_ranks_hold_bit_identical_params(train_run, tag):
    r0 = np.load(train_run / f"train-{tag}-rank0.npz")
    r1 = np.load(train_run / f"train-{tag}-rank1.npz")
    assert sorted(r0.files) == sorted(r1.files) == ["b1", "b2", "w1", "w2"]
    for k in r0.files:
        assert r0[k].dtype == np.float32
        assert r0[k].tobytes() == r1[k].tobytes(), f"{tag}: {k} differs between ranks"


@pytest.mark.parametrize("tag, batch, weighted", TRAIN.CONFIGS)
def test_two_ranks_equal_one_process_on_the_global_batch(train_run, tag, batch, weighted):
    """2 ranks x half batches == 1 process x whole batch, to float32 rounding."""
    ref = TRAIN.train(batch, weighted, data_parallel_=False)
    got = np.load(train_run / f"train-{tag}-rank0.npz")
    init = TRAIN.init_params(100)
    for k in ref:
        moved = np.abs(ref[k] - np.asarray(init[k])).max()
        assert moved > 1e-2  # training did something, so the comparison means something
        np.testing.assert_allclose(got[k], ref[k], rtol=2e-5, atol=2e-6, err_msg=f"{tag}: {k}")


# ---------------------------------------------------------------- 3 ranks: collectives


COLL = _load_script("dp_collectives")
N_COLL = 3  # uneven splits of everything; more ranks than this machine's 2 cores is fine


@pytest.fixture(scope="module")
def coll(mpiexec, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("dp_collectives")
    rc, out, _ = _launch(mpiexec, N_COLL, "dp_collectives", str(out_dir))
    assert rc == 0, out
    results = [dict(np.load(out_dir / f"collectives-rank{r}.npz")) for r in range(N_COLL)]
    return results, out_dir


def _same_on_every_rank(results, key):
    first = results[0][key]
    for r, res in enumerate(results[1:], 1):
        assert res[key].dtype == first.dtype and res[key].shape == first.shape, key
        assert res[key].tobytes() == first.tobytes(), f"{key}: rank {r} differs from rank 0"
    return first


def test_ranks_and_sizes(coll):
    results, _ = coll
    assert [int(r["rank"]) for r in results] == list(range(N_COLL))
    assert {int(r["size"]) for r in results} == {N_COLL}
    assert [bool(r["is_main"]) for r in results] == [True] + [False] * (N_COLL - 1)


def test_allreduce_sum_identical_everywhere_and_correct(coll):
    results, _ = coll
    inputs = [COLL.inputs(r) for r in range(N_COLL)]
    for key in [k for k in results[0] if k.startswith("sum")]:
        _same_on_every_rank(results, key)
    # Exactly representable sums and integers: exact, whatever the reduction order.
    exact = _same_on_every_rank(results, "sum['exact']")
    np.testing.assert_array_equal(exact, sum(i["exact"] for i in inputs))
    assert exact.dtype == np.float32
    ints = _same_on_every_rank(results, "sum['i32']")
    assert ints.dtype == np.int32 and ints.tolist() == [111, 222, 333, 444]
    for key, dtype in (("f32", np.float32), ("f64", np.float64)):
        got = _same_on_every_rank(results, f"sum['{key}']")
        assert got.dtype == dtype
        want = sum(i[key].astype(np.float64) for i in inputs)
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert _same_on_every_rank(results, "sum['scalar']") == 6.0  # Python floats too
    assert _same_on_every_rank(results, "empty_sum") == 0


def test_allreduce_mean_plain_and_weighted(coll):
    results, _ = coll
    inputs = [COLL.inputs(r) for r in range(N_COLL)]
    weights = [r + 2 for r in range(N_COLL)]
    for key in ("f32", "f64", "exact"):
        x = [i[key].astype(np.float64) for i in inputs]
        mean = _same_on_every_rank(results, f"mean['{key}']")
        wmean = _same_on_every_rank(results, f"wmean['{key}']")
        assert mean.dtype == wmean.dtype == inputs[0][key].dtype
        np.testing.assert_allclose(mean, sum(x) / N_COLL, rtol=1e-6)
        want = sum(w * xi for w, xi in zip(weights, x)) / sum(weights)
        np.testing.assert_allclose(wmean, want, rtol=1e-6)
    f16 = _same_on_every_rank(results, "f16['f16']")  # summed in float32, returned as float16
    assert f16.dtype == np.float16 and f16.tolist() == [1.0, 1.0, 1.0]


def test_broadcast_from_any_root(coll):
    results, _ = coll
    for root in range(N_COLL):
        x = _same_on_every_rank(results, f"bcast{root}.x")
        np.testing.assert_array_equal(x, COLL.inputs(root)["f32"])
        assert int(_same_on_every_rank(results, f"bcast{root}.step")) == 10 * root
        assert str(_same_on_every_rank(results, f"bcast{root}.types")) == "int,bool"


@pytest.mark.parametrize("n", COLL.SHARD_SIZES)
def test_shard_uneven_sizes(coll, n):
    """Rank r gets n // size examples, one more if r < n % size; in order, no gaps."""
    results, _ = coll
    sizes = [len(res[f"shard{n}.y"]) for res in results]
    assert sizes == [n // N_COLL + (1 if r < n % N_COLL else 0) for r in range(N_COLL)]
    ys = np.concatenate([res[f"shard{n}.y"] for res in results])
    xs = np.concatenate([res[f"shard{n}.x"] for res in results])
    np.testing.assert_array_equal(ys, np.arange(n))
    np.testing.assert_array_equal(xs, np.arange(2 * n, dtype=np.float32).reshape(n, 2))
    cols = np.concatenate([res[f"shard{n}.axis1"] for res in results], axis=1)
    np.testing.assert_array_equal(cols, xs.T)


def test_mismatched_trees_raise_on_every_rank(coll):
    results, _ = coll
    for res in results:
        assert "ValueError" in str(res["err.shape"]) and "float64[4]" in str(res["err.shape"])
        assert "different trees" in str(res["err.keys"]) and "k1" in str(res["err.keys"])
        assert "TypeError" in str(res["err.int_mean"])


def test_checkpoint_written_by_rank0_loaded_everywhere(coll):
    results, out_dir = coll
    assert (out_dir / "ckpt.npz").exists()
    assert not (out_dir / "not-here").exists()  # the other ranks never touched their paths
    assert all(bool(res["ckpt.exists_after_save"]) for res in results)  # save waited
    w = _same_on_every_rank(results, "ckpt.w")
    np.testing.assert_array_equal(w, COLL.inputs(0)["f32"])
    assert int(_same_on_every_rank(results, "ckpt.step")) == 5
    assert int(_same_on_every_rank(results, "ckpt.plain_step")) == 5
    for res in results:  # failures reach every rank, so no rank waits forever
        assert str(res["err.ckpt_missing"]).startswith("CheckpointError: load: cannot read")
        assert "missing.npz" in str(res["err.ckpt_missing"])
        assert "template expects float32[2, 2]" in str(res["err.ckpt_template"])
    assert "FileNotFoundError" in str(results[0]["err.ckpt_save"])
    for res in results[1:]:
        assert str(res["err.ckpt_save"]).startswith("RuntimeError: fgrad.distributed.save")


# ---------------------------------------------------------------- a failing rank


@pytest.mark.parametrize("mode", ["early", "late"])
def test_a_failing_rank_ends_the_job(mpiexec, mode):
    """Rank 1 raises while rank 0 waits in a collective: non-zero exit, not a hang."""
    rc, out, elapsed = _launch(mpiexec, 2, "dp_failure", mode, timeout=FAILURE_TIMEOUT)
    assert rc != 0, out
    assert f"deliberate failure on rank 1 ({mode})" in out
    assert "MPI_Abort" in out
    assert "got past the collective" not in out
    assert elapsed < FAILURE_TIMEOUT
