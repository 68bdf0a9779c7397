"""Numba helpers called from generated segments: small matrix products as loops.

For tiny contractions (an XOR net's 4x2 @ 2x8) a BLAS call through NumPy costs more
in call overhead than the arithmetic; inside a compiled segment a plain loop costs
nanoseconds. Larger products leave the segment and go to BLAS (see ``segments.py``).
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(**_JIT)
def mm_nn(a, b):
    """a (m, k) @ b (k, n)."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), a.dtype)
    for i in range(m):
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                out[i, j] += aip * b[p, j]
    return out


@numba.njit(**_JIT)
def mm_tn(a, b):
    """a.T @ b with a (k, m), b (k, n)."""
    k, m = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), a.dtype)
    for p in range(k):
        for i in range(m):
            api = a[p, i]
            for j in range(n):
                out[i, j] += api * b[p, j]
    return out


@numba.njit(**_JIT)
def mm_nt(a, b):
    """a @ b.T with a (m, k), b (n, k)."""
    m, k = a.shape
    n = b.shape[0]
    out = np.zeros((m, n), a.dtype)
    for i in range(m):
        for j in range(n):
            acc = out[i, j]
            for p in range(k):
                acc += a[i, p] * b[j, p]
            out[i, j] = acc
    return out


@numba.njit(**_JIT)
def mm_tt(a, b):
    """a.T @ b.T with a (k, m), b (n, k)."""
    k, m = a.shape
    n = b.shape[0]
    out = np.zeros((m, n), a.dtype)
    for i in range(m):
        for j in range(n):
            acc = out[i, j]
            for p in range(k):
                acc += a[p, i] * b[j, p]
            out[i, j] = acc
    return out
