"""Data parallelism over MPI on the ``mlp`` workload: 2-process speed-up, communication cost.

Run: python -m benchmarks.distributed [--steps 40] [--repeats 3] [--json PATH]

The workload is benchmarks/workloads.py's ``mlp`` (784-512-512-10 ReLU, softmax
cross-entropy, Adam, global batch 128; 669,706 float32 parameters, so 2.68 MB of
gradients per step). This script launches, one after the other:

* ``1 proc x 1 thread``: one process, batch 128, BLAS limited to one thread;
* ``1 proc x N threads``: one process, batch 128, BLAS on all N cores;
* ``2 procs x 1 thread``: ``mpiexec -n 2``, 64 examples per rank, one BLAS thread each.

Every configuration runs the same step, split where the data-parallel wrapper splits
it (``optim.data_parallel`` splits it the same way)::

    loss, grads = grad_fn(params, xb, yb)          # fgrad.jit(value_and_grad(mlp_loss))
    grads = dist.allreduce_mean(grads)             # "comm": a no-op in one process
    params, opt_state = update_fn(grads, ...)      # fgrad.jit(adam update + apply)

and reports the median time of each part over ``--steps`` steps, ``--repeats``
times (the median repeat is kept), and the fastest single step and part. A barrier
before the allreduce separates "wait" (for the slower rank: load imbalance and
scheduling) from "comm" (the allreduce itself); it adds nothing to the step, the
allreduce would wait just as long.

A microbenchmark then times allreduces of the 2.68 MB gradient tree, each after a
barrier (median and best of many): fgrad's ``allreduce_mean`` (signature check,
reduce-scatter, allgather), a raw ``MPI_Allreduce`` of the same flat buffer, the raw
reduce-scatter + allgather pair, and a raw ``MPI_Bcast``: the price of fgrad's checks
and determinism. The machine's load average is printed: on a shared machine, numbers
move.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ---------------------------------------------------------------- worker (one rank)


def _median_ms(xs: list[float]) -> float:
    return 1e3 * statistics.median(xs)


def worker(steps: int, repeats: int, out: str) -> None:
    import numpy as np

    import fgrad
    import fgrad.numpy as fnp
    from benchmarks.fw_fgrad import mlp_loss
    from benchmarks.workloads import ADAM, WORKLOADS, init_params, make_data
    from fgrad import distributed as dist
    from fgrad import optim

    params0 = {k: fnp.asarray(v) for k, v in init_params("mlp").items()}
    x, y = make_data("mlp")
    assert x.shape[0] == WORKLOADS["mlp"].batch
    xb, yb = dist.shard((x, y))
    opt = optim.adam(ADAM["lr"], b1=ADAM["b1"], b2=ADAM["b2"], eps=ADAM["eps"])
    grad_fn = fgrad.jit(fgrad.value_and_grad(mlp_loss))

    @fgrad.jit
    def update_fn(grads, opt_state, params):
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state

    def run(n: int) -> dict[str, list[float]]:
        params, opt_state = params0, opt.init(params0)
        times: dict[str, list[float]] = {k: [] for k in ("grad", "wait", "comm", "update", "step")}
        dist.barrier()
        for _ in range(n):
            t0 = time.perf_counter()
            loss, grads = grad_fn(params, xb, yb)
            t1 = time.perf_counter()
            dist.barrier()  # waiting for the slower rank, kept apart from the transfer
            t1b = time.perf_counter()
            grads = dist.allreduce_mean(grads)
            t2 = time.perf_counter()
            params, opt_state = update_fn(grads, opt_state, params)
            t3 = time.perf_counter()
            parts = (("grad", t1 - t0), ("wait", t1b - t1), ("comm", t2 - t1b), ("update", t3 - t2))
            for key, dt in parts:
                times[key].append(dt)
            times["step"].append(t3 - t0)
        float(loss)
        return times

    run(3)  # compile and warm up
    blocks = []
    for _ in range(repeats):
        t = run(steps)
        block = {k: _median_ms(v) for k, v in t.items()}
        block.update({f"best_{k}": 1e3 * min(v) for k, v in t.items()})
        blocks.append(block)
    # The repeat with the median step time (a quiet block is not cherry-picked).
    result = sorted(blocks, key=lambda b: b["step"])[len(blocks) // 2]
    result["repeats_step_ms"] = [b["step"] for b in blocks]
    for key in ("step", "grad", "wait", "comm", "update"):  # fastest single step/part: ~ unloaded
        result[f"best_{key}"] = min(b[f"best_{key}"] for b in blocks)

    if dist.size() > 1:
        result.update(_allreduce_micro(dist, grads_like=params0, reps=max(20, steps)))
    grad_bytes = sum(np.asarray(v).nbytes for v in params0.values())
    result.update(
        size=dist.size(),
        local_batch=int(xb.shape[0]),
        grad_bytes=int(grad_bytes),
        threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    )
    # Every rank reports; rank 0 writes them all (per-rank step times show the skew).
    per_rank = np.zeros(dist.size())
    per_rank[dist.rank()] = result["step"]
    result["step_ms_per_rank"] = np.asarray(dist.allreduce_sum(per_rank)).tolist()
    if dist.is_main():
        with open(out, "w") as f:
            json.dump(result, f)


def _allreduce_micro(dist, grads_like, reps: int) -> dict:
    """Allreduces of the gradient tree, each started after a barrier: median and best ms."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    p = comm.Get_size()
    rng = np.random.default_rng(comm.Get_rank())
    tree = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in grads_like.items()}
    flat = np.concatenate([a.ravel() for a in tree.values()])
    flat = np.concatenate([flat, np.zeros(-flat.size % p, np.float32)])
    recv = np.empty_like(flat)
    chunk = np.empty(flat.size // p, np.float32)

    def rs_ag():
        comm.Reduce_scatter_block(flat, chunk, op=MPI.SUM)
        comm.Allgather(chunk, recv)

    def timed(name, fn) -> dict:
        ts = []
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return {f"micro_{name}_ms": _median_ms(ts), f"micro_{name}_best_ms": 1e3 * min(ts)}

    out = {}
    out.update(timed("fgrad_allreduce_mean", lambda: dist.allreduce_mean(tree)))
    out.update(timed("mpi_allreduce", lambda: comm.Allreduce(flat, recv, op=MPI.SUM)))
    out.update(timed("mpi_reduce_scatter_allgather", rs_ag))
    out.update(timed("mpi_bcast", lambda: comm.Bcast(flat, root=0)))
    a = dist.allreduce_mean(tree)
    b = dist.broadcast(a)  # rank 0's copy
    out["micro_identical_on_all_ranks"] = bool(
        all(np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes() for k in tree)
    )
    return out


# ---------------------------------------------------------------- driver


def _env(threads: int) -> dict:
    env = dict(os.environ)
    for name in THREAD_VARS:
        env[name] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return env


def _launch(nprocs: int, threads: int, steps: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "benchmarks.distributed", "--worker", out]
        cmd += ["--steps", str(steps), "--repeats", str(repeats)]
        if nprocs > 1:
            mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
            mpiexec = mpiexec or shutil.which("mpiexec")
            if mpiexec is None:
                raise SystemExit("no mpiexec: pip install mpi4py mpich (the `mpi` extra)")
            cmd = [mpiexec, "-n", str(nprocs), *cmd]
        subprocess.run(cmd, env=_env(threads), cwd=REPO, check=True)
        with open(out) as f:
            return json.load(f)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.steps, args.repeats, args.worker)
        return {}

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    runs = {
        "1 proc x 1 thread": _launch(1, 1, args.steps, args.repeats),
        f"1 proc x {cores} threads": _launch(1, cores, args.steps, args.repeats),
        "2 procs x 1 thread": _launch(2, 1, args.steps, args.repeats),
    }
    load_after = os.getloadavg()
    two = runs["2 procs x 1 thread"]
    print(f"mlp workload, global batch 128, gradients {two['grad_bytes'] / 1e6:.2f} MB float32")
    print(f"{cores} cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print("median ms per step and per part; best step (fastest single step) for comparison")
    print(
        f"{'configuration':22s} {'step':>7s} {'grad':>7s} {'wait':>7s} {'comm':>7s} "
        f"{'update':>7s} {'ex/s':>7s} {'best step':>10s}"
    )
    for name, r in runs.items():
        print(
            f"{name:22s} {r['step']:7.2f} {r['grad']:7.2f} {r['wait']:7.2f} {r['comm']:7.2f} "
            f"{r['update']:7.2f} {128 / r['step'] * 1e3:7.0f} {r['best_step']:10.2f}"
        )
    speedups = {}
    for name, r in runs.items():
        if name != "2 procs x 1 thread":
            speedups[f"vs {name}"] = r["step"] / two["step"]
            speedups[f"vs {name}, best steps"] = r["best_step"] / two["best_step"]
    for name, s in speedups.items():
        print(f"2-process speed-up {name}: {s:.2f}x")
    one = runs["1 proc x 1 thread"]
    best_one = one["best_grad"] + one["best_update"]
    best_two = two["best_grad"] + two["best_comm"] + two["best_update"]
    print(
        f"from the fastest parts (an unloaded machine): 1 proc {best_one:.2f} ms = grad "
        f"{one['best_grad']:.2f} + update {one['best_update']:.2f}; 2 procs {best_two:.2f} ms = "
        f"grad {two['best_grad']:.2f} + comm {two['best_comm']:.2f} + update "
        f"{two['best_update']:.2f}; speed-up {best_one / best_two:.2f}x"
    )
    speedups["from the fastest parts"] = best_one / best_two
    print(
        f"communication per step (2 procs): {two['comm']:.2f} ms median, {two['best_comm']:.2f} "
        f"ms best ({100 * two['comm'] / two['step']:.1f}% of the median step), plus "
        f"{two['wait']:.2f} ms median waiting for the slower rank"
    )
    print(f"allreduce of {two['grad_bytes'] / 1e6:.2f} MB after a barrier, median (best) ms:")
    for key, label in (
        ("fgrad_allreduce_mean", "fgrad allreduce_mean (check + reduce-scatter + allgather)"),
        ("mpi_allreduce", "raw MPI_Allreduce"),
        ("mpi_reduce_scatter_allgather", "raw MPI_Reduce_scatter_block + MPI_Allgather"),
        ("mpi_bcast", "raw MPI_Bcast (one copy, for scale)"),
    ):
        print(f"  {label:58s} {two[f'micro_{key}_ms']:6.2f} ({two[f'micro_{key}_best_ms']:.2f})")
    print(f"  identical bits on all ranks: {two['micro_identical_on_all_ranks']}")
    result = {
        "runs": runs,
        "speedups": speedups,
        "load_average": [load_before[0], load_after[0]],
        "cores": cores,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
