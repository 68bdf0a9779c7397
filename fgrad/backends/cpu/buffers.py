"""Buffer reuse for compiled CPU programs, planned once at code-generation time.

Shapes are static in a jaxpr, so the driver generator can decide before anything runs
which intermediate array each new result may overwrite: once the last step reading a
buffer has run, the buffer goes to a pool keyed by (shape, dtype), and the next fusion
group output or matrix product of that shape and dtype writes into it (``out=``)
instead of allocating. Reuse saves the allocation and, more, keeps the working set
in cache (a 784x512 float32 group kernel: 37 us into a reused buffer, 44 us into a new
one). Writing a group's output in place over one of its own inputs would be safe (each
iteration loads index ``i`` before storing it) but is not done: Numba cannot prove the
arrays distinct, LLVM's runtime overlap check fails, and the loop runs unvectorised
(406 us for the same kernel).

Only buffers the program allocated itself are ever reused: never a caller's argument,
a constant, or anything a NumPy kernel returned (that may be a view of something
else). An owned buffer read by such a kernel is *pinned* (its result may alias it)
and never reused within the call. Outputs of the program are live to the end.

Across calls, large results (group outputs and matmuls of at least
``RECYCLE_MIN_BYTES``) are written into arrays from the program's ``Recycler``: arrays
of earlier calls that nothing references any more (the previous step's intermediates,
and its outputs once the caller dropped them), so a training loop stops paying for
fresh pages every step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fgrad.backends.cpu.workspace import take_free
from fgrad.core import Var


class BufferPlanner:
    """Tracks, step by step, which driver names hold reusable program-owned buffers."""

    def __init__(self, last_use: dict[Var, int]):
        self._last_use = last_use
        self._bid: dict[str, int] = {}  # driver name -> buffer id
        self._owner: dict[int, Var] = {}  # buffer id -> the var that holds it now
        self._key: dict[int, tuple] = {}
        self._pinned: set[int] = set()
        self._pool: dict[tuple, list[str]] = {}
        #: How many results were written into a dead buffer instead of a new one.
        self.reused = 0

    @staticmethod
    def key(v: Var) -> tuple:
        return (tuple(v.aval.shape), np.dtype(v.aval.dtype).name)

    def _holder(self, name: str, v: Var) -> int | None:
        bid = self._bid.get(name)
        if bid is None or bid in self._pinned or self._owner.get(bid) is not v:
            return None
        return bid

    def pooled(self, v: Var) -> str | None:
        """A dead buffer for ``v`` if one is pooled (taken out of the pool)."""
        pool = self._pool.get(self.key(v))
        if pool:
            self.reused += 1
            return pool.pop()
        return None

    def owns(self, name: str, v: Var, buffer: str | None = None) -> None:
        """Record that driver name ``name`` holds ``v`` in a program-owned buffer
        (``buffer``: the name of the reused buffer it was written into, if any)."""
        bid = self._bid.get(buffer) if buffer is not None else None
        if bid is None:
            bid = len(self._key)
            self._key[bid] = self.key(v)
        self._bid[name] = bid
        if buffer is not None:
            self._bid[buffer] = bid
        self._owner[bid] = v

    def pin(self, names: Iterable[str]) -> None:
        """These names were read by a kernel whose result may alias them."""
        for name in names:
            bid = self._bid.get(name)
            if bid is not None:
                self._pinned.add(bid)

    def release(self, step: int, reads: Iterable[tuple[Var, str]]) -> None:
        """After ``step``: buffers whose holder was last read here become reusable."""
        for v, name in reads:
            if self._last_use.get(v) != step:
                continue
            bid = self._holder(name, v)
            if bid is None:
                continue
            del self._owner[bid]
            self._pool.setdefault(self._key[bid], []).append(name)


def last_uses(units: Sequence[Any], reads: Sequence[set], outvars: Sequence[Any]) -> dict:
    """Index of the last unit reading each var; program outputs live past the end."""
    last: dict[Var, int] = {}
    for i, r in enumerate(reads):
        for v in r:
            last[v] = i
    for v in outvars:
        if isinstance(v, Var):
            last[v] = len(units)
    return last


#: Results at least this large (bytes) are written into recycled arrays across calls:
#: glibc serves allocations above its mmap threshold (128 KiB, adjusted at run time) with
#: fresh pages, so a new 1.6 MB array costs ~400 page faults each step; the mlp benchmark
#: step ran at 390 steps/s allocating and at 750 recycling.
RECYCLE_MIN_BYTES = 1 << 16


class Recycler:
    """Large result arrays of one Program, handed out again on later calls once nothing
    outside the recycler references them.

    An array the caller still holds (a returned output, a view of it, the previous step's
    parameters now passed back in) has extra references and is never handed out; the
    reference count is read under a lock, and a taken array is referenced by the
    program's local variable before the lock is released, so two threads never get the
    same array. Each (shape, dtype) keeps at most ``cap`` arrays (twice the number the
    program takes per call, plus slack), so memory stays bounded: about two calls' worth
    of large results.
    """

    def __init__(self):
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._cap: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def register(self, key: tuple) -> None:
        """Count one take of ``key`` per call (at code generation)."""
        self._cap[key] = self._cap.get(key, 2) + 2
        self._arrays.setdefault(key, [])

    def take(self, key: tuple) -> np.ndarray:
        """A writeable array of ``key = (shape, dtype name)``: a free recycled one, or new."""
        with self._lock:
            return take_free(self._arrays[key], key[0], key[1], self._cap[key])
