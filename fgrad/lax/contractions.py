"""dot_general: tensor contraction with batch dimensions (matmul, einsum's workhorse)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fgrad.core import Primitive, ShapedArray
from fgrad.lax.batch_util import moveaxis, phys_axis
from fgrad.lax.shapes import transpose
from fgrad.lax.utils import check_same_dtypes, promote_scalars

dot_general_p = Primitive("dot_general")


def _free_dims(nd: int, contract: Sequence[int], batch: Sequence[int]) -> list[int]:
    return [i for i in range(nd) if i not in contract and i not in batch]


@dot_general_p.def_shape
def _dot_general_shape(x: ShapedArray, y: ShapedArray, *, contract, batch) -> ShapedArray:
    dtype = check_same_dtypes("", x, y)
    (lc, rc), (lb, rb) = contract, batch
    if len(lc) != len(rc) or len(lb) != len(rb):
        raise TypeError(f"contract {contract} / batch {batch} dimension lists differ in length")
    for dims, nd, side in ((lc + lb, x.ndim, "lhs"), (rc + rb, y.ndim, "rhs")):
        if len(set(dims)) != len(dims) or any(not 0 <= d < nd for d in dims):
            raise TypeError(f"invalid {side} dimensions {dims} for rank {nd}")
    for a, b in zip(lc, rc):
        if x.shape[a] != y.shape[b]:
            raise TypeError(
                f"contracting dimensions differ: lhs {x.shape} axis {a} vs rhs {y.shape} axis {b}"
            )
    for a, b in zip(lb, rb):
        if x.shape[a] != y.shape[b]:
            raise TypeError(
                f"batch dimensions differ: lhs {x.shape} axis {a} vs rhs {y.shape} axis {b}"
            )
    shape = (
        [x.shape[a] for a in lb]
        + [x.shape[a] for a in _free_dims(x.ndim, lc, lb)]
        + [y.shape[b] for b in _free_dims(y.ndim, rc, rb)]
    )
    return ShapedArray(shape, dtype)


_MATMUL_2D = {  # (lhs contract, rhs contract) of 2-D operands -> transposes
    ((1,), (0,)): (False, False),
    ((0,), (0,)): (True, False),
    ((1,), (1,)): (False, True),
    ((0,), (1,)): (True, True),
}


@dot_general_p.def_impl
def _dot_general_impl(x, y, *, contract, batch):
    (lc, rc), (lb, rb) = contract, batch
    if not lb and x.ndim == 2 and y.ndim == 2:
        # The common matrix product: BLAS on transposed views, no reshapes (~3 us less
        # per eager call on small operands).
        flags = _MATMUL_2D.get((tuple(lc), tuple(rc)))
        if flags is not None:
            return np.matmul(x.T if flags[0] else x, y.T if flags[1] else y)
    lf, rf = _free_dims(x.ndim, lc, lb), _free_dims(y.ndim, rc, rb)
    # As one batched matmul: (B, M, K) @ (B, K, N).
    bshape = [x.shape[a] for a in lb]
    m = math.prod([x.shape[a] for a in lf])
    k = math.prod([x.shape[a] for a in lc])
    n = math.prod([y.shape[b] for b in rf])
    b = math.prod(bshape)
    xm = np.transpose(x, list(lb) + lf + list(lc)).reshape(b, m, k)
    ym = np.transpose(y, list(rb) + list(rc) + rf).reshape(b, k, n)
    out = np.matmul(xm, ym)
    return out.reshape(bshape + [x.shape[a] for a in lf] + [y.shape[c] for c in rf])


def _transpose_operand(ct, other, operand_nd, contract, batch, ct_other_dims, other_free):
    """Cotangent of one operand: contract ct with the other operand, then permute.

    Both operand orders give the same numbers; the one whose result already has the
    operand's axis order is used, so the usual matmul gradients (x.T @ ct for a
    weight) need no transpose afterwards, and hence no copy in compiled programs.
    """
    c_mine, c_other = contract
    b_mine, b_other = batch
    nb = len(b_mine)
    mine_free = _free_dims(operand_nd, c_mine, b_mine)
    other_sorted = sorted(c_other)
    batch_dims = (tuple(range(nb)), tuple(b_other))
    # Order A, dot(ct, other): batch, my free dims, then my contracted dims in the
    # ascending order of the other's matching dims.
    pos_a = {a: i for i, a in enumerate(b_mine)}
    pos_a.update({a: nb + j for j, a in enumerate(mine_free)})
    for a_mine, a_other in zip(c_mine, c_other):
        pos_a[a_mine] = nb + len(mine_free) + other_sorted.index(a_other)
    perm_a = [pos_a[a] for a in range(operand_nd)]
    if perm_a == list(range(operand_nd)):
        return dot_general(ct, other, ((tuple(ct_other_dims), tuple(other_free)), batch_dims))
    # Order B, dot(other, ct): batch, my contracted dims, then my free dims.
    pos_b = {a: i for i, a in enumerate(b_mine)}
    for a_mine, a_other in zip(c_mine, c_other):
        pos_b[a_mine] = nb + other_sorted.index(a_other)
    pos_b.update({a: nb + len(c_mine) + j for j, a in enumerate(mine_free)})
    perm_b = [pos_b[a] for a in range(operand_nd)]
    if perm_b == list(range(operand_nd)):
        dims = ((tuple(other_free), tuple(ct_other_dims)), (tuple(b_other), tuple(range(nb))))
        return dot_general(other, ct, dims)
    out = dot_general(ct, other, ((tuple(ct_other_dims), tuple(other_free)), batch_dims))
    return transpose(out, perm_a)


@dot_general_p.def_vjp
def _dot_general_vjp(ct, x, y, *, out, contract, batch):
    (lc, rc), (lb, rb) = contract, batch
    nx, ny = len(x.shape), len(y.shape)
    lf, rf = _free_dims(nx, lc, lb), _free_dims(ny, rc, rb)
    nb = len(lb)
    ct_rf = range(nb + len(lf), nb + len(lf) + len(rf))
    ct_lf = range(nb, nb + len(lf))
    ct_x = _transpose_operand(ct, y, nx, (lc, rc), (lb, rb), ct_rf, rf)
    ct_y = _transpose_operand(ct, x, ny, (rc, lc), (rb, lb), ct_lf, lf)
    return ct_x, ct_y


@dot_general_p.def_jvp
def _dot_general_jvp(ts, x, y, *, out, contract, batch):
    dims = (contract, batch)
    terms = []
    if ts[0] is not None:
        terms.append(dot_general(ts[0], y, dims))
    if ts[1] is not None:
        terms.append(dot_general(x, ts[1], dims))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


@dot_general_p.def_batch
def _dot_general_batch(args, dims, *, contract, batch):
    (x, y), (xd, yd) = args, dims
    (lc, rc), (lb, rb) = contract, batch
    if xd is not None and yd is not None:
        # Both batched: the vmap axis becomes one more (leading) batch dimension.
        x, y = moveaxis(x, xd, 0), moveaxis(y, yd, 0)
        contract = (_around(lc, 0), _around(rc, 0))
        batch = ((0, *_around(lb, 0)), (0, *_around(rb, 0)))
        return dot_general_p.bind(x, y, contract=contract, batch=batch), 0
    # One side batched: its vmap axis is one more free dimension of that side. The
    # output holds the batch dims, then lhs's free dims, then rhs's, each in order.
    lc, lb, rc, rb = _around(lc, xd), _around(lb, xd), _around(rc, yd), _around(rb, yd)
    out = dot_general_p.bind(x, y, contract=(lc, rc), batch=(lb, rb))
    lfree = _free_dims(len(x.shape), lc, lb)
    if xd is not None:
        return out, len(lb) + lfree.index(xd)
    rfree = _free_dims(len(y.shape), rc, rb)
    return out, len(lb) + len(lfree) + rfree.index(yd)


def _around(axes: Sequence[int], d: int | None) -> tuple[int, ...]:
    """Logical axes as positions in an operand whose batch axis is ``d``."""
    return tuple(phys_axis(a, d) for a in axes)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """General contraction, as ``jax.lax.dot_general``.

    Args:
        lhs, rhs: arrays of the same dtype.
        dimension_numbers: ``((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))``.
        precision: ignored (kept for JAX compatibility).
        preferred_element_type: optional output dtype.

    Returns:
        An array with the batch dims, then lhs's free dims, then rhs's free dims.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import lax
        >>> a, b = fnp.ones((2, 3)), fnp.ones((3, 4))
        >>> lax.dot_general(a, b, (((1,), (0,)), ((), ()))).shape
        (2, 4)
    """
    del precision
    lhs, rhs = promote_scalars(lhs, rhs)
    (lc, rc), (lb, rb) = dimension_numbers
    nl, nr = len(lhs.shape), len(rhs.shape)
    contract = (tuple(int(a) % nl for a in lc), tuple(int(b) % nr for b in rc))
    batch = (tuple(int(a) % nl for a in lb), tuple(int(b) % nr for b in rb))
    out = dot_general_p.bind(lhs, rhs, contract=contract, batch=batch)
    if preferred_element_type is not None and np.dtype(preferred_element_type) != out.dtype:
        from fgrad.lax.elementwise import convert_element_type

        out = convert_element_type(out, preferred_element_type)
    return out


def dot(lhs, rhs, precision=None, preferred_element_type=None):
    """Vector/matrix product contracting lhs's last axis with rhs's first (``lax.dot``)."""
    lhs, rhs = promote_scalars(lhs, rhs)
    dims = (((len(lhs.shape) - 1,), (0,)), ((), ()))
    return dot_general(lhs, rhs, dims, precision, preferred_element_type)
