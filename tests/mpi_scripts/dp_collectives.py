"""Exercises every collective of fgrad.distributed; run by tests/test_distributed.py.

Each rank records what it received in ``<out>/collectives-rank<r>.npz`` (arrays, and
error messages as strings); the test compares the ranks with each other and with the
values it recomputes from ``inputs(r)``. Expected failures are caught and recorded, so
this script must exit 0.

Usage: mpiexec -n P python dp_collectives.py OUT_DIR
"""

from __future__ import annotations

import os
import sys

import numpy as np

import fgrad.numpy as fnp
from fgrad import distributed as dist
from fgrad.io import CheckpointError

#: Global batch sizes sharded in the test: empty, fewer than the ranks, uneven, even.
SHARD_SIZES = (0, 1, 2, 5, 7, 12)


def inputs(r: int) -> dict:
    """Rank ``r``'s tree for the reductions: several dtypes and shapes, odd sizes."""
    rng = np.random.default_rng(10 + r)
    return {
        "f32": rng.normal(size=(5, 3)).astype(np.float32),
        "f64": rng.normal(size=7),
        "exact": np.arange(6, dtype=np.float32) * (r + 1),  # sums exactly in any order
        "i32": (np.arange(4, dtype=np.int32) + 1) * 10**r,
        "f16": np.full(3, 0.5 * (r + 1), dtype=np.float16),
        "scalar": float(r + 1),
        "nested": [rng.normal(size=()).astype(np.float32), None],
    }


def _flat(prefix: str, tree, out: dict) -> None:
    from fgrad import tree as tree_util

    for path, leaf in tree_util.tree_flatten_with_path(tree)[0]:
        out[prefix + tree_util.keystr(path)] = np.asarray(leaf)


def _error(fn) -> str:
    try:
        fn()
    except (ValueError, TypeError, CheckpointError, RuntimeError, OSError) as e:
        return f"{type(e).__name__}: {e}"
    return "no error"


def main(out_dir: str) -> None:
    r, p = dist.rank(), dist.size()
    res: dict[str, np.ndarray] = {"rank": np.int64(r), "size": np.int64(p)}
    res["is_main"] = np.bool_(dist.is_main())

    tree = {k: v for k, v in inputs(r).items() if k != "f16"}
    tree = {k: (fnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in tree.items()}
    _flat("sum", dist.allreduce_sum(tree), res)
    float_tree = {k: v for k, v in tree.items() if k != "i32"}
    _flat("mean", dist.allreduce_mean(float_tree), res)
    _flat("wmean", dist.allreduce_mean(float_tree, weight=r + 2), res)
    _flat("f16", dist.allreduce_mean({"f16": inputs(r)["f16"]}), res)
    res["empty_sum"] = np.asarray(len(dist.allreduce_sum({})))

    # broadcast: Python numbers keep their type; any root.
    for root in range(p):
        got = dist.broadcast({"x": inputs(r)["f32"], "step": 10 * r, "flag": r == 0}, root=root)
        res[f"bcast{root}.x"] = np.asarray(got["x"])
        res[f"bcast{root}.step"] = np.asarray(got["step"])
        res[f"bcast{root}.types"] = np.str_(
            f"{type(got['step']).__name__},{type(got['flag']).__name__}"
        )

    # shard: every leaf sliced alike, on uneven sizes too.
    for n in SHARD_SIZES:
        x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
        y = np.arange(n, dtype=np.int32)
        xs, ys = dist.shard((x, y))
        res[f"shard{n}.x"], res[f"shard{n}.y"] = np.asarray(xs), np.asarray(ys)
        res[f"shard{n}.axis1"] = np.asarray(dist.shard(x.T, axis=1))

    # Mismatched inputs raise on every rank instead of mixing numbers (or hanging).
    res["err.shape"] = np.str_(_error(lambda: dist.allreduce_sum({"w": np.zeros(3 + r)})))
    res["err.keys"] = np.str_(_error(lambda: dist.broadcast({f"k{r}": np.zeros(2)})))
    res["err.int_mean"] = np.str_(_error(lambda: dist.allreduce_mean({"i": np.arange(3)})))

    # Checkpoints: only rank 0's path is real; the others pass a path that does not
    # exist on their side (and no tree), so the test shows rank 0 alone reads/writes.
    real = os.path.join(out_dir, "ckpt.npz")
    path = real if r == 0 else os.path.join(out_dir, "not-here", "ckpt.npz")
    state = {"w": fnp.asarray(inputs(0)["f32"]), "step": 5}
    dist.save_checkpoint(path, state if r == 0 else None)
    res["ckpt.exists_after_save"] = np.bool_(os.path.exists(real))
    loaded = dist.load_checkpoint(path, like={"w": fnp.zeros((5, 3)), "step": 0})
    res["ckpt.w"], res["ckpt.step"] = np.asarray(loaded["w"]), np.asarray(loaded["step"])
    res["ckpt.plain_step"] = np.asarray(dist.load_checkpoint(path)["step"])
    res["err.ckpt_missing"] = np.str_(
        _error(lambda: dist.load_checkpoint(os.path.join(out_dir, "missing.npz")))
    )
    res["err.ckpt_template"] = np.str_(
        _error(lambda: dist.load_checkpoint(path, like={"w": fnp.zeros((2, 2)), "step": 0}))
    )
    bad_dir = os.path.join(out_dir, "no-such-dir", "ckpt.npz")
    res["err.ckpt_save"] = np.str_(_error(lambda: dist.save_checkpoint(bad_dir, state)))

    dist.barrier()
    np.savez(os.path.join(out_dir, f"collectives-rank{r}.npz"), **res)


if __name__ == "__main__":
    main(sys.argv[1])
