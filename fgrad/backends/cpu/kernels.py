"""Numba kernels for the primitives where NumPy has no fast equivalent.

NumPy already runs elementwise ops, reductions, gathers (``np.take``) and BLAS
contractions at C speed, so the eager CPU backend uses it for those (and ``jit`` fuses
elementwise chains into generated Numba loops instead). What NumPy does slowly gets a
kernel here:

* ``scatter`` (``np.add.at`` costs ~50 ns per element; a loop costs ~1 ns);
* ``reduce_window_max`` / ``reduce_window_sum`` over the two spatial axes of NHWC
  images (max/avg pooling), as direct loops instead of materialised window views.

Each kernel takes arrays reshaped to a fixed rank, so there are few signatures to
compile (one per dtype); ``cache=True`` keeps them on disk between processes.
"""

from __future__ import annotations

import numba
import numpy as np

from fgrad.backends import reference

_JIT = dict(cache=True, nogil=True, error_model="numpy")

# ---------------------------------------------------------------- scatter


@numba.njit(**_JIT)
def _scatter_add(out, idx, upd):
    n = out.shape[0]
    for i in range(idx.shape[0]):
        j = idx[i]
        if 0 <= j < n:
            for r in range(out.shape[1]):
                out[j, r] += upd[i, r]


@numba.njit(**_JIT)
def _scatter_set(out, idx, upd):
    n = out.shape[0]
    for i in range(idx.shape[0]):
        j = idx[i]
        if 0 <= j < n:
            for r in range(out.shape[1]):
                out[j, r] = upd[i, r]


@numba.njit(**_JIT)
def _scatter_mul(out, idx, upd):
    n = out.shape[0]
    for i in range(idx.shape[0]):
        j = idx[i]
        if 0 <= j < n:
            for r in range(out.shape[1]):
                out[j, r] *= upd[i, r]


@numba.njit(**_JIT)
def _scatter_min(out, idx, upd):
    n = out.shape[0]
    for i in range(idx.shape[0]):
        j = idx[i]
        if 0 <= j < n:
            for r in range(out.shape[1]):
                if upd[i, r] < out[j, r]:
                    out[j, r] = upd[i, r]


@numba.njit(**_JIT)
def _scatter_max(out, idx, upd):
    n = out.shape[0]
    for i in range(idx.shape[0]):
        j = idx[i]
        if 0 <= j < n:
            for r in range(out.shape[1]):
                if upd[i, r] > out[j, r]:
                    out[j, r] = upd[i, r]


_SCATTER = {
    "add": _scatter_add,
    "set": _scatter_set,
    "mul": _scatter_mul,
    "min": _scatter_min,
    "max": _scatter_max,
}
_NUMBA_DTYPES = (np.float32, np.float64, np.int32, np.int64)


def scatter(x, idx, u, *, mode):
    """``x.at[idx].<mode>(u)`` along axis 0 (out-of-bounds updates dropped)."""
    if x.dtype.type not in _NUMBA_DTYPES or x.ndim == 0:
        return reference.run(_prim("scatter"), [x, idx, u], {"mode": mode})[0]
    n = x.shape[0]
    rest = int(np.prod(x.shape[1:], dtype=np.int64))
    flat_idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    flat_idx = np.where(flat_idx < 0, flat_idx + n, flat_idx)
    out = np.array(x, copy=True).reshape(n, rest)
    upd = np.ascontiguousarray(u, dtype=x.dtype).reshape(flat_idx.shape[0], rest)
    _SCATTER[mode](out, flat_idx, upd)
    return out.reshape(x.shape)


# ---------------------------------------------------------------- 2-D pooling (NHWC)


@numba.njit(**_JIT)
def _pool_max(x, out, kh, kw, sh, sw, ph, pw):
    nb, h, w, c = x.shape
    _, oh, ow, _ = out.shape
    for n in range(nb):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    out[n, i, j, ch] = -np.inf
                for a in range(kh):
                    y = i * sh - ph + a
                    if y < 0 or y >= h:
                        continue
                    for b in range(kw):
                        xx = j * sw - pw + b
                        if xx < 0 or xx >= w:
                            continue
                        for ch in range(c):
                            v = x[n, y, xx, ch]
                            if v > out[n, i, j, ch]:
                                out[n, i, j, ch] = v


@numba.njit(**_JIT)
def _pool_sum(x, out, kh, kw, sh, sw, ph, pw):
    nb, h, w, c = x.shape
    _, oh, ow, _ = out.shape
    for n in range(nb):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    out[n, i, j, ch] = 0
                for a in range(kh):
                    y = i * sh - ph + a
                    if y < 0 or y >= h:
                        continue
                    for b in range(kw):
                        xx = j * sw - pw + b
                        if xx < 0 or xx >= w:
                            continue
                        for ch in range(c):
                            out[n, i, j, ch] += x[n, y, xx, ch]


def _pool(kernel, name):
    def run(x, *, window_dimensions, window_strides, padding):
        wd, ws, pd = window_dimensions, window_strides, padding
        spatial_only = (
            x.ndim == 4
            and wd[0] == wd[3] == 1
            and ws[0] == ws[3] == 1
            and tuple(pd[0]) == tuple(pd[3]) == (0, 0)
            and min(pd[1][0], pd[1][1], pd[2][0], pd[2][1]) >= 0
            and x.dtype.type in (np.float32, np.float64)
        )
        params = dict(window_dimensions=wd, window_strides=ws, padding=pd)
        if not spatial_only:
            return reference.run(_prim(name), [x], params)[0]
        n, h, w, c = x.shape
        oh = (h + pd[1][0] + pd[1][1] - wd[1]) // ws[1] + 1
        ow = (w + pd[2][0] + pd[2][1] - wd[2]) // ws[2] + 1
        out = np.empty((n, max(oh, 0), max(ow, 0), c), x.dtype)
        kernel(np.ascontiguousarray(x), out, wd[1], wd[2], ws[1], ws[2], pd[1][0], pd[2][0])
        return out

    return run


# ---------------------------------------------------------------- convolution (NHWC/HWIO)


def conv_general_dilated(
    lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count
):
    """2-D convolution as one BLAS matmul per kernel tap ("shift and multiply").

    ``out = sum over taps (kh, kw) of x[:, kh*dh + s*i, kw*dw + s*j, :] @ w[kh, kw]``:
    each tap is a (N*OH*OW, C) @ (C, O) product, so the work goes to BLAS without
    materialising the whole im2col matrix (the reference kernel's sliding-window
    tensordot copies KH*KW times the input at once). Other cases (lhs dilation,
    feature groups, negative padding, other ranks or dtypes) use the reference kernel.
    """
    params = dict(
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        feature_group_count=feature_group_count,
    )
    simple = (
        lhs.ndim == 4
        and feature_group_count == 1
        and tuple(lhs_dilation) == (1, 1)
        and min(p for pair in padding for p in pair) >= 0
        and lhs.dtype == rhs.dtype
        and lhs.dtype.type in (np.float32, np.float64)
        and rhs.shape[0] * rhs.shape[1] <= 1024
    )
    if not simple:
        return reference.run(_prim("conv_general_dilated"), [lhs, rhs], params)[0]
    (ph0, ph1), (pw0, pw1) = padding
    x = np.pad(lhs, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0))) if any((ph0, ph1, pw0, pw1)) else lhs
    n, h, w, c = x.shape
    kh, kw, _, o = rhs.shape
    sh, sw = window_strides
    dh, dw = rhs_dilation
    oh = (h - ((kh - 1) * dh + 1)) // sh + 1
    ow = (w - ((kw - 1) * dw + 1)) // sw + 1
    out = np.zeros((n * max(oh, 0) * max(ow, 0), o), lhs.dtype)
    if out.size == 0 or c == 0:
        return out.reshape(n, max(oh, 0), max(ow, 0), o)
    if oh * ow < kh * kw:
        # Few output positions, a large kernel (a weight gradient, whose "kernel" is
        # the cotangent): one matmul per output position over the whole window.
        kernel = rhs.reshape(kh * kw * c, o)
        out = out.reshape(n, oh, ow, o)
        for i in range(oh):
            for j in range(ow):
                window = x[
                    :,
                    i * sh : i * sh + (kh - 1) * dh + 1 : dh,
                    j * sw : j * sw + (kw - 1) * dw + 1 : dw,
                    :,
                ]
                out[:, i, j, :] = np.ascontiguousarray(window).reshape(n, -1) @ kernel
        return out
    for a in range(kh):
        for b in range(kw):
            tap = x[
                :,
                a * dh : a * dh + sh * (oh - 1) + 1 : sh,
                b * dw : b * dw + sw * (ow - 1) + 1 : sw,
                :,
            ]
            out += np.ascontiguousarray(tap).reshape(-1, c) @ rhs[a, b]
    return out.reshape(n, oh, ow, o)


def _prim(name):
    from fgrad.core import primitives

    return primitives[name]


KERNELS = {
    "conv_general_dilated": conv_general_dilated,
    "scatter": scatter,
    "reduce_window_max": _pool(_pool_max, "reduce_window_max"),
    "reduce_window_sum": _pool(_pool_sum, "reduce_window_sum"),
}
