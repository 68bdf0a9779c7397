"""One benchmark cell (workload x framework) in its own process; prints one JSON line.

``python -m benchmarks.worker --workload mlp --framework fgrad-jit`` builds the step,
times its first call, runs ``CHECK_STEPS`` steps from the initial parameters recording
the losses, then times blocks (``benchmarks.timing``) and reports the peak RSS of this
process. ``--framework ceiling`` times the mlp matmuls and GEMM GFLOP/s instead;
``--first-call-only`` stops after the first call (compile time from the disk cache).
The result line starts with ``RESULT_TAG``; errors are reported in it, not raised.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback

RESULT_TAG = "BENCH_RESULT "

#: Column name -> (module, mode, package that must be importable).
FRAMEWORKS: dict[str, tuple[str, str, str]] = {
    "fgrad-eager": ("benchmarks.fw_fgrad", "eager", "fgrad"),
    "fgrad-jit": ("benchmarks.fw_fgrad", "jit", "fgrad"),
    "numpy": ("benchmarks.fw_numpy", "eager", "numpy"),
    "jax-jit": ("benchmarks.fw_jax", "jit", "jax"),
    "jax-eager": ("benchmarks.fw_jax", "eager", "jax"),
    "torch": ("benchmarks.fw_torch", "eager", "torch"),
    "autograd": ("benchmarks.fw_autograd", "eager", "autograd"),
}


def _framework_notes(framework: str, module) -> dict:
    notes = {}
    if framework.startswith("fgrad"):
        notes["optimizer"] = module.OPTIMIZER_SOURCE
    elif framework.startswith("jax"):
        import jax

        notes["optimizer"] = module.optimizer_source()
        notes["jax_devices"] = [str(d) for d in jax.devices()]
    elif framework == "torch":
        import torch

        notes["torch_threads"] = torch.get_num_threads()
        notes["optimizer"] = "torch.optim"
    return notes


def run_cell(args) -> dict:
    from benchmarks import machine, timing, workloads

    result: dict = {"workload": args.workload, "framework": args.framework}
    t_import = time.perf_counter()
    if args.framework == "ceiling":
        from benchmarks import ceiling

        result.update(ceiling.measure(args.min_time, args.repeats))
        result["blas"] = machine.blas_info()
        result["peak_rss_mb"] = machine.peak_rss_mb()
        return result
    mod_name, mode, _ = FRAMEWORKS[args.framework]
    module = importlib.import_module(mod_name)
    wl = workloads.WORKLOADS[args.workload]
    bench = module.build(wl, workloads.init_params(wl.name), workloads.make_data(wl.name), mode)
    result["import_and_build_s"] = time.perf_counter() - t_import
    result.update(_framework_notes(args.framework, module))
    n_check = 1 if args.first_call_only else args.check_steps
    first, losses = timing.first_call_and_losses(bench, n_check)
    result["first_call_s"] = first
    jitted = bench.get("jitted")
    if jitted is not None and hasattr(jitted, "compile_time"):
        result["fgrad_compile_time_s"] = jitted.compile_time
        result["fgrad_trace_count"] = jitted.trace_count
    if not args.first_call_only:
        result["losses"] = losses
        result.update(timing.measure(bench, args.min_time, args.repeats))
        if jitted is not None and hasattr(jitted, "trace_count"):
            result["fgrad_trace_count_after"] = jitted.trace_count
    result["blas"] = machine.blas_info()
    result["peak_rss_mb"] = machine.peak_rss_mb()
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workload", default="mlp")
    p.add_argument("--framework", required=True)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check-steps", type=int, default=10)
    p.add_argument("--first-call-only", action="store_true")
    args = p.parse_args(argv)
    try:
        result = run_cell(args)
    except Exception as exc:  # reported as the cell's content, with the traceback on stderr
        traceback.print_exc()
        result = {
            "workload": args.workload,
            "framework": args.framework,
            "error": f"{type(exc).__name__}: {exc}",
        }
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
