"""Numba kernels for the primitives where NumPy has no fast equivalent.

NumPy already runs elementwise ops, reductions, gathers (``np.take``) and BLAS
contractions at C speed, so the eager CPU backend uses it for those (and ``jit`` fuses
elementwise chains into generated Numba loops instead). What NumPy does slowly gets a
kernel here:

* ``scatter`` (``np.add.at`` costs ~50 ns per element; a loop costs ~1 ns);
* ``reduce_window_max`` / ``reduce_window_sum`` over the two spatial axes of NHWC
  images (max/avg pooling), as direct loops instead of materialised window views, and
  the max-pooling VJP ``select_and_scatter_add`` as one pass over the windows.

Convolutions go to BLAS (im2col or tap-by-tap matmuls, per shape class).

Each kernel takes arrays reshaped to a fixed rank, so there are few signatures to
compile (one per dtype); ``cache=True`` keeps them on disk between processes.
"""

from __future__ import annotations

import numba
import numpy as np

from fgrad.backends import reference
from fgrad.backends.cpu import workspace

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
                            # NaN wins and then stays, as in the reference's np.max.
                            if v > out[n, i, j, ch] or v != v:
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
        params = dict(window_dimensions=wd, window_strides=ws, padding=pd)
        if not _spatial_only(x, wd, ws, pd):
            return reference.run(_prim(name), [x], params)[0]
        n, h, w, c = x.shape
        oh = (h + pd[1][0] + pd[1][1] - wd[1]) // ws[1] + 1
        ow = (w + pd[2][0] + pd[2][1] - wd[2]) // ws[2] + 1
        out = workspace.empty((n, max(oh, 0), max(ow, 0), c), x.dtype)
        kernel(np.ascontiguousarray(x), out, wd[1], wd[2], ws[1], ws[2], pd[1][0], pd[2][0])
        return out

    return run


@numba.njit(**_JIT)
def _pool_max_vjp(src, x, dx, kh, kw, sh, sw, ph, pw):
    """dx[n, p, ch] += src[n, i, j, ch] at the first maximum p of window (i, j).

    Window positions run in row-major order with padding counted as -inf (so a
    window whose first element is padding and holds nothing larger sends its
    gradient nowhere), and a NaN is the maximum once seen, as ``np.argmax``.
    """
    nb, h, w, c = x.shape
    _, oh, ow, _ = src.shape
    flat = dx.reshape(nb, h * w, c)
    best = np.empty(c, x.dtype)
    pos = np.empty(c, np.int64)
    for n in range(nb):
        for i in range(oh):
            for j in range(ow):
                first = True
                for a in range(kh):
                    y = i * sh - ph + a
                    for b in range(kw):
                        xx = j * sw - pw + b
                        inside = y >= 0 and y < h and xx >= 0 and xx < w
                        if first:
                            first = False
                            if inside:
                                for ch in range(c):
                                    best[ch] = x[n, y, xx, ch]
                                    pos[ch] = y * w + xx
                            else:
                                for ch in range(c):
                                    best[ch] = -np.inf
                                    pos[ch] = -1
                        elif inside:
                            p = y * w + xx
                            for ch in range(c):
                                v = x[n, y, xx, ch]
                                bv = best[ch]
                                if v > bv or (v != v and bv == bv):
                                    best[ch] = v
                                    pos[ch] = p
                for ch in range(c):
                    p = pos[ch]
                    if p >= 0:
                        flat[n, p, ch] += src[n, i, j, ch]


def _spatial_only(x, wd, ws, pd):
    """A 4-D float NHWC window over the two spatial axes, padding non-negative."""
    return (
        x.ndim == 4
        and wd[0] == wd[3] == 1
        and ws[0] == ws[3] == 1
        and tuple(pd[0]) == tuple(pd[3]) == (0, 0)
        and min(pd[1][0], pd[1][1], pd[2][0], pd[2][1]) >= 0
        and x.dtype.type in (np.float32, np.float64)
    )


def select_and_scatter_add(source, operand, *, window_dimensions, window_strides, padding):
    """Max-pool VJP in one pass (the reference impl for other ranks and dtypes)."""
    wd, ws, pd = window_dimensions, window_strides, padding
    if not _spatial_only(operand, wd, ws, pd) or source.dtype != operand.dtype:
        params = dict(window_dimensions=wd, window_strides=ws, padding=pd)
        return reference.run(_prim("select_and_scatter_add"), [source, operand], params)[0]
    dx = workspace.zeros(operand.shape, operand.dtype)
    if source.size:
        _pool_max_vjp(
            np.ascontiguousarray(source),
            np.ascontiguousarray(operand),
            dx,
            wd[1],
            wd[2],
            ws[1],
            ws[2],
            pd[1][0],
            pd[2][0],
        )
    return dx


# ---------------------------------------------------------------- convolution (NHWC/HWIO)


#: Input channels up to which the convolution is one im2col matmul: its patch matrix is
#: only ``KH*KW*C`` wide, while tap-by-tap products of inner size C leave BLAS idle
#: (see docs/performance.md, "Convolution kernels (per shape class)").
IM2COL_MAX_CHANNELS = 4


def _conv_im2col(x, rhs, oh, ow, strides, dilation):
    """One (N*OH*OW, KH*KW*C) @ (KH*KW*C, O) matmul over the gathered patches."""
    n, _, _, c = x.shape
    kh, kw, _, o = rhs.shape
    (sh, sw), (dh, dw) = strides, dilation
    cols = workspace.empty((n, oh, ow, kh, kw, c), x.dtype)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, :, a, b, :] = x[
                :,
                a * dh : a * dh + sh * (oh - 1) + 1 : sh,
                b * dw : b * dw + sw * (ow - 1) + 1 : sw,
            ]
    out = workspace.empty((n * oh * ow, o), x.dtype)
    np.matmul(cols.reshape(n * oh * ow, kh * kw * c), rhs.reshape(kh * kw * c, o), out=out)
    return out.reshape(n, oh, ow, o)


def _conv_shifted(x, rhs, oh, ow, dilation):
    """Stride 1: every tap is a matmul over a *shifted* slice of the flat padded input.

    The output is computed on the padded input's whole (H, W) grid: row ``p`` of the
    flat input is pixel ``p``, and tap (a, b) reads row ``p + a*dh*W + b*dw`` for output
    pixel p, a contiguous slice, so no tap is copied. Positions past the valid output
    (the right/bottom margins) hold garbage and are cropped at the end.
    """
    n, h, w, c = x.shape
    kh, kw, _, o = rhs.shape
    dh, dw = dilation
    flat = x.reshape(n * h * w, c)
    rows = n * h * w - ((kh - 1) * dh * w + (kw - 1) * dw)
    grid = workspace.empty((n * h * w, o), x.dtype)
    acc = grid[:rows]
    tmp = workspace.empty(acc.shape, x.dtype)
    for a in range(kh):
        for b in range(kw):
            shift = a * dh * w + b * dw
            tap = flat[shift : shift + rows]
            # Into a scratch buffer, then added: SciPy's gemm could accumulate in place
            # (beta=1), but it links a second OpenBLAS whose thread pool fights NumPy's
            # for the cores (measured: cnn step 20 ms without it, 31-66 ms with it).
            if a == 0 and b == 0:
                np.matmul(tap, rhs[a, b], out=acc)
            else:
                np.matmul(tap, rhs[a, b], out=tmp)
                acc += tmp
    out = workspace.empty((n, oh, ow, o), x.dtype)
    out[...] = grid.reshape(n, h, w, o)[:, :oh, :ow]
    return out


def _conv_weight_grad_im2col(xb, rhs, oh, ow, strides, dilation):
    """The weight-gradient orientation (batch as channels, a spatially large kernel)
    for few real channels: one (OH*OW*C, N*KH*KW) @ (N*KH*KW, O) matmul.

    ``xb`` is the padded input batch-first, (N, H, W, C), and ``rhs`` (KH, KW, N, O).
    """
    ct = np.ascontiguousarray(rhs.transpose(2, 0, 1, 3))  # (N, KH, KW, O)
    n, _, _, c = xb.shape
    _, kh, kw, o = ct.shape
    (sh, sw), (dh, dw) = strides, dilation
    cols = workspace.empty((n, kh, kw, oh, ow, c), xb.dtype)
    for i in range(oh):
        for j in range(ow):
            cols[:, :, :, i, j, :] = xb[
                :,
                i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                j * sw : j * sw + dw * (kw - 1) + 1 : dw,
            ]
    out = cols.reshape(n * kh * kw, oh * ow * c).T @ ct.reshape(n * kh * kw, o)
    return np.ascontiguousarray(out.reshape(oh, ow, c, o).transpose(2, 0, 1, 3))


def conv_general_dilated(
    lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count
):
    """2-D convolution through BLAS, by whichever form measured fastest for its shape
    class (docs/performance.md, "Convolution kernels (per shape class)"):

    * few input channels (C <= ``IM2COL_MAX_CHANNELS``): im2col, one matmul of inner
      size KH*KW*C (tap-by-tap products would have inner size C);
    * stride 1: one matmul per tap over shifted slices of the flat padded input
      (``_conv_shifted``), accumulated in place;
    * other strides: one matmul per tap over a copied strided tap ("shift and
      multiply");
    * the weight-gradient orientation (fewer output positions than kernel taps: the
      "kernel" is a cotangent; the batch is the contracted channel axis): im2col over
      the output positions for few channels (``lhs`` batch <= ``IM2COL_MAX_CHANNELS``),
      else one matmul per output position over its whole window.

    Other cases (lhs dilation, feature groups, negative padding, other ranks or
    dtypes) use the reference kernel.
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
    kh, kw, _, o = rhs.shape
    sh, sw = window_strides
    dh, dw = rhs_dilation
    n, h, w, c = lhs.shape
    h, w = h + ph0 + ph1, w + pw0 + pw1
    oh = max((h - ((kh - 1) * dh + 1)) // sh + 1, 0)
    ow = max((w - ((kw - 1) * dw + 1)) // sw + 1, 0)
    if n * oh * ow * o == 0 or c == 0:
        return np.zeros((n, oh, ow, o), lhs.dtype)
    weight_grad = oh * ow < kh * kw
    if weight_grad and n <= IM2COL_MAX_CHANNELS:
        # lhs is (C, H, W, N), usually a transposed view of an NHWC array: back to
        # batch-first (free for such a view), then padded.
        xb = np.ascontiguousarray(lhs.transpose(3, 1, 2, 0))
        if any((ph0, ph1, pw0, pw1)):
            xb = workspace.padded(xb, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
        return _conv_weight_grad_im2col(xb, rhs, oh, ow, window_strides, rhs_dilation)
    pads = ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0))
    x = workspace.padded(lhs, pads) if any((ph0, ph1, pw0, pw1)) else lhs
    if weight_grad:
        # Few output positions, a large kernel: one matmul per output position over
        # the whole window.
        kernel = rhs.reshape(kh * kw * c, o)
        out = workspace.empty((n, oh, ow, o), lhs.dtype)
        patch = None
        for i in range(oh):
            for j in range(ow):
                window = x[
                    :,
                    i * sh : i * sh + (kh - 1) * dh + 1 : dh,
                    j * sw : j * sw + (kw - 1) * dw + 1 : dw,
                    :,
                ]
                if patch is None:
                    patch = workspace.empty(window.shape, lhs.dtype)
                patch[...] = window
                out[:, i, j, :] = patch.reshape(n, -1) @ kernel
        return out
    rhs = np.ascontiguousarray(rhs)
    if c <= IM2COL_MAX_CHANNELS:
        return _conv_im2col(x, rhs, oh, ow, window_strides, rhs_dilation)
    if sh == sw == 1:
        return _conv_shifted(np.ascontiguousarray(x), rhs, oh, ow, rhs_dilation)
    out = np.zeros((n * oh * ow, o), lhs.dtype)
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
    "select_and_scatter_add": select_and_scatter_add,
}

# Reductions, data movement and the PRNG's bit primitives live in their own modules.
from fgrad.backends.cpu import bits_kernels, index_kernels, reduce_kernels  # noqa: E402

for _module in (reduce_kernels, index_kernels, bits_kernels):
    KERNELS.update(_module.KERNELS)
