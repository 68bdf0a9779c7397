"""Helpers for batching rules (``vmap``): where the batch axis is, and moving it.

A batching rule sees each operand as a "physical" array that may carry one extra batch
axis: ``dims[i]`` is that axis (an int) or None when operand i is not batched. The
operand's "logical" shape, the one the primitive's own rules know about, is the
physical shape with the batch axis removed. Rules either rewrite their params to step
around the batch axis (reductions, slices, dot_general) or move it to the front
(``to_front``) and prepend one axis to the params. Nothing here loops over the batch.

The structural ops are imported on call, because ``fgrad.lax.shapes`` itself uses
these helpers for its own rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fgrad.core import Primitive


def batch_size(args: Sequence[Any], dims: Sequence[int | None]) -> int:
    """The size of the batch axis (taken from the first batched operand)."""
    for x, d in zip(args, dims, strict=True):
        if d is not None:
            return int(x.shape[d])
    raise ValueError("batching rule called with no batched operand")


def logical_shape(x: Any, d: int | None) -> tuple[int, ...]:
    """The shape of one batch element of ``x`` (``x``'s shape without axis ``d``)."""
    shape = tuple(x.shape)
    return shape if d is None else shape[:d] + shape[d + 1 :]


def phys_axis(axis: int, d: int | None) -> int:
    """Where logical axis ``axis`` sits in an array whose batch axis is ``d``."""
    return axis if d is None or axis < d else axis + 1


def moveaxis(x: Any, src: int, dst: int) -> Any:
    """Move axis ``src`` of ``x`` to position ``dst`` (one transpose, or nothing)."""
    from fgrad.lax.shapes import transpose

    if src == dst:
        return x
    perm = [i for i in range(len(x.shape)) if i != src]
    perm.insert(dst, src)
    return transpose(x, tuple(perm))


def bdim_at(x: Any, d: int | None, size: int, where: int) -> Any:
    """``x`` with its batch axis at ``where``; an unbatched ``x`` is broadcast to one."""
    from fgrad.lax.shapes import broadcast_in_dim

    if d is not None:
        return moveaxis(x, d, where)
    shape = list(x.shape)
    shape.insert(where, size)
    dims = tuple(i if i < where else i + 1 for i in range(len(x.shape)))
    return broadcast_in_dim(x, tuple(shape), dims)


def to_front(x: Any, d: int | None, size: int) -> Any:
    """``x`` with its batch axis first (broadcast along a new one if unbatched)."""
    return bdim_at(x, d, size, 0)


def elementwise_rule(prim: Primitive, scalar_ok: Sequence[int] | None = None) -> Callable:
    """Batching rule of an elementwise primitive whose rank-0 operands broadcast.

    Args:
        prim: the primitive (bound again on the batched operands).
        scalar_ok: operand positions that may stay rank 0 while the others are not
            (default: all of them); e.g. only the selector of ``select_n``.

    When every batched operand already has the full shape and the same batch axis,
    and every unbatched one is a rank-0 operand that may broadcast, the primitive is
    applied as is. Otherwise batch axes go to the front and the other operands are
    broadcast to ``(batch, *shape)``.
    """
    ok = None if scalar_ok is None else frozenset(scalar_ok)

    def rule(args, dims, **params):
        size = batch_size(args, dims)
        logical = [logical_shape(x, d) for x, d in zip(args, dims, strict=True)]
        shape = next((s for s in logical if s != ()), ())

        def may_stay_scalar(i, x):
            return (ok is None or i in ok) and len(x.shape) == 0

        bdims = {d for d in dims if d is not None}
        if len(bdims) == 1 and all(
            (d is not None and logical[i] == shape) or (d is None and may_stay_scalar(i, x))
            for i, (x, d) in enumerate(zip(args, dims, strict=True))
        ):
            out_dim = bdims.pop()
            new = list(args)
        else:
            from fgrad.lax.shapes import broadcast_in_dim

            out_dim, new = 0, []
            for i, (x, d) in enumerate(zip(args, dims, strict=True)):
                if d is None and may_stay_scalar(i, x):
                    new.append(x)
                    continue
                x = to_front(x, d, size)
                if logical[i] != shape:  # a rank-0 element meeting full-shape ones
                    x = broadcast_in_dim(x, (size, *shape), (0,))
                new.append(x)
        out = prim.bind(*new, **params)
        if prim.multiple_results:
            return out, [out_dim] * len(out)
        return out, out_dim

    return rule
