"""Numba kernels for the reductions: sum, max, min, prod, argmax, argmin, cumsum, argsort.

Why a module of its own: every reduction here runs over the same canonical layout, a
C-contiguous ``(pre, n, post)`` view of the operand where ``n`` is the (flattened)
reduced extent. When the reduced axes are adjacent that view is a free reshape;
otherwise the operand is transposed (one copy) so that they are. One kernel per
operation then serves every rank, and the only signatures compiled are one per dtype
(bool operands run as uint8), which keeps Numba's compile and cache small.

The kernels reproduce the reference impls (``fgrad/lax/reductions.py``) exactly where
the semantics are discrete and to the last bits where NumPy's order allows:

* ``reduce_sum`` of floats along a contiguous run uses NumPy's pairwise summation
  (8 accumulators below 128 elements, halves above), the same tree as ``np.add.reduce``;
  across rows it adds row by row, as NumPy does; bool sums are logical ``or``;
* ``reduce_max`` / ``reduce_min`` propagate NaN and give the identity (-inf / the
  integer extremes) for an empty reduction; ``reduce_prod`` of bools is logical ``and``;
* ``argmax`` / ``argmin`` return the first extremum, or the first NaN if there is one;
* ``cumsum`` adds sequentially in the operand dtype (integers wrap, as in NumPy);
* ``argsort`` is a stable merge sort with NaNs last (first when ``descending``, which
  keeps equal keys in their original order, as the reference's flip trick does).

Where NumPy measured faster the wrappers call the reference instead (docs/performance.md,
"Eager kernels"): operands under ``SMALL`` elements (a NumPy call is cheaper than a
Numba dispatch plus the reshaping), sums/maxima/minima/arg-extrema over the innermost
contiguous elements (NumPy's SIMD loops), and every argsort (NumPy's timsort). The
Numba kernels win on the rest: reductions over leading axes (no strided passes),
products and cumulative sums.
"""

from __future__ import annotations

import numba
import numpy as np

from fgrad.backends import reference

_JIT = dict(cache=True, nogil=True, error_model="numpy")

#: Operands with fewer elements than this run the NumPy reference (see docs/performance.md).
SMALL = 8192
#: Whether to run the kernels also where NumPy measured faster: reductions whose reduced
#: elements are contiguous (NumPy's SIMD loops win there) and argsort (NumPy's timsort
#: wins). Tests set it, with ``SMALL = 0``, to exercise every kernel path.
ALWAYS = False

_BLOCK = 128  # NumPy's pairwise-summation block (PW_BLOCKSIZE)


# ---------------------------------------------------------------- canonical layout


def canonical(x: np.ndarray, axes) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` as a C-contiguous ``(pre, n, post)`` array reducing over ``axes``, and the
    shape of the kept axes (the output shape)."""
    axes = sorted(int(a) for a in axes)
    kept = [i for i in range(x.ndim) if i not in axes]
    out_shape = tuple(x.shape[i] for i in kept)
    n = 1
    for a in axes:
        n *= x.shape[a]
    if axes and axes[-1] - axes[0] == len(axes) - 1:
        pre = 1
        for i in range(axes[0]):
            pre *= x.shape[i]
        post = 1
        for i in range(axes[-1] + 1, x.ndim):
            post *= x.shape[i]
        return np.ascontiguousarray(x).reshape(pre, n, post), out_shape
    pre = 1
    for s in out_shape:
        pre *= s
    moved = np.ascontiguousarray(np.transpose(x, kept + axes))
    return moved.reshape(pre, n, 1), out_shape


def _numpy_faster(shape, axes) -> bool:
    """Whether NumPy's SIMD loops beat the kernels: the reduced elements are innermost
    (no kept axis after them of size > 1), unless ``ALWAYS`` is set."""
    post = 1
    for i in range(max(axes) + 1, len(shape)):
        post *= shape[i]
    adjacent = max(axes) - min(axes) == len(axes) - 1
    return not ALWAYS and (post == 1 or not adjacent)


def _as_numeric(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint8) if x.dtype == np.bool_ else x


_NUMBA_DTYPES = frozenset(
    np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.uint32, np.bool_)
)


def _supported(x: np.ndarray) -> bool:
    return x.dtype in _NUMBA_DTYPES


def _prim(name):
    from fgrad.core import primitives

    return primitives[name]


def _ref(name, args, params):
    return reference.run(_prim(name), list(args), params)[0]


# ---------------------------------------------------------------- sum


@numba.njit(**_JIT)
def _pairwise_block(row, start, n, zero):
    """NumPy's pairwise sum of ``row[start:start + n]`` for n <= 128: 8 accumulators
    (``pairwise_sum`` in numpy/_core/src/umath/loops_utils.h.src), in the operand dtype."""
    if n < 8:
        res = zero
        for i in range(n):
            res += row[start + i]
        return res
    r0 = row[start + 0]
    r1 = row[start + 1]
    r2 = row[start + 2]
    r3 = row[start + 3]
    r4 = row[start + 4]
    r5 = row[start + 5]
    r6 = row[start + 6]
    r7 = row[start + 7]
    i = 8
    while i < n - (n % 8):
        r0 += row[start + i + 0]
        r1 += row[start + i + 1]
        r2 += row[start + i + 2]
        r3 += row[start + i + 3]
        r4 += row[start + i + 4]
        r5 += row[start + i + 5]
        r6 += row[start + i + 6]
        r7 += row[start + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += row[start + i]
        i += 1
    return res


@numba.njit(**_JIT)
def _pairwise(row, zero):
    """NumPy's pairwise sum of a contiguous ``row``: blocks of 128 combined by halving
    (the split rounded down to a multiple of 8). The recursion runs on an explicit stack:
    Numba's on-disk cache cannot hold a self-recursive function."""
    n = row.shape[0]
    if n <= _BLOCK:
        return _pairwise_block(row, 0, n, zero)
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    stage = np.empty(64, np.int64)
    vals = np.empty(64, row.dtype)
    sp, vp = 1, 0
    starts[0], sizes[0], stage[0] = 0, n, 0
    while sp > 0:
        t = sp - 1
        s, m = starts[t], sizes[t]
        if m <= _BLOCK:
            vals[vp] = _pairwise_block(row, s, m, zero)
            vp += 1
            sp -= 1
            continue
        n2 = m // 2
        n2 -= n2 % 8
        if stage[t] == 0:  # left half
            stage[t] = 1
            starts[sp], sizes[sp], stage[sp] = s, n2, 0
            sp += 1
        elif stage[t] == 1:  # right half
            stage[t] = 2
            starts[sp], sizes[sp], stage[sp] = s + n2, m - n2, 0
            sp += 1
        else:  # both done: combine
            vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
            vp -= 1
            sp -= 1
    return vals[0]


@numba.njit(**_JIT)
def _sum_float(x, out, zero):
    pre, n, post = x.shape
    for p in range(pre):
        for q in range(post):
            out[p, q] = 0
        for i in range(n):
            for q in range(post):
                out[p, q] += x[p, i, q]


@numba.njit(**_JIT)
def _sum_int(x, out):
    # Integers wrap in the operand dtype, as ``np.sum(dtype=x.dtype)``: a 64-bit
    # accumulator truncated on store gives the same bits.
    pre, n, post = x.shape
    for p in range(pre):
        for q in range(post):
            acc = 0
            for i in range(n):
                acc += x[p, i, q]
            out[p, q] = acc


# ---------------------------------------------------------------- max / min / prod


@numba.njit(**_JIT)
def _max(x, out, init):
    pre, n, post = x.shape
    for p in range(pre):
        for q in range(post):
            out[p, q] = init
        for i in range(n):
            for q in range(post):
                v = x[p, i, q]
                m = out[p, q]
                if v > m or (v != v and m == m):  # NaN propagates
                    out[p, q] = v


@numba.njit(**_JIT)
def _min(x, out, init):
    pre, n, post = x.shape
    for p in range(pre):
        for q in range(post):
            out[p, q] = init
        for i in range(n):
            for q in range(post):
                v = x[p, i, q]
                m = out[p, q]
                if v < m or (v != v and m == m):
                    out[p, q] = v


@numba.njit(**_JIT)
def _prod(x, out):
    pre, n, post = x.shape
    for p in range(pre):
        for q in range(post):
            out[p, q] = 1
        for i in range(n):
            for q in range(post):
                out[p, q] *= x[p, i, q]


@numba.njit(**_JIT)
def _sum_rows(x, out, zero):
    for p in range(x.shape[0]):
        out[p] = _pairwise(x[p], zero)


@numba.njit(**_JIT)
def _max_rows(x, out, init):
    for p in range(x.shape[0]):
        row = x[p]
        m = init
        for i in range(row.shape[0]):
            v = row[i]
            if v > m:
                m = v
            elif v != v:
                m = v
                break
        out[p] = m


@numba.njit(**_JIT)
def _min_rows(x, out, init):
    for p in range(x.shape[0]):
        row = x[p]
        m = init
        for i in range(row.shape[0]):
            v = row[i]
            if v < m:
                m = v
            elif v != v:
                m = v
                break
        out[p] = m


@numba.njit(**_JIT)
def _prod_rows(x, out, one):
    for p in range(x.shape[0]):
        row = x[p]
        acc = one
        for i in range(row.shape[0]):
            acc *= row[i]
        out[p] = acc


def _identity(dtype, highest: bool):
    if dtype.kind == "f":
        return np.inf if highest else -np.inf
    if dtype == np.bool_:
        return 1 if highest else 0
    info = np.iinfo(dtype)
    return info.max if highest else info.min


def _reducer(name):
    def run(x, *, axes):
        if x.size < SMALL or not _supported(x) or not axes:
            return _ref(name, [x], {"axes": axes})
        if name != "reduce_prod" and _numpy_faster(x.shape, axes):
            return _ref(name, [x], {"axes": axes})
        x3, out_shape = canonical(x, axes)
        x3 = _as_numeric(x3)
        out = np.empty((x3.shape[0], x3.shape[2]), x3.dtype)
        logical = x.dtype == np.bool_
        if x3.shape[2] == 1:  # the reduced elements are contiguous: one row each
            rows, flat = x3.reshape(x3.shape[0], x3.shape[1]), out.reshape(-1)
            if name == "reduce_sum" and x.dtype.kind == "f":
                _sum_rows(rows, flat, x.dtype.type(0))
            elif name == "reduce_max" or (name == "reduce_sum" and logical):
                _max_rows(rows, flat, x3.dtype.type(_identity(x.dtype, False)))
            elif name == "reduce_min" or (name == "reduce_prod" and logical):
                _min_rows(rows, flat, x3.dtype.type(_identity(x.dtype, True)))
            elif name == "reduce_prod":
                _prod_rows(rows, flat, x.dtype.type(1))
            else:
                _sum_int(x3, out)
        elif name == "reduce_sum":
            if logical:  # sum of bools in bool is a logical or
                _max(x3, out, 0)
            elif x.dtype.kind == "f":
                _sum_float(x3, out, x.dtype.type(0))
            else:
                _sum_int(x3, out)
        elif name == "reduce_prod":
            _min(x3, out, 1) if logical else _prod(x3, out)
        elif name == "reduce_max":
            _max(x3, out, _identity(x.dtype, False))
        else:
            _min(x3, out, _identity(x.dtype, True))
        if logical:
            out = out.view(np.bool_)
        return out.reshape(out_shape)

    run.__name__ = name
    return run


reduce_sum = _reducer("reduce_sum")
reduce_max = _reducer("reduce_max")
reduce_min = _reducer("reduce_min")
reduce_prod = _reducer("reduce_prod")


# ---------------------------------------------------------------- argmax / argmin


@numba.njit(**_JIT)
def _argbest(x, out, best, sign):
    """First index of the max (``sign`` 1) or min (``sign`` -1) along axis 1, or of the
    first NaN. ``best`` is a scratch row of ``post`` values."""
    pre, n, post = x.shape
    if post == 1:  # contiguous rows: scalar state
        for p in range(pre):
            b = x[p, 0, 0]
            k = 0
            if b == b:
                for i in range(1, n):
                    v = x[p, i, 0]
                    if v > b if sign > 0 else v < b:
                        b = v
                        k = i
                    elif v != v:
                        k = i
                        break
            out[p, 0] = k
        return
    for p in range(pre):
        for q in range(post):
            best[q] = x[p, 0, q]
            out[p, q] = 0
        for i in range(1, n):
            for q in range(post):
                b = best[q]
                if b != b:
                    continue
                v = x[p, i, q]
                if (v > b if sign > 0 else v < b) or v != v:
                    best[q] = v
                    out[p, q] = i


def _arg(name, sign):
    def run(x, *, axis, index_dtype):
        params = {"axis": axis, "index_dtype": index_dtype}
        if x.size < SMALL or not _supported(x) or x.shape[axis] == 0:
            return _ref(name, [x], params)
        if _numpy_faster(x.shape, (axis,)):
            return _ref(name, [x], params)
        x3, out_shape = canonical(x, (axis,))
        x3 = _as_numeric(x3)
        out = np.empty((x3.shape[0], x3.shape[2]), np.int64)
        _argbest(x3, out, np.empty(x3.shape[2], x3.dtype), sign)
        return out.reshape(out_shape).astype(index_dtype, copy=False)

    run.__name__ = name
    return run


argmax = _arg("argmax", 1)
argmin = _arg("argmin", -1)


# ---------------------------------------------------------------- cumsum


@numba.njit(**_JIT)
def _cumsum(x, out, reverse):
    pre, n, post = x.shape
    if n == 0:
        return
    for p in range(pre):
        first = n - 1 if reverse else 0
        for q in range(post):
            out[p, first, q] = x[p, first, q]
        for k in range(1, n):
            i = n - 1 - k if reverse else k
            j = i + 1 if reverse else i - 1
            for q in range(post):
                out[p, i, q] = out[p, j, q] + x[p, i, q]


def cumsum(x, *, axis, reverse):
    if x.size < SMALL or not _supported(x):
        return _ref("cumsum", [x], {"axis": axis, "reverse": reverse})
    x3, _ = canonical(x, (axis,))
    if x.dtype == np.bool_:  # a running logical or
        out = np.empty(x3.shape, np.int64)
        _cumsum(x3.view(np.uint8).astype(np.int64), out, bool(reverse))
        return (out != 0).reshape(x.shape)
    out = np.empty_like(x3)
    _cumsum(x3, out, bool(reverse))
    return out.reshape(x.shape)


# ---------------------------------------------------------------- argsort


@numba.njit(**_JIT)
def _before(a, b, descending):
    """Whether key ``a`` sorts strictly before key ``b`` (NaN is the largest key)."""
    if descending:
        return (a > b) or (a != a and b == b)
    return (a < b) or (b != b and a == a)


@numba.njit(**_JIT)
def _merge_sort(keys, idx, tmp, descending):
    """Stable bottom-up merge sort of ``idx`` (initially 0..n-1) by ``keys[idx]``."""
    n = idx.shape[0]
    # Insertion-sort runs of 16 first (stable), then merge runs pairwise.
    run = 16
    for lo in range(0, n, run):
        hi = min(lo + run, n)
        for i in range(lo + 1, hi):
            v = idx[i]
            j = i - 1
            while j >= lo and _before(keys[v], keys[idx[j]], descending):
                idx[j + 1] = idx[j]
                j -= 1
            idx[j + 1] = v
    src, dst = idx, tmp
    swapped = False
    width = run
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if _before(keys[src[j]], keys[src[i]], descending):
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < mid:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < hi:
                dst[k] = src[j]
                j += 1
                k += 1
        src, dst = dst, src
        swapped = not swapped
        width *= 2
    if swapped:
        idx[:] = src


@numba.njit(**_JIT)
def _argsort(x, out, descending):
    pre, n, post = x.shape
    keys = np.empty(n, x.dtype)
    idx = np.empty(n, np.int32)
    tmp = np.empty(n, np.int32)
    for p in range(pre):
        for q in range(post):
            for i in range(n):
                keys[i] = x[p, i, q]
                idx[i] = i
            _merge_sort(keys, idx, tmp, descending)
            for i in range(n):
                out[p, i, q] = idx[i]


def argsort(x, *, axis, descending):
    """Stable argsort. Not in ``KERNELS``: NumPy's sort measured faster on every layout
    (docs/performance.md), so eager calls and ``jit`` use the reference unless
    ``ALWAYS`` is set."""
    if x.size < SMALL or not _supported(x) or not ALWAYS:
        return _ref("argsort", [x], {"axis": axis, "descending": descending})
    x3, _ = canonical(x, (axis,))
    out = np.empty(x3.shape, np.int32)
    _argsort(_as_numeric(x3), out, bool(descending))
    return out.reshape(x.shape)


KERNELS = {
    "reduce_sum": reduce_sum,
    "reduce_max": reduce_max,
    "reduce_min": reduce_min,
    "reduce_prod": reduce_prod,
    "argmax": argmax,
    "argmin": argmin,
    "cumsum": cumsum,
}
