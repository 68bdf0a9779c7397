"""Training steps on an NVIDIA GPU: fgrad's CUDA backend next to PyTorch and JAX.

    python -m benchmarks.gpu                       # mlp and cnn, every framework found
    python -m benchmarks.gpu --workloads mlp --min-time 2 --repeats 5
    python -m benchmarks.gpu --simulate            # the script itself, on Numba's simulator

The workloads, parameters, data and the loss check are those of ``benchmarks.run``
(``benchmarks/workloads.py``): the same float32 parameters and batch for every
framework, Adam with optax's defaults. The fgrad row is ``fgrad.jit(step,
backend="cuda")`` with the parameters, optimizer state and batch put on the device
once; PyTorch runs eagerly on ``cuda:0``; JAX jits on its default device (a GPU when
``jax[cuda]`` is installed; the row says which device it used). A framework that is
not installed, or has no GPU, is skipped with a note.

Steps per second are the median of ``--repeats`` blocks of at least ``--min-time``
seconds, each ending with a synchronisation (``benchmarks.timing``). The losses of the
first ``CHECK_STEPS`` steps are compared across frameworks; the exit status is 1 when
they disagree beyond float32 tolerance.

Without a GPU this prints why and exits 0: the script is ready, not run (see
docs/cuda.md). ``--simulate`` runs the fgrad row of the tiny ``xor`` workload on
Numba's CUDA simulator, to check the script itself; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

GPU_WORKLOADS = ("mlp", "cnn")


def _fgrad_bench(workload, params0, data):
    import fgrad
    import fgrad.numpy as fnp
    from benchmarks import fw_fgrad
    from fgrad.device import device_put

    loss_fn = fw_fgrad.LOSSES[workload.name]
    opt_init, opt_update = fw_fgrad.optimizer(workload.optimizer)
    vg = fgrad.value_and_grad(loss_fn)

    def step(params, opt_state, x, y):
        loss, grads = vg(params, x, y)
        params, opt_state = opt_update(params, grads, opt_state)
        return params, opt_state, loss

    jitted = fgrad.jit(step, backend="cuda")

    def init():
        params = device_put({k: fnp.asarray(v) for k, v in params0.items()}, "cuda")
        return params, device_put(opt_init(params), "cuda")

    x, y = device_put(tuple(fnp.asarray(a) for a in data), "cuda")

    def sync(out):
        for leaf in fgrad.tree.tree_leaves(out):
            leaf.block_until_ready()

    return {
        "init": init,
        "step": jitted,
        "x": x,
        "y": y,
        "to_float": lambda loss: float(np.asarray(loss)),
        "sync": sync,
        "device": "cuda (numba.cuda simulator)" if _simulated() else "cuda:0",
    }


def _simulated() -> bool:
    from fgrad.backends.cuda import runtime

    return runtime.simulated()


def _torch_bench(workload, params0, data):
    import torch

    from benchmarks import fw_torch
    from benchmarks.workloads import ADAM

    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch sees no CUDA device")
    dev = torch.device("cuda:0")
    base = fw_torch.build(workload, params0, data, "eager")
    tparams = fw_torch._to_torch_layout(workload.name, params0)

    def init():
        params = {k: torch.tensor(v, device=dev, requires_grad=True) for k, v in tparams.items()}
        opt = torch.optim.Adam(
            params.values(), lr=ADAM["lr"], betas=(ADAM["b1"], ADAM["b2"]), eps=ADAM["eps"]
        )
        return params, opt

    return {
        "init": init,
        "step": base["step"],
        "x": base["x"].to(dev),
        "y": base["y"].to(dev),
        "to_float": base["to_float"],
        "sync": lambda out: torch.cuda.synchronize(),
        "device": torch.cuda.get_device_name(0),
    }


def _jax_bench(workload, params0, data):
    import jax

    from benchmarks import fw_jax

    bench = fw_jax.build(workload, params0, data, "jit")
    device = jax.devices()[0]
    if device.platform != "gpu":
        raise RuntimeError(f"JAX's default device is {device.platform} (install jax[cuda12])")
    bench["device"] = str(device)
    return bench


FRAMEWORKS = {"fgrad-cuda": _fgrad_bench, "torch-cuda": _torch_bench, "jax-gpu": _jax_bench}


def _run_one(name, builder, workload, params0, data, args):
    from benchmarks.timing import first_call_and_losses, measure
    from benchmarks.workloads import CHECK_STEPS

    bench = builder(workload, params0, data)
    first, losses = first_call_and_losses(bench, args.check_steps or CHECK_STEPS)
    timing = measure(bench, args.min_time, args.repeats, warmup=min(0.5, args.min_time))
    return {
        "framework": name,
        "device": bench["device"],
        "first_call_s": first,
        "losses": losses,
        "steps_per_s": timing["steps_per_s"],
    }


def _gpu_missing() -> str | None:
    from fgrad.backends.cuda import runtime

    try:
        runtime.load()
    except runtime.CudaUnavailableError as e:
        return str(e)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(GPU_WORKLOADS))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-steps", type=int, default=0)
    parser.add_argument("--simulate", action="store_true", help="Numba's CUDA simulator")
    args = parser.parse_args(argv)
    if args.simulate:  # the tiny xor MLP: the simulator runs every GPU thread in Python
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        args.workloads, args.frameworks = "xor", "fgrad-cuda"
        args.min_time, args.repeats, args.check_steps = 0.05, 1, args.check_steps or 3
    missing = _gpu_missing()
    if missing:
        print(f"benchmarks.gpu: not run: {missing}")
        return 0

    from benchmarks.workloads import WORKLOADS, init_params, make_data

    failed = False
    rows = []
    for wname in args.workloads.split(","):
        workload = WORKLOADS[wname]
        params0, data = init_params(wname), make_data(wname)
        reference = None
        for fname in args.frameworks.split(","):
            t0 = time.perf_counter()
            try:
                row = _run_one(fname, FRAMEWORKS[fname], workload, params0, data, args)
            except Exception as e:  # noqa: BLE001 - a missing framework is a note, not a failure
                print(f"{wname:5s} {fname:11s} skipped: {type(e).__name__}: {e}")
                continue
            row["workload"] = wname
            if reference is None:
                reference = row["losses"]
            agree = np.allclose(row["losses"], reference, rtol=1e-3, atol=1e-4)
            failed |= not agree
            rows.append(row)
            print(
                f"{wname:5s} {fname:11s} {row['steps_per_s']:9.1f} steps/s   "
                f"first call {row['first_call_s']:6.2f} s   "
                f"loss {row['losses'][-1]:.5f}{'' if agree else ' (DISAGREES)'}   "
                f"{row['device']}   ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
