"""The BLAS ceiling: the mlp step's eight matmuls alone, and the machine's matmul GFLOP/s.

The eight matmuls of one mlp step (batch 128, 784-512-512-10) at their real shapes:
forward ``x@W1, h1@W2, h2@W3``; weight gradients ``x.T@d1, h1.T@d2, h2.T@d3``; input
gradients ``d3@W3.T, d2@W2.T`` (the input gradient of ``x`` is never needed). Outputs
are preallocated (``out=``) and transposes are views, so NumPy passes them to BLAS as
flags: no copies, nothing but the GEMMs. A training step built on this BLAS cannot run
faster than this loop.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

GEMM_N = 1024


def _mlp_matmuls():
    rng = np.random.default_rng(0)

    def a(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    x, w1, w2, w3 = a(128, 784), a(784, 512), a(512, 512), a(512, 10)
    h1, h2, d1, d2, d3 = a(128, 512), a(128, 512), a(128, 512), a(128, 512), a(128, 10)
    outs = [
        np.empty(s, np.float32)
        for s in [
            (128, 512),
            (128, 512),
            (128, 10),
            (784, 512),
            (512, 512),
            (512, 10),
            (128, 512),
            (128, 512),
        ]
    ]
    pairs = [(x, w1), (h1, w2), (h2, w3), (x.T, d1), (h1.T, d2), (h2.T, d3), (d3, w3.T), (d2, w2.T)]
    flops = sum(2 * p.shape[0] * p.shape[1] * q.shape[1] for p, q in pairs)

    def run():
        for (p, q), o in zip(pairs, outs, strict=True):
            np.matmul(p, q, out=o)

    return run, flops


def _rate(fn, min_time: float, repeats: int) -> list[float]:
    for _ in range(3):
        fn()
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_time:
            fn()
            n += 1
        rates.append(n / (time.perf_counter() - t0))
    return rates


def measure(min_time: float, repeats: int) -> dict:
    run, flops = _mlp_matmuls()
    a = np.random.default_rng(1).standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    b = np.random.default_rng(2).standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    c = np.empty_like(a)
    gemm_flops = 2 * GEMM_N**3
    result = {}
    threads = {"default": None}
    try:
        from threadpoolctl import threadpool_limits

        threads["1"] = 1
    except ImportError:
        threadpool_limits = None
    for label, limit in threads.items():
        ctx = threadpool_limits(limits=limit, user_api="blas") if limit else _Null()
        with ctx:
            mm = _rate(run, min_time, repeats)
            gemm = _rate(lambda: np.matmul(a, b, out=c), min(min_time, 1.0), repeats)
        result[label] = {
            "mlp_matmuls_steps_per_s": statistics.median(mm),
            "mlp_matmuls_gflops": statistics.median(mm) * flops / 1e9,
            "gemm_gflops": statistics.median(gemm) * gemm_flops / 1e9,
        }
    result["mlp_matmul_flops"] = flops
    return result


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
