"""Vectorising map: ``vmap`` and the batch trace behind it.

``vmap(f)`` runs ``f`` once, on ``BatchTracer`` values. A batch tracer holds an array
one axis larger than what ``f`` sees (``val``) and the position of that extra axis
(``batch_dim``, or None for a value that does not vary along the batch). Every
primitive ``f`` binds goes to ``BatchTrace.process_primitive``, which calls the
primitive's batching rule (``Primitive.def_batch``; declared next to the primitive in
``fgrad.lax``). A rule receives the underlying values and their batch axes and
returns the batched output and its batch axis, with whole-array operations only: the
batch is never looped over in Python, so ``make_jaxpr(vmap(f))`` has the same
equations for every batch size.

Because the underlying values may themselves be tracers of an outer transformation,
``vmap`` composes with everything: ``vmap(vmap(f))``, ``vmap(grad(f))`` (per-example
gradients), ``jit(vmap(f))`` and ``vmap(jit(f))`` (a jitted function called with
tracers is inlined), and ``jacfwd``/``jacrev``, which are vmaps of ``jvp``/``vjp``
over a basis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from fgrad import tree as tree_util
from fgrad.core import (
    Array,
    ShapedArray,
    Trace,
    Tracer,
    asarray_operand,
    get_aval,
    new_main,
    user_frame,
)
from fgrad.lax.batch_util import bdim_at, moveaxis

__all__ = ["BatchTrace", "BatchTracer", "vmap"]


# ---------------------------------------------------------------- the batch trace


class BatchTracer(Tracer):
    """A value inside ``vmap``: ``val`` with a batch axis at ``batch_dim`` (or none)."""

    __slots__ = ("val", "batch_dim")

    def __init__(self, trace: BatchTrace, val: Any, batch_dim: int | None, source_info="vmap"):
        self._trace = trace
        self.val = val
        self.batch_dim = batch_dim
        self.source_info = source_info

    @property
    def aval(self) -> ShapedArray:
        aval = get_aval(self.val)
        d = self.batch_dim
        if d is None:
            return aval
        return ShapedArray(aval.shape[:d] + aval.shape[d + 1 :], aval.dtype)

    def concrete_value(self):
        # A batched value has no single concrete value for Python to branch on.
        if self.batch_dim is not None:
            return None
        v = self.val
        return v.concrete_value() if isinstance(v, Tracer) else v


class BatchTrace(Trace):
    """Applies batching rules; ``main.payload`` is the batch size."""

    def pure(self, val: Any) -> BatchTracer:
        if not isinstance(val, Array | Tracer):
            val = asarray_operand(val)
        return BatchTracer(self, val, None, "constant")

    def lift(self, val: Tracer) -> BatchTracer:
        return BatchTracer(self, val, None, val.source_info)

    def process_primitive(self, prim, tracers, params):
        vals = [t.val for t in tracers]
        dims = [t.batch_dim for t in tracers]
        src = user_frame()
        if all(d is None for d in dims):
            out = prim.bind(*vals, **params)
            outs = out if prim.multiple_results else [out]
            return [BatchTracer(self, o, None, src) for o in outs]
        if prim.batch_rule is None:
            raise NotImplementedError(
                f"vmap: primitive {prim.name} has no batching rule (at {src}); declare one "
                f"with {prim.name}_p.def_batch(rule) next to its other rules"
            )
        try:
            out, out_dims = prim.batch_rule(vals, dims, **params)
        except Exception as e:
            e.add_note(f"in the batching rule of {prim.name}, at {src}")
            raise
        if not prim.multiple_results:
            out, out_dims = [out], [out_dims]
        return [BatchTracer(self, o, d, src) for o, d in zip(out, out_dims, strict=True)]


# ---------------------------------------------------------------- vmap


def _to_operand(x: Any) -> Any:
    if isinstance(x, Array | Tracer):
        return x
    from fgrad.lax.utils import asarray_operand

    try:
        return asarray_operand(x)
    except Exception:
        raise TypeError(
            f"vmap: argument of type {type(x).__name__} is not a valid array leaf: {x!r}"
        ) from None


def _is_axis_leaf(x: Any) -> bool:
    return x is None


def _broadcast_prefix(spec: Any, tree: Any, what: str) -> list[Any]:
    """One axis per leaf of ``tree``, from ``spec`` (a pytree prefix of it)."""
    spec_def = tree_util.tree_structure(spec, is_leaf=_is_axis_leaf)
    axes = tree_util.tree_leaves(spec, is_leaf=_is_axis_leaf)
    try:
        subtrees = spec_def.flatten_up_to(tree)
    except ValueError as e:
        raise ValueError(
            f"vmap {what} specification must be a tree prefix of the corresponding value, "
            f"got {what}={spec!r}: {e}"
        ) from None
    flat: list[Any] = []
    for axis, sub in zip(axes, subtrees, strict=True):
        if axis is not None and not isinstance(axis, int | np.integer):
            raise TypeError(f"vmap {what} entries must be ints or None, got {axis!r}")
        n = len(tree_util.tree_leaves(sub))
        flat.extend([None if axis is None else int(axis)] * n)
    return flat


def _arg_names(args: tuple, kwargs: dict) -> list[str]:
    """Readable names of every leaf of ``(args, kwargs)``, e.g. ``args[1]['w']``."""
    paths, _ = tree_util.tree_flatten_with_path((args, kwargs))
    names = []
    for path, _leaf in paths:
        if path[0].idx == 0:
            names.append(f"args[{path[1].idx}]{tree_util.keystr(path[2:])}")
        else:
            names.append(f"kwargs[{path[1].key!r}]{tree_util.keystr(path[2:])}")
    return names


def _normalize_axis(axis: int, ndim: int, name: str, shape) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"vmap: in_axes={axis} for {name} of shape {tuple(shape)} is out of range: an "
            f"argument mapped over an axis needs at least rank {axis + 1 if axis >= 0 else -axis}"
            f" (at {user_frame()})"
        )
    return axis % ndim


def vmap(
    fun: Callable,
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_size: int | None = None,
) -> Callable:
    """Vectorise ``fun`` over an axis of its arguments, as ``jax.vmap``.

    Args:
        fun: a function of pytrees of arrays.
        in_axes: the axis of each argument to map over: an int for all of them, None
            for an argument that is not mapped (it is shared by every batch element),
            or a tuple with one entry per positional argument, each itself an int,
            None, or a pytree prefix of that argument (e.g. ``{"w": None, "b": 0}``).
            Negative axes count from the end. Keyword arguments are mapped over axis 0.
        out_axes: where the batch axis goes in each output: an int, None (the output
            must not depend on the mapped axis) or a pytree prefix of the output.
        axis_size: the batch size; needed only when no argument is mapped.

    Returns:
        A function with ``fun``'s signature whose outputs carry the batch axis.

    Raises:
        ValueError: mapped arguments disagree on the batch size (the message names
            each argument and its size), an axis is out of range, or ``in_axes`` does
            not fit the arguments.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> xs = fnp.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        >>> fgrad.vmap(lambda x, w: fnp.dot(x, w), in_axes=(0, None))(xs, fnp.ones(2)).tolist()
        [3.0, 7.0, 11.0]
        >>> per_example = fgrad.vmap(fgrad.grad(lambda w, x: fnp.sum(w * x)), in_axes=(None, 0))
        >>> per_example(fnp.ones(2), xs).shape
        (3, 2)
    """
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)
    if not (in_axes is None or isinstance(in_axes, int | np.integer | tuple)):
        raise TypeError(
            f"vmap in_axes must be an int, None, or a tuple of entries for the positional "
            f"arguments, got {type(in_axes).__name__}: {in_axes!r}"
        )

    @functools.wraps(fun)
    def vmapped(*args, **kwargs):
        if isinstance(in_axes, tuple):
            if len(in_axes) != len(args):
                raise ValueError(
                    f"vmap in_axes has {len(in_axes)} entries but the function was called "
                    f"with {len(args)} positional arguments (at {user_frame()})"
                )
            arg_spec = in_axes
        else:
            arg_spec = (in_axes,) * len(args)
        flat_args, in_tree = tree_util.tree_flatten((args, kwargs))
        axes = _broadcast_prefix(arg_spec, args, "in_axes")
        axes += [0] * (len(flat_args) - len(axes))  # keyword arguments: axis 0
        names = _arg_names(args, kwargs)

        vals, sizes = [], []
        for x, ax, name in zip(flat_args, axes, names, strict=True):
            if ax is None:
                vals.append(x)
                continue
            x = _to_operand(x)
            ax = _normalize_axis(ax, len(x.shape), name, x.shape)
            vals.append((x, ax))
            sizes.append((name, ax, int(x.shape[ax])))
        size = _common_size(sizes, axis_size)

        with new_main(BatchTrace, size, name="vmap") as main:
            trace = BatchTrace(main)
            in_vals = [
                BatchTracer(trace, v[0], v[1], "argument") if isinstance(v, tuple) else v
                for v in vals
            ]
            a, kw = tree_util.tree_unflatten(in_tree, in_vals)
            out = fun(*a, **kw)
            flat_out, out_tree = tree_util.tree_flatten(out)
            out_ax = _broadcast_prefix(out_axes, out, "out_axes")
            results = [
                _unbatch_output(trace, o, ax, size, i)
                for i, (o, ax) in enumerate(zip(flat_out, out_ax, strict=True))
            ]
        return tree_util.tree_unflatten(out_tree, results)

    vmapped.__wrapped__ = fun
    return vmapped


def _common_size(sizes: list[tuple[str, int, int]], axis_size: int | None) -> int:
    """The batch size all mapped arguments agree on, or a ValueError naming them."""
    found = {s for _, _, s in sizes}
    if axis_size is not None:
        found.add(int(axis_size))
    if not found:
        raise ValueError(
            "vmap needs at least one mapped argument (an in_axes entry that is not None) "
            f"or an explicit axis_size (at {user_frame()})"
        )
    if len(found) > 1:
        lines = [f"  {name}: size {s} along axis {ax}" for name, ax, s in sizes]
        if axis_size is not None:
            lines.append(f"  axis_size={axis_size}")
        raise ValueError(
            f"vmap got inconsistent sizes for the mapped axis (at {user_frame()}):\n"
            + "\n".join(lines)
        )
    return found.pop()


def _unbatch_output(trace: BatchTrace, out: Any, out_axis: int | None, size: int, index: int):
    """Turn one output of the vmapped function into a plain value with its batch axis."""
    if isinstance(out, Tracer):
        t = trace.full_raise(out)
        val, d = t.val, t.batch_dim
    else:
        val, d = _to_operand(out), None
    if out_axis is None:
        if d is not None:
            raise ValueError(
                f"vmap: out_axes is None for output {index}, but that output varies along "
                f"the mapped axis (shape {tuple(val.shape)}, batch axis {d})"
            )
        return val
    ndim = len(val.shape) + (1 if d is None else 0)
    if not -ndim <= out_axis < ndim:
        raise ValueError(
            f"vmap: out_axes={out_axis} is out of range for output {index} of rank {ndim - 1}"
        )
    out_axis %= ndim
    if d is None:
        return bdim_at(val, None, size, out_axis)
    return moveaxis(val, d, out_axis)
