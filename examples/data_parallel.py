"""Data-parallel training of the digits MLP over MPI: one script, 1 or N processes.

Every process sees the same shuffled global batches, trains on its ``dist.shard`` of
each, and averages the gradients with ``optim.data_parallel`` (one changed line in the
training step); rank 0's initial parameters are broadcast, so all ranks hold
bit-identical parameters throughout (checked at the end). The digits bundled with
scikit-learn (the examples extra) are split 80/20 and standardised on the training
part; without scikit-learn, a synthetic 10-class problem of the same shape.

Run:  python examples/data_parallel.py --threads 1      # one process, one BLAS thread
      mpiexec -n 2 python examples/data_parallel.py    # two processes, one thread each
Prints each process's throughput, the total, and the test accuracy (about 97%). Rank 0
saves <out>/data_parallel.png (the global training loss per epoch) and, with
--checkpoint PATH, the parameters and optimizer state (rank 0 writes, all wait).
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

import fgrad
from fgrad import data, nn, optim, random
from fgrad import distributed as dist
from fgrad.examples import common

try:
    data_parallel = optim.data_parallel
except AttributeError:  # an fgrad.optim without the re-export
    from fgrad.optim.data_parallel import data_parallel


def build_parser():
    p = common.parser(__doc__, __file__, epochs=15, batch_size=128, lr=3e-3)
    p.add_argument("--hidden", type=int, default=128, help="width of the two hidden layers")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads per process (default: this machine's cores / its ranks)",
    )
    p.add_argument("--checkpoint", default=None, help="rank 0 saves params and state here")
    return p


def blas_threads(threads: int | None):
    """Share the cores among this machine's ranks (else BLAS threads oversubscribe)."""
    local = next(
        (
            int(os.environ[v])
            for v in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")
            if v in os.environ
        ),
        1,
    )
    threads = threads or max(1, (os.cpu_count() or 1) // local)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn; else set OMP_NUM_THREADS yourself
        return contextlib.nullcontext(), "BLAS threads: library default"
    return threadpool_limits(limits=threads, user_api="blas"), f"{threads} BLAS thread(s) each"


def load_splits(key) -> tuple[tuple, tuple, str]:
    """Standardised (train, test) pairs of (float32 x, int32 y), and the data's name."""
    try:
        images, labels = data.load_digits()
        x, name = images.reshape(len(images), -1), "digits"
    except ImportError:
        rng = np.random.default_rng(1234)
        centres = rng.normal(size=(10, 64)).astype(np.float32)
        labels = rng.integers(0, 10, size=1797).astype(np.int32)
        x = centres[labels] + rng.normal(scale=1.5, size=(1797, 64)).astype(np.float32)
        name = "synthetic digits-shaped data (scikit-learn is not installed)"
    # The same key on every rank: every rank holds the same split, in the same order.
    (x_train, y_train), (x_test, y_test) = data.train_val_split(
        (x, labels), 0.2, key=key, stratify=labels
    )
    scaler = data.Standardizer.fit(x_train)
    return (scaler(x_train), y_train), (scaler(x_test), y_test), name


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    timer = common.Timer()
    data_key, init_key, order_key = random.split(random.key(args.seed), 3)
    (x_train, y_train), (x_test, y_test), data_name = load_splits(data_key)

    model = nn.Sequential(
        [nn.Dense(args.hidden), nn.relu, nn.Dense(args.hidden), nn.relu, nn.Dense(10)]
    )
    # Each rank may initialise differently; broadcast makes everyone start from rank 0's.
    params, _ = model.init(random.fold_in(init_key, dist.rank()), (1, x_train.shape[1]))
    params = dist.broadcast(params)

    def loss_fn(params, x, y):
        logits, _ = model.apply(params, {}, x)
        return nn.softmax_cross_entropy_with_integer_labels(logits, y)

    grad_fn = fgrad.jit(fgrad.value_and_grad(loss_fn))
    apply_updates = fgrad.jit(optim.apply_updates)
    opt = data_parallel(optim.adam(args.lr))  # was: optim.adam(args.lr)
    opt_state = opt.init(params)

    limits, threads = blas_threads(args.threads)
    if dist.is_main():
        print(
            f"{data_name}: {len(x_train)} train / {len(x_test)} test, global batch "
            f"{args.batch_size} over {dist.size()} process(es), {threads}"
        )
    history, n_local, seconds = [], 0, 0.0
    timed_from = 1 if args.epochs > 1 else 0  # epoch 0 includes the compiles
    with limits:
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            loss_sum = np.zeros(2)  # (sum of local losses x examples, examples)
            key = random.fold_in(order_key, epoch)  # same order on every rank
            for batch in data.batches((x_train, y_train), args.batch_size, key=key):
                xb, yb = dist.shard(batch)
                loss, grads = grad_fn(params, xb, yb)
                # weight = local examples: the exact global-batch gradient even when the
                # last batch of the epoch does not split evenly over the ranks.
                updates, opt_state = opt.update(grads, opt_state, params, weight=xb.shape[0])
                params = apply_updates(params, updates)
                loss_sum += (float(loss) * xb.shape[0], xb.shape[0])
                if epoch >= timed_from:
                    n_local += xb.shape[0]
            if epoch >= timed_from:
                seconds += time.perf_counter() - t0
            total = np.asarray(dist.allreduce_sum(loss_sum))  # over all ranks' shards
            history.append(float(total[0] / total[1]))
            if dist.is_main() and (epoch % 5 == 4 or epoch == args.epochs - 1):
                print(f"epoch {epoch + 1:3d}  training loss {history[-1]:.4f}")

    # Every rank holds the same bits: compare with rank 0's copy.
    rank0 = dist.broadcast(params)
    same = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(fgrad.tree.tree_leaves(params), fgrad.tree.tree_leaves(rank0))
    )
    n_same = int(np.asarray(dist.allreduce_sum(np.int32(same))))
    rates = np.zeros(dist.size())
    rates[dist.rank()] = n_local / max(seconds, 1e-9)
    rates = np.asarray(dist.allreduce_sum(rates))  # every rank's throughput, everywhere
    logits, _ = model.apply(params, {}, x_test)
    accuracy = float(np.mean(np.argmax(np.asarray(logits), axis=1) == y_test))
    if args.checkpoint:
        dist.save_checkpoint(args.checkpoint, {"params": params, "opt_state": opt_state})

    metrics = {
        "processes": dist.size(),
        "test_accuracy": accuracy,
        "examples_per_second": float(rates.sum()),
        "per_process_examples_per_second": rates.tolist(),
        "identical_params": n_same == dist.size(),
        "train_loss": history,
        "seconds": timer(),
    }
    if not dist.is_main():
        return metrics
    for r, rate in enumerate(rates):
        print(f"process {r}: {rate:9.0f} examples/s")
    print(f"total    : {rates.sum():9.0f} examples/s (epochs {timed_from + 1}..{args.epochs})")
    print(f"identical parameters on {n_same}/{dist.size()} processes")
    print(f"test accuracy {accuracy:.2%}")
    plt = common.pyplot(args)
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ax.semilogy(np.arange(1, len(history) + 1), history)
        ax.set_xlabel("epoch")
        ax.set_title(f"training loss, {dist.size()} process(es)")
        metrics["plot"] = common.save_figure(fig, args.out, "data_parallel")
    return metrics


if __name__ == "__main__":
    main()
