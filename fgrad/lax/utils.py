"""Helpers shared by the primitive families: operand conversion and common shape rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad.core import (
    Array,
    ShapedArray,
    Tracer,
    asarray_operand,
    is_float_dtype,
)


def operand_dtype(x: Any) -> np.dtype | None:
    """Dtype of an operand, or None for a weakly typed Python scalar."""
    if isinstance(x, bool | int | float) and not isinstance(x, np.generic):
        return None
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def promote_scalars(*args: Any) -> list[Any]:
    """Give Python scalars the dtype of the first typed operand (lax's weak scalars)."""
    for a in args:
        if type(a) is not Array and not isinstance(a, Tracer):
            break
    else:
        return list(args)
    dtype = next((d for d in map(operand_dtype, args) if d is not None), None)
    return [asarray_operand(a, dtype) for a in args]


def check_same_dtypes(name: str, *avals: ShapedArray) -> np.dtype:
    dtypes = {a.dtype for a in avals}
    if len(dtypes) > 1:
        names = ", ".join(a.dtype.name for a in avals)
        raise TypeError(f"requires arguments of the same dtype, got {names}")
    return avals[0].dtype


def elementwise_shape(*avals: ShapedArray) -> tuple[int, ...]:
    """All non-scalar operands share one shape; rank-0 operands broadcast."""
    shapes = {a.shape for a in avals if a.shape != ()}
    if len(shapes) > 1:
        shown = ", ".join(str(a.shape) for a in avals)
        raise TypeError(f"incompatible shapes {shown} (elementwise operands must match)")
    return shapes.pop() if shapes else ()


def require_float(avals: Sequence[ShapedArray]) -> None:
    for a in avals:
        if not is_float_dtype(a.dtype):
            raise TypeError(f"requires floating-point operands, got {a.dtype.name}")


def canonical_axes(axes: Any, ndim: int) -> tuple[int, ...]:
    """Normalise an int/sequence of axes (negative allowed) to a sorted tuple."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int | np.integer):
        axes = (int(axes),)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < max(ndim, 1) and not (ndim == 0 and a in (0, -1)):
            raise ValueError(f"axis {a} is out of bounds for an array of rank {ndim}")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {tuple(axes)}")
    return tuple(sorted(out))
