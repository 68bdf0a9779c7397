"""Large scratch and result arrays for the CPU kernels, recycled across calls.

glibc serves allocations above its mmap threshold (128 KiB, adjusted at run time) with
fresh pages from the kernel: a convolution that pads its 7 MB input and writes a 6 MB
result into new arrays takes ~1,900 page faults per call. ``empty`` hands out an array
from an earlier call instead, once nothing but this cache references it: results the
caller still holds, views of them, and arrays in use by another thread all carry extra
references (the count is read under a lock). The cache is bounded: ``MAX_PER_SHAPE``
arrays per (shape, dtype) and the ``MAX_SHAPES`` most recently used shapes.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict

import numpy as np

#: Arrays smaller than this are allocated normally (the heap serves them cheaply).
MIN_BYTES = 1 << 16
MAX_PER_SHAPE = 4
MAX_SHAPES = 64

_lock = threading.Lock()
_arrays: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()


def _free_refcount() -> int:
    """The reference count of an array held only by a cache list, read inside the same
    loop ``take_free`` uses (the loop variable and the call's argument count too)."""
    probe = [np.empty(1)]
    for a in probe:
        return sys.getrefcount(a)
    raise AssertionError  # pragma: no cover


_FREE = _free_refcount()


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised writeable array, recycled when one of this shape is free.

    Args:
        shape: the array's shape.
        dtype: its dtype.

    Returns:
        A C-contiguous array that no one else references.

    Example:
        >>> out = empty((512, 512), np.float32)  # later calls may get the same memory
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if dtype.itemsize * int(np.prod(shape)) < MIN_BYTES:
        return np.empty(shape, dtype)
    key = (shape, dtype.str)
    with _lock:
        arrays = _arrays.get(key)
        if arrays is None:
            arrays = _arrays[key] = []
            while len(_arrays) > MAX_SHAPES:
                _arrays.popitem(last=False)
        else:
            _arrays.move_to_end(key)
        return take_free(arrays, shape, dtype, MAX_PER_SHAPE)


def take_free(arrays: list, shape, dtype, cap: int) -> np.ndarray:
    """An array of ``arrays`` that only the list references (made writeable), else a
    new one, kept in the list while it holds fewer than ``cap``. The caller holds the
    lock that guards ``arrays``."""
    for a in arrays:
        if sys.getrefcount(a) <= _FREE:
            a.setflags(write=True)  # results are handed out read-only
            return a
    a = np.empty(shape, dtype)
    if len(arrays) < cap:
        arrays.append(a)
    return a


def zeros(shape, dtype) -> np.ndarray:
    """``empty`` filled with zeros."""
    a = empty(shape, dtype)
    a.fill(0)
    return a


def padded(x: np.ndarray, pads) -> np.ndarray:
    """``np.pad(x, pads)`` (zeros) into a recycled array."""
    shape = [d + lo + hi for d, (lo, hi) in zip(x.shape, pads)]
    out = empty(shape, x.dtype)
    region = tuple(slice(lo, lo + d) for d, (lo, _) in zip(x.shape, pads))
    # Zero only the margins; the interior is overwritten.
    for axis, (lo, hi) in enumerate(pads):
        if lo:
            out[(slice(None),) * axis + (slice(0, lo),)] = 0
        if hi:
            out[(slice(None),) * axis + (slice(out.shape[axis] - hi, None),)] = 0
    out[region] = x
    return out
