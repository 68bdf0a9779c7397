"""Numba kernels for the data-movement primitives: gather, pad, concatenate,
dynamic_update_slice.

Why a module of its own: none of these computes anything, they only move elements, so
they run on the operand's raw bits. Each operand is viewed as unsigned integers of its
item size (float32 as uint32, bool as uint8, ...), which gives one compiled signature
per item size (at most four) instead of one per dtype, and every rank is served by
the same flat kernels:

* ``gather``: rows of a ``(n, rest)`` view picked by a flat index array, with the
  reference's index semantics (negative indices wrap once, then all clamp to
  ``[0, n-1]``);
* ``_copy_nd``: an N-d strided block copy between flat buffers (shape and element
  strides passed as int64 arrays, so the rank is data, not a signature); ``pad``
  (interior padding is a destination stride, negative edges crop the source),
  ``concatenate`` and ``dynamic_update_slice`` are each a fill or copy plus one
  ``_copy_nd`` per operand.

Measured against NumPy (docs/performance.md, "Eager kernels"): gather and pad win at
every size (no index-array temporaries, no full-size intermediate for interior padding);
dynamic_update_slice wins below ``LARGE`` elements, above which NumPy's memcpy is
faster; NumPy's concatenate is faster at every size, so ``concatenate`` here is kept
out of ``KERNELS`` (it runs only with ``ALWAYS`` set, as the tests do).
"""

from __future__ import annotations

import numba
import numpy as np

from fgrad.backends import reference

_JIT = dict(cache=True, nogil=True, error_model="numpy")

#: dynamic_update_slice operands with at least this many elements run the NumPy
#: reference, whose memcpy is faster there (see docs/performance.md).
LARGE = 16384
#: Whether concatenate runs its kernel (NumPy's concatenate measured faster at all sizes;
#: tests set it to exercise the kernel).
ALWAYS = False

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _prim(name):
    from fgrad.core import primitives

    return primitives[name]


def _ref(name, args, params):
    return reference.run(_prim(name), list(args), params)[0]


def _bits(x: np.ndarray) -> np.ndarray:
    """A C-contiguous flat view of ``x``'s elements as unsigned integers of its size."""
    return np.ascontiguousarray(x).reshape(-1).view(_BITS[x.dtype.itemsize])


def _movable(x: np.ndarray) -> bool:
    return x.dtype.itemsize in _BITS and x.dtype.kind in "biuf"


# ---------------------------------------------------------------- gather


@numba.njit(**_JIT)
def _gather_rows(x, idx, out):
    n = x.shape[0]
    for i in range(idx.shape[0]):
        j = idx[i]
        if j < 0:
            j += n
        if j < 0:
            j = 0
        elif j > n - 1:
            j = n - 1
        for r in range(x.shape[1]):
            out[i, r] = x[j, r]


def gather(x, idx):
    """``x[idx]`` along axis 0; negative indices wrap, then all clamp into range."""
    out_shape = tuple(idx.shape) + tuple(x.shape[1:])
    if not _movable(x):
        return _ref("gather", [x, idx], {})
    n = x.shape[0]
    rest = x.size // n if n else 0
    flat_idx = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    out = np.empty((flat_idx.shape[0], rest), _BITS[x.dtype.itemsize])
    _gather_rows(_bits(x).reshape(n, rest), flat_idx, out)
    return out.view(x.dtype).reshape(out_shape)


# ---------------------------------------------------------------- N-d block copy


@numba.njit(**_JIT)
def _copy_nd(src, s0, s_strides, dst, d0, d_strides, shape):
    """``dst[d0 + sum(i_k * d_strides[k])] = src[s0 + sum(i_k * s_strides[k])]`` for every
    index ``i`` of ``shape``."""
    nd = shape.shape[0]
    if nd == 0:
        dst[d0] = src[s0]
        return
    for k in range(nd):
        if shape[k] <= 0:
            return
    inner, si, di = shape[nd - 1], s_strides[nd - 1], d_strides[nd - 1]
    count = np.zeros(nd, np.int64)
    so, do = s0, d0
    while True:
        if si == 1 and di == 1:
            for k in range(inner):
                dst[do + k] = src[so + k]
        else:
            for k in range(inner):
                dst[do + k * di] = src[so + k * si]
        d = nd - 2
        while d >= 0:
            count[d] += 1
            so += s_strides[d]
            do += d_strides[d]
            if count[d] < shape[d]:
                break
            so -= s_strides[d] * shape[d]
            do -= d_strides[d] * shape[d]
            count[d] = 0
            d -= 1
        if d < 0:
            return


def _strides(shape) -> np.ndarray:
    """Element strides of a C-contiguous array of ``shape``."""
    out = np.ones(len(shape), np.int64)
    for k in range(len(shape) - 2, -1, -1):
        out[k] = out[k + 1] * shape[k + 1]
    return out


def _i64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


# ---------------------------------------------------------------- pad


def pad(x, v, *, padding_config):
    """Edge and interior padding with the scalar ``v``; negative edges crop."""
    params = {"padding_config": padding_config}
    if not _movable(x):
        return _ref("pad", [x, v], params)
    out_shape = [lo + hi + n + max(n - 1, 0) * i for n, (lo, hi, i) in zip(x.shape, padding_config)]
    if min(out_shape, default=0) < 0:  # invalid (the shape rule rejects it)
        return _ref("pad", [x, v], params)
    out = np.full(out_shape, v, dtype=x.dtype)
    src_st, out_st = _strides(x.shape), _strides(out_shape)
    s0 = d0 = 0
    counts, d_st = [], []
    for k, (n, (lo, _, i)) in enumerate(zip(x.shape, padding_config)):
        step = i + 1
        first = -(lo // step) if lo < 0 else 0  # ceil(-lo / step): the first kept element
        last = min(n - 1, (out_shape[k] - 1 - lo) // step)  # the last one inside
        counts.append(max(last - first + 1, 0))
        s0 += first * src_st[k]
        d0 += (lo + first * step) * out_st[k]
        d_st.append(out_st[k] * step)
    if min(counts, default=1) > 0:
        _copy_nd(_bits(x), s0, src_st, _bits(out), d0, _i64(d_st), _i64(counts))
    return out


# ---------------------------------------------------------------- concatenate


def concatenate(*xs, dimension):
    """Not in ``KERNELS``: NumPy's concatenate measured faster (docs/performance.md)."""
    if not ALWAYS or not _movable(xs[0]):
        return _ref("concatenate", xs, {"dimension": dimension})
    shape = list(xs[0].shape)
    shape[dimension] = sum(x.shape[dimension] for x in xs)
    out = np.empty(shape, xs[0].dtype)
    flat, out_st = _bits(out), _strides(shape)
    offset = 0
    for x in xs:
        if x.size:
            _copy_nd(_bits(x), 0, _strides(x.shape), flat, offset, out_st, _i64(x.shape))
        offset += x.shape[dimension] * out_st[dimension]
    return out


# ---------------------------------------------------------------- dynamic_update_slice


def dynamic_update_slice(x, update, *idx):
    if x.size >= LARGE or not _movable(x):
        return _ref("dynamic_update_slice", (x, update) + idx, {})
    # As the reference (and JAX): a negative start counts from the end, then starts
    # clamp so the update stays inside the operand.
    starts = []
    for s, n, k in zip(idx, x.shape, update.shape):
        s = int(s)
        s = s + n if s < 0 else s
        starts.append(min(max(s, 0), n - k))
    out = np.array(x, copy=True, order="C")
    if update.size:
        st = _strides(x.shape)
        d0 = int(sum(s * m for s, m in zip(starts, st)))
        _copy_nd(_bits(update), 0, _strides(update.shape), _bits(out), d0, st, _i64(update.shape))
    return out


KERNELS = {
    "gather": gather,
    "pad": pad,
    "dynamic_update_slice": dynamic_update_slice,
}
