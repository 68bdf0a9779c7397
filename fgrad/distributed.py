"""Data parallelism over MPI: every process trains on its shard, gradients are averaged.

Launch the same script once per process with MPI's launcher::

    mpiexec -n 2 python train.py

and change the training loop in three places: broadcast the initial parameters from
rank 0, take this rank's ``shard`` of every global batch, and average the gradients
before the optimizer step (``optim.data_parallel`` does that last part)::

    from fgrad import distributed as dist, optim

    params = dist.broadcast(params)                        # identical start everywhere
    opt = optim.data_parallel(optim.adam(1e-3))            # allreduce-mean, then Adam
    for xb, yb in batches:                                 # the same global batches
        loss, grads = grad_fn(params, *dist.shard((xb, yb)))
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optim.apply_updates(params, updates)
    dist.save_checkpoint("ckpt.npz", (params, opt_state))  # rank 0 writes

**Without MPI.** The transport is ``mpi4py`` (the ``mpi`` extra: ``pip install mpi4py
mpich``), imported lazily on the first call that needs it, never by ``import fgrad``.
A process that was not started by an MPI launcher (no ``PMI_SIZE``,
``OMPI_COMM_WORLD_SIZE``, ``MV2_COMM_WORLD_SIZE``, ``PMI_RANK`` or ``PMIX_RANK`` in its
environment), or one started as a single process, is rank 0 of 1: every function works
and no MPI library is loaded. ``FGRAD_MPI=1`` forces MPI on (e.g. a launcher that sets
none of those variables), ``FGRAD_MPI=0`` forces it off; ``init(comm)`` picks a
communicator explicitly.

**Determinism.** Each call packs all leaves of one dtype into one contiguous buffer
(one message per dtype, not one per leaf) and reduces it with a reduce-scatter
(``MPI_Reduce_scatter_block``: rank ``r`` sums the ``r``-th chunk of every rank's
buffer) followed by an ``MPI_Allgather`` of the summed chunks. Every element of the
result is computed once, on one rank, and then copied, so all ranks receive the same
bits by construction and parameters never drift apart. With MPICH's and Open MPI's
algorithms the summation order is fixed by the process count and message size, so
runs also repeat bit for bit. This is the bandwidth-optimal allreduce (each rank sends
and receives ``2 (p-1)/p`` times the buffer), as fast as ``MPI_Allreduce`` here.

**Failures.** When this module finds itself in a job of more than one process, it
installs a ``sys.excepthook`` that prints the traceback and then calls
``MPI.COMM_WORLD.Abort(1)``: an uncaught exception on any rank ends the whole job with a
non-zero exit status instead of leaving the other ranks blocked in a collective forever.
Collective calls whose inputs differ between ranks (tree structure, shapes or dtypes)
raise ``ValueError`` on every rank rather than mixing unrelated numbers.

**Inside jit.** These are host operations (MPI calls on concrete buffers). Call them
outside ``fgrad.jit``/``grad``/``vmap``: jit the gradient computation, allreduce its
result, then run the update. Passing a traced value raises ``TypeError``, also in a
single process, so a script that works on a laptop works under ``mpiexec``.

See docs/distributed.md for launching on a cluster and the cost model.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from typing import Any

import numpy as np

from fgrad import io as fio
from fgrad import tree as tree_util
from fgrad.core import Array, Tracer

__all__ = [
    "allreduce_mean",
    "allreduce_sum",
    "barrier",
    "broadcast",
    "init",
    "is_main",
    "load_checkpoint",
    "rank",
    "save_checkpoint",
    "shard",
    "size",
]

# Launcher variables. A size hint decides on its own; a rank hint alone (PMIx under
# srun) means "ask MPI".
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")


class _World:
    """The communicator in use (None for a single process), its rank and size."""

    __slots__ = ("comm", "rank", "size")

    def __init__(self, comm: Any = None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        if self.size == 1:
            self.comm = None  # a one-process communicator: skip MPI entirely


_world: _World | None = None


def _launched_with_mpi() -> bool:
    """Whether the environment says this process is one of several MPI processes."""
    forced = os.environ.get("FGRAD_MPI", "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    for name in _SIZE_VARS:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value) > 1
            except ValueError:
                return True
    return any(name in os.environ for name in _RANK_VARS)


def _import_mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            "fgrad.distributed: this process was started by an MPI launcher (or FGRAD_MPI=1) "
            "but mpi4py is not installed, so every rank would train alone. Install the "
            "`mpi` extra: pip install mpi4py mpich (or set FGRAD_MPI=0 to run as one "
            "process)."
        ) from e
    return MPI


def _get_world() -> _World:
    global _world
    if _world is None:
        _world = _World(_import_mpi().COMM_WORLD if _launched_with_mpi() else None)
        if _world.size > 1:
            _install_abort_hook()
    return _world


def init(comm: Any = None) -> None:
    """Chooses the communicator explicitly (optional: the first call does it lazily).

    Args:
        comm: an ``mpi4py`` communicator (e.g. a ``Split`` of ``COMM_WORLD``). Without
            one, ``MPI.COMM_WORLD`` is used even when no launcher variable was found.

    Example: two independent data-parallel groups of the ranks of one job::

        from mpi4py import MPI
        world = MPI.COMM_WORLD
        dist.init(world.Split(color=world.Get_rank() % 2))
    """
    global _world
    _world = _World(_import_mpi().COMM_WORLD if comm is None else comm)
    if _world.size > 1:
        _install_abort_hook()


def rank() -> int:
    """This process's rank: 0 .. ``size() - 1`` (0 without MPI).

    Example:
        >>> from fgrad import distributed as dist
        >>> dist.rank()
        0
    """
    return _get_world().rank


def size() -> int:
    """The number of processes in the job (1 without MPI).

    Example:
        >>> from fgrad import distributed as dist
        >>> dist.size()
        1
    """
    return _get_world().size


def is_main() -> bool:
    """True on rank 0, the process that prints, logs and writes checkpoints.

    Example:
        >>> from fgrad import distributed as dist
        >>> dist.is_main()
        True
    """
    return _get_world().rank == 0


def barrier() -> None:
    """Blocks until every rank has called ``barrier`` (a no-op in one process)."""
    world = _get_world()
    if world.comm is not None:
        world.comm.Barrier()


# ---------------------------------------------------------------- failure handling

_previous_hook = None


def _install_abort_hook() -> None:
    """Make an uncaught exception on any rank end the whole job (see the module doc)."""
    global _previous_hook
    if _previous_hook is not None:
        return
    _previous_hook = sys.excepthook
    sys.excepthook = _abort_on_uncaught


def _abort_on_uncaught(exc_type, exc, tb) -> None:
    (_previous_hook or sys.__excepthook__)(exc_type, exc, tb)
    world = _world
    if world is not None:
        where = f"rank {world.rank} of {world.size}"
    else:  # failed before the first collective: MPI is not even initialised yet
        hint = next((os.environ[v] for v in _RANK_VARS if v in os.environ), "?")
        where = f"rank {hint}"
    try:
        sys.stderr.write(
            f"fgrad.distributed: uncaught {exc_type.__name__} on {where}; "
            "calling MPI_Abort to stop every rank\n"
        )
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        _import_mpi().COMM_WORLD.Abort(1)  # the whole job, whatever communicator was in use


if _launched_with_mpi():
    # Catch a failure even before the first collective (mpi4py is imported only if
    # the hook fires); otherwise the other ranks would wait for this one forever.
    _install_abort_hook()


# ---------------------------------------------------------------- helpers


def _flatten_concrete(tree: Any, what: str) -> tuple[list[Any], Any]:
    leaves, treedef = tree_util.tree_flatten(tree)
    for leaf in leaves:
        if isinstance(leaf, Tracer):
            raise TypeError(
                f"fgrad.distributed.{what} got a traced value ({leaf.dtype}{list(leaf.shape)}): "
                "it is a host (MPI) operation and cannot run inside jit, grad or vmap. "
                "Compute the gradients in a jitted function, call this on its result "
                "outside, then apply the update."
            )
    return leaves, treedef


def _as_numpy(leaf: Any, what: str) -> np.ndarray:
    if isinstance(leaf, Array | np.ndarray | np.generic | bool | int | float):
        return np.asarray(leaf)
    raise TypeError(
        f"fgrad.distributed.{what}: leaf of type {type(leaf).__name__} is not an array "
        "or a Python number"
    )


def _to_array(leaf: Any) -> Array:
    # A view, so wrapping never marks the caller's own NumPy array read-only.
    return leaf if isinstance(leaf, Array) else Array(np.asarray(leaf).view())


def _wire_dtype(dtype: np.dtype, what: str) -> np.dtype:
    """The dtype a leaf travels in: its own, except float16 (summed in float32)."""
    if dtype == np.bool_ or dtype.kind not in "iuf":
        raise TypeError(f"fgrad.distributed.{what}: cannot reduce arrays of dtype {dtype}")
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _check_same_everywhere(
    comm: Any,
    what: str,
    treedef: Any,
    arrays: list[np.ndarray],
    options: str = "",
    weight: float = 0.0,
) -> np.ndarray:
    """Raise on every rank if the ranks passed trees of different structure/shapes/dtypes.

    One 16-byte allgather per call: a digest of this rank's tree signature, and its
    ``weight``, so the same message also gives every rank all the weights (in rank
    order). Cheap next to the payload, and it turns a mismatch into a clear error
    instead of a hang or silently mixed numbers.

    Returns:
        The weights of all ranks, ``float64[size]``, identical on every rank.
    """
    description = f"{options}{treedef!r} " + " ".join(f"{a.dtype}{list(a.shape)}" for a in arrays)
    record = np.empty(2, dtype=np.float64)
    record[:1].view(np.uint8)[:] = np.frombuffer(
        hashlib.blake2b(description.encode(), digest_size=8).digest(), dtype=np.uint8
    )
    record[1] = weight
    everyone = np.empty((comm.Get_size(), 2), dtype=np.float64)
    comm.Allgather(record, everyone)
    digests = everyone[:, 0].view(np.int64)  # compare bits (a digest may look like NaN)
    if np.all(digests == digests[0]):
        return everyone[:, 1]
    descriptions = comm.allgather(description)
    bad = next(r for r in range(len(descriptions)) if digests[r] != digests[0])
    raise ValueError(
        f"fgrad.distributed.{what}: ranks passed different trees; every rank must pass the "
        f"same structure, shapes and dtypes.\n  rank 0: {_shorten(descriptions[0])}\n"
        f"  rank {bad}: {_shorten(descriptions[bad])}"
    )


def _shorten(s: str, limit: int = 400) -> str:
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _groups_by_dtype(arrays: list[np.ndarray], what: str) -> list[tuple[np.dtype, list[int]]]:
    """Leaf indices grouped by wire dtype, in an order every rank agrees on."""
    groups: dict[np.dtype, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(_wire_dtype(a.dtype, what), []).append(i)
    return sorted(groups.items(), key=lambda item: item[0].str)


def _pack(arrays: list[np.ndarray], idx: list[int], dtype: np.dtype, multiple: int) -> np.ndarray:
    """The leaves ``idx`` in one flat buffer, zero-padded to a multiple of ``multiple``."""
    n = sum(arrays[i].size for i in idx)
    padded = -(-n // multiple) * multiple
    buf = np.empty(padded, dtype=dtype)
    if idx:
        np.concatenate([arrays[i].reshape(-1) for i in idx], out=buf[:n], casting="same_kind")
    buf[n:] = 0
    return buf


def _unpack(buf: np.ndarray, arrays: list[np.ndarray], idx: list[int], out: list[Any]) -> None:
    offset = 0
    for i in idx:
        a = arrays[i]
        view = buf[offset : offset + a.size].reshape(a.shape)
        offset += a.size
        out[i] = Array(view if view.dtype == a.dtype else view.astype(a.dtype))


# ---------------------------------------------------------------- collectives


def allreduce_sum(tree: Any) -> Any:
    """The elementwise sum of ``tree`` over all ranks, identical on every rank.

    Args:
        tree: a pytree of arrays (or Python numbers) with the same structure, shapes
            and dtypes on every rank. Integer leaves are allowed.

    Returns:
        A pytree of ``fgrad.Array`` with ``tree``'s structure, shapes and dtypes. In a
        single process: the leaves of ``tree`` as arrays, unchanged.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import distributed as dist
        >>> dist.allreduce_sum({"w": fnp.asarray([1.0, 2.0])})["w"].tolist()  # 1 process
        [1.0, 2.0]
    """
    return _allreduce(tree, "allreduce_sum", mean=False, weight=None)


def allreduce_mean(tree: Any, weight: float | None = None) -> Any:
    """The mean of ``tree`` over all ranks, identical on every rank.

    Args:
        tree: a pytree of floating-point arrays with the same structure, shapes and
            dtypes on every rank (e.g. this rank's gradients).
        weight: optional weight of this rank's contribution, e.g. the number of
            examples in its shard. The result is ``sum_r w_r x_r / sum_r w_r``: with
            uneven shards and per-shard mean losses, ``weight=len(local_batch)`` gives
            exactly the gradient of the mean loss over the global batch. Without it,
            every rank counts equally: ``sum_r x_r / size()``.

    Returns:
        A pytree of ``fgrad.Array`` with ``tree``'s structure, shapes and dtypes. In a
        single process: ``tree``'s leaves unchanged (a weight cancels out).

    Raises:
        TypeError: an integer or boolean leaf (their mean is not an integer), or a
            traced value (call this outside ``jit``).
        ValueError: the ranks passed different trees.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import distributed as dist
        >>> g = {"w": fnp.asarray([0.5, -1.0])}
        >>> dist.allreduce_mean(g, weight=64)["w"].tolist()  # 1 process: unchanged
        [0.5, -1.0]
    """
    return _allreduce(tree, "allreduce_mean", mean=True, weight=weight)


def _allreduce(tree: Any, what: str, *, mean: bool, weight: float | None) -> Any:
    leaves, treedef = _flatten_concrete(tree, what)
    world = _get_world()
    arrays = [_as_numpy(x, what) for x in leaves]
    if mean:
        for a in arrays:
            if a.dtype.kind != "f":
                raise TypeError(
                    f"fgrad.distributed.{what}: leaf of dtype {a.dtype} has no same-dtype mean; "
                    "use allreduce_sum for integers"
                )
    if world.comm is None:  # one process: nothing to reduce, nothing to copy
        return tree_util.tree_unflatten(treedef, [_to_array(x) for x in leaves])

    from mpi4py import MPI  # already imported by _get_world

    comm, p = world.comm, world.size
    weighted = mean and weight is not None
    weights = _check_same_everywhere(
        comm, what, treedef, arrays, f"weight={'yes' if weighted else 'no'} ", weight or 0.0
    )
    # Every rank sums the same weights in the same (rank) order: identical totals.
    total = float(np.sum(weights)) if weighted else float(p)
    if not total > 0:
        raise ValueError(f"fgrad.distributed.{what}: the weights sum to {total}, not > 0")
    out: list[Any] = [None] * len(arrays)
    for dtype, idx in _groups_by_dtype(arrays, what):
        buf = _pack(arrays, idx, dtype, multiple=p)
        if weighted:
            buf *= dtype.type(weight)
        # Reduce-scatter: rank r sums chunk r of everyone's buffer; each element of the
        # result is computed by exactly one rank. The allgather then copies those bits
        # to everyone. Bandwidth-optimal (2 (p-1)/p bytes per rank), deterministic by
        # construction (no rank re-adds in its own order).
        chunk = np.empty(buf.size // p, dtype=dtype)
        comm.Reduce_scatter_block(buf, chunk, op=MPI.SUM)
        if mean:
            chunk /= dtype.type(total)
        comm.Allgather(chunk, buf)
        _unpack(buf, arrays, idx, out)
    return tree_util.tree_unflatten(treedef, out)


def broadcast(tree: Any, root: int = 0) -> Any:
    """Every rank gets ``root``'s values of ``tree`` (e.g. the initial parameters).

    Args:
        tree: a pytree of arrays and Python numbers with the same structure, shapes
            and dtypes on every rank; only ``root``'s values are used (the others'
            serve as a template, e.g. parameters initialised from any seed).
        root: the rank whose values win.

    Returns:
        ``root``'s tree: array leaves as ``fgrad.Array``, Python numbers as Python
        numbers. In a single process: ``tree`` itself.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import distributed as dist
        >>> dist.broadcast({"w": fnp.ones(2), "step": 3})["step"]
        3
    """
    leaves, treedef = _flatten_concrete(tree, "broadcast")
    world = _get_world()
    if not 0 <= root < world.size:
        raise ValueError(f"fgrad.distributed.broadcast: root {root} is not a rank of {world.size}")
    if world.comm is None:
        return tree
    arrays = [_as_numpy(x, "broadcast") for x in leaves]
    comm = world.comm
    _check_same_everywhere(comm, "broadcast", treedef, arrays, f"root={root} ")
    groups: dict[np.dtype, list[int]] = {}
    for i, a in enumerate(arrays):  # any dtype travels as bytes, bool included
        groups.setdefault(a.dtype, []).append(i)
    out: list[Any] = [None] * len(arrays)
    for dtype, idx in sorted(groups.items(), key=lambda item: item[0].str):
        buf = _pack(arrays, idx, dtype, multiple=1)
        comm.Bcast(buf.view(np.uint8), root=root)
        _unpack(buf, arrays, idx, out)
    for i, leaf in enumerate(leaves):  # Python numbers stay Python numbers
        if isinstance(leaf, bool | int | float) and not isinstance(leaf, np.generic):
            out[i] = type(leaf)(np.asarray(out[i]).item())
    return tree_util.tree_unflatten(treedef, out)


def shard(batch: Any, axis: int = 0) -> Any:
    """This rank's slice of a global batch (every leaf sliced the same way).

    Rule for uneven sizes: with ``n`` examples and ``size()`` ranks, rank ``r`` takes
    ``n // size()`` examples, plus one more if ``r < n % size()``; the slices are
    contiguous and in rank order, so concatenating them over the ranks gives the batch
    back. Example: 10 examples on 4 ranks -> 3, 3, 2, 2 (``[0:3], [3:6], [6:8], [8:10]``).
    A rank may get no examples when ``n < size()``.

    Args:
        batch: a pytree of arrays whose leaves all have the same length along ``axis``
            (e.g. ``(x, y)``), identical on every rank.
        axis: the batch axis.

    Returns:
        The pytree of ``fgrad.Array`` views of this rank's slice (no copy).

    Example:
        >>> import numpy as np
        >>> from fgrad import distributed as dist
        >>> x, y = dist.shard((np.arange(10.0), np.arange(10)))  # 1 process: everything
        >>> x.shape, y.shape
        ((10,), (10,))
    """
    leaves, treedef = _flatten_concrete(batch, "shard")
    arrays = [np.asarray(x) for x in leaves]
    if not arrays:
        return batch
    lengths = {a.shape[axis] if a.ndim else None for a in arrays}
    if len(lengths) != 1 or None in lengths:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(
            f"fgrad.distributed.shard: every leaf needs the same length along axis {axis}; "
            f"got shapes {shapes}"
        )
    world = _get_world()
    start, stop = _shard_bounds(lengths.pop(), world.rank, world.size)
    out = []
    for a in arrays:
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, stop)
        out.append(Array(a[tuple(index)]))
    return tree_util.tree_unflatten(treedef, out)


def _shard_bounds(n: int, r: int, p: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``r`` of ``p`` for ``n`` examples (the first ``n % p`` get one more)."""
    base, extra = divmod(n, p)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, tree: Any) -> None:
    """Rank 0 writes ``tree`` to ``path`` (atomically, with ``fgrad.io.save``); the others wait.

    Every rank must call it. When it returns, the file is complete on rank 0's file
    system. If the write fails, every rank raises (rank 0 its own error, the others a
    ``RuntimeError`` naming it), so no rank carries on thinking it was saved.

    Args:
        path: the destination file.
        tree: the pytree to save; only rank 0's is used (data-parallel ranks hold
            identical parameters), so the others may pass anything, e.g. None.

    Example:
        >>> import os, tempfile, fgrad.numpy as fnp
        >>> from fgrad import distributed as dist
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
        >>> dist.save_checkpoint(path, {"w": fnp.ones(2), "step": 7})
        >>> dist.load_checkpoint(path)["step"]
        7
    """
    world = _get_world()
    if world.comm is None:
        fio.save(path, tree)
        return
    error = None
    if world.rank == 0:
        try:
            fio.save(path, tree)
        except Exception as e:
            error = e
    # The status broadcast is the barrier: nobody returns before rank 0 has finished.
    message = world.comm.bcast(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise RuntimeError(f"fgrad.distributed.save_checkpoint: rank 0 failed to save: {message}")


def load_checkpoint(path: str | os.PathLike, like: Any = None) -> Any:
    """Rank 0 reads ``path`` and broadcasts it; every rank returns the same tree.

    Only rank 0 needs to see the file (no shared file system required). Every rank
    verifies the checksum and, with ``like``, the structure, shapes and dtypes, exactly
    as ``fgrad.io.load`` does; an error (missing file, corruption, template mismatch)
    is raised on every rank as ``fgrad.io.CheckpointError``, so a restart can fall back
    to fresh parameters everywhere at once.

    Args:
        path: the checkpoint (on rank 0's file system).
        like: optional template pytree (see ``fgrad.io.load``).

    Returns:
        The loaded pytree, identical on every rank.
    """
    world = _get_world()
    if world.comm is None:
        return fio.load(path, like)
    comm = world.comm
    path = os.fspath(path)
    data = error = None
    if world.rank == 0:
        try:
            with open(path, "rb") as f:
                data = np.frombuffer(f.read(), dtype=np.uint8)
        except OSError as e:
            error = f"load: cannot read checkpoint {path!r} ({type(e).__name__}: {e})"
    header = comm.bcast((error, None if data is None else data.size))
    if header[0] is not None:
        raise fio.CheckpointError(header[0])
    if world.rank != 0:
        data = np.empty(header[1], dtype=np.uint8)
    comm.Bcast(data, root=0)
    # Every rank decodes the same bytes with fgrad.io (checksum and template checks
    # included), so they all succeed, or all fail with the same message.
    fd, tmp = tempfile.mkstemp(prefix=".fgrad-ckpt-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.tobytes())
        try:
            return fio.load(tmp, like)
        except fio.CheckpointError as e:
            raise fio.CheckpointError(str(e).replace(repr(tmp), repr(path))) from None
    finally:
        os.unlink(tmp)
