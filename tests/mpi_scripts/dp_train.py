"""Data-parallel training of a small MLP; run by tests/test_distributed.py.

Under ``mpiexec -n P`` every rank trains on its shard of each global batch with
``optim.data_parallel(adam)`` and writes its final parameters to
``<out>/train-<tag>-rank<r>.npz``. Imported in one process, ``train(...,
data_parallel=False)`` is the single-process reference on the whole global batch.

Usage: python dp_train.py OUT_DIR
"""

from __future__ import annotations

import os
import sys

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import distributed as dist
from fgrad import nn, optim

try:
    data_parallel = optim.data_parallel
except AttributeError:  # until fgrad.optim re-exports it
    from fgrad.optim.data_parallel import data_parallel

N_IN, HIDDEN, N_OUT, N_EXAMPLES = 12, 16, 3, 120
STEPS = 20
#: (tag, global batch, weight the mean by shard size): 16 splits evenly over 2 ranks,
#: 13 does not (7 + 6), so its mean must be weighted to equal the global-batch gradient.
CONFIGS = (("even", 16, False), ("uneven", 13, True))


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N_EXAMPLES, N_IN)).astype(np.float32)
    y = rng.integers(0, N_OUT, size=N_EXAMPLES).astype(np.int32)
    return x, y


def init_params(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "w1": fnp.asarray((rng.normal(size=(N_IN, HIDDEN)) / np.sqrt(N_IN)).astype(np.float32)),
        "b1": fnp.zeros(HIDDEN),
        "w2": fnp.asarray((rng.normal(size=(HIDDEN, N_OUT)) / 4.0).astype(np.float32)),
        "b2": fnp.zeros(N_OUT),
    }


def loss_fn(params, x, y):
    h = fnp.tanh(x @ params["w1"] + params["b1"])
    return nn.softmax_cross_entropy_with_integer_labels(h @ params["w2"] + params["b2"], y)


GRAD_FN = fgrad.value_and_grad(loss_fn)  # eager: no compile time in the test


def train(batch: int, weighted: bool, data_parallel_: bool) -> dict:
    """``STEPS`` Adam steps over global batches of ``batch`` examples."""
    x, y = dataset()
    # Each rank starts from different parameters; broadcast makes them rank 0's.
    params = init_params(100 + dist.rank())
    if data_parallel_:
        params = dist.broadcast(params)
        opt = data_parallel(optim.adam(1e-2))
    else:
        opt = optim.adam(1e-2)
    state = opt.init(params)
    for step in range(STEPS):
        start = (step * batch) % (N_EXAMPLES - batch)
        global_batch = (x[start : start + batch], y[start : start + batch])
        xb, yb = dist.shard(global_batch) if data_parallel_ else global_batch
        _, grads = GRAD_FN(params, xb, yb)
        if data_parallel_:
            weight = xb.shape[0] if weighted else None
            updates, state = opt.update(grads, state, params, weight=weight)
        else:
            updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
    return {k: np.asarray(v) for k, v in params.items()}


def main(out_dir: str) -> None:
    for tag, batch, weighted in CONFIGS:
        params = train(batch, weighted, data_parallel_=True)
        np.savez(os.path.join(out_dir, f"train-{tag}-rank{dist.rank()}.npz"), **params)
    dist.barrier()
    if dist.is_main():
        print(f"dp_train: {dist.size()} ranks done")


if __name__ == "__main__":
    main(sys.argv[1])
