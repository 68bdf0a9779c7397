"""Timing a training step: loss check, warm-up, and the median of timed blocks.

Every block starts from freshly initialised parameters and optimizer state (untimed), so
each framework times the same trajectory and long runs never drift into saturated or
denormal values. The loop is the one a user writes::

    for _ in range(n):
        params, opt_state, loss = step(params, opt_state, x, y)

checked against the clock every ``chunk`` steps; asynchronous frameworks (JAX) are
synchronised at the end of each block, inside the timed region.
"""

from __future__ import annotations

import statistics
import time


def run_steps(step, params, opt_state, x, y, n: int):
    loss = None
    for _ in range(n):
        params, opt_state, loss = step(params, opt_state, x, y)
    return params, opt_state, loss


def first_call_and_losses(bench: dict, n_steps: int) -> tuple[float, list[float]]:
    """Seconds of the first step (compile time for jit), and the loss at each of ``n_steps``."""
    step, x, y, to_float = bench["step"], bench["x"], bench["y"], bench["to_float"]
    params, opt_state = bench["init"]()
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, x, y)
    bench["sync"](loss)
    first = time.perf_counter() - t0
    losses = [to_float(loss)]
    for _ in range(n_steps - 1):
        params, opt_state, loss = step(params, opt_state, x, y)
        losses.append(to_float(loss))
    return first, losses


def _timed_block(bench: dict, min_time: float, chunk: int) -> tuple[int, float]:
    step, x, y, sync = bench["step"], bench["x"], bench["y"], bench["sync"]
    params, opt_state = bench["init"]()
    sync((params, opt_state))
    n = 0
    t0 = time.perf_counter()
    while True:
        params, opt_state, loss = run_steps(step, params, opt_state, x, y, chunk)
        n += chunk
        if time.perf_counter() - t0 >= min_time:
            sync((params, opt_state, loss))
            return n, time.perf_counter() - t0


def measure(bench: dict, min_time: float, repeats: int, warmup: float = 0.5) -> dict:
    """Steps per second: the median of ``repeats`` blocks of at least ``min_time`` seconds."""
    # Warm-up, and a chunk size that checks the clock about every 10 ms.
    n, elapsed = _timed_block(bench, warmup, 1)
    chunk = max(1, int(0.01 * n / elapsed))
    rates = []
    for _ in range(repeats):
        n, elapsed = _timed_block(bench, min_time, chunk)
        rates.append(n / elapsed)
    return {"steps_per_s": statistics.median(rates), "all_steps_per_s": rates, "chunk": chunk}
