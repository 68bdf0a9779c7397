"""What ran where: CPU, cores, library versions, BLAS kernel, and the benchmark's env."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import resource
import sys
import time

#: Variables that force an old OpenBLAS kernel on some machines; unset for our runs.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

PACKAGES = (
    "numpy",
    "numba",
    "llvmlite",
    "jax",
    "jaxlib",
    "optax",
    "torch",
    "autograd",
    "threadpoolctl",
    "psutil",
)


def bench_env(base: dict | None = None, threads: int | None = None) -> dict:
    """The environment for benchmark subprocesses: ``base`` without the OpenBLAS overrides.

    With ``threads``, every framework is limited to that many threads: BLAS/OpenMP
    variables, Numba, PyTorch (``BENCH_THREADS``) and, for one thread, XLA's CPU client.
    """
    env = dict(os.environ if base is None else base)
    for name in OPENBLAS_OVERRIDES:
        env.pop(name, None)
    if threads:
        for name in (
            "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "NUMBA_NUM_THREADS",
            "BENCH_THREADS",
        ):
            env[name] = str(threads)
        if threads == 1:
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    return env


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in ("avx2", "fma", "avx512f") if f in flags)
    except OSError:
        pass
    return []


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (import numpy first)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture", "prefix")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields), idle


def cpu_busy(interval: float = 0.5) -> float | None:
    """Fraction of all cores busy over ``interval`` seconds (Linux ``/proc/stat``)."""
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    if a is None or b is None or b[0] == a[0]:
        return None
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


def wait_for_quiet(max_wait: float, threshold: float = 0.25, log=None) -> float | None:
    """Sleep until the other processes use less than ``threshold`` of the CPU, at most
    ``max_wait`` seconds; return the last busy fraction measured."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        if log:
            log(f"  machine {100 * busy:.0f}% busy with other work; waiting")
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        busy = cpu_busy()
    return busy


def describe() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions(),
        "openblas_overrides_in_parent_env": {
            k: os.environ[k] for k in OPENBLAS_OVERRIDES if k in os.environ
        },
        "loadavg": load,
    }
