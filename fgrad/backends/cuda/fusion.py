"""One CUDA kernel per fusion group: a chain of elementwise equations in registers.

The CPU compiler's ``partition`` finds the groups; this module turns one into the
source of a grid-stride kernel over the group's flat output index. Operands of the
group's shape are read at that index, rank-0 operands once before the loop, and the
operands of ``broadcast_in_dim`` through the coordinates of the index (unravelled
only when some operand needs them). Sizes and strides are kernel arguments, never
part of the source, so groups of the same structure share one compiled kernel
whatever their sizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fgrad.backends.cuda import runtime
from fgrad.backends.cuda.emit import expression, np_type
from fgrad.core import Literal, Var


class _Source:
    def __init__(self):
        self.consts: dict[tuple, str] = {}
        self.const_lines: list[str] = []
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value, dtype) -> str:
        dtype = np.dtype(dtype)
        v = np.asarray(value).astype(dtype).item()
        key = (repr(v), dtype.name)
        if key not in self.consts:
            if isinstance(v, float) and not math.isfinite(v):
                lit = "np.inf" if v > 0 else ("-np.inf" if v < 0 else "np.nan")
            else:
                lit = repr(v)
            name = f"K{len(self.consts)}"
            self.consts[key] = name
            self.const_lines.append(f"{name} = {np_type(dtype)}({lit})")
        return self.consts[key]


class GroupKernel:
    """A fusion group compiled to one kernel: call it with the group's input arrays."""

    def __init__(self, group, source: str, name: str, bcast: list[tuple[Var, list[int]]], scalars):
        self.group = group
        self.scalars = scalars  # the group's literals, passed as typed scalar arguments
        self.shape = tuple(group.shape)
        self.source = source
        self.name = name
        self.bcast = bcast  # (var, operand dims read through coordinates)
        self.out_avals = [v.aval for v in group.outputs]
        self._kernel = None
        # The arguments around the arrays are fixed per program: computed once.
        self.n = math.prod(self.shape)
        self._head = [self.n, *self.shape]
        self._mid = list(scalars)
        for v, dims in bcast:
            st = _strides(v.aval.shape)
            self._mid.extend(st[j] for j in dims)

    def __call__(self, ins: list) -> list:
        if self._kernel is None:
            self._kernel = runtime.kernel(self.source, self.name)
        outs = [runtime.empty(a.shape, a.dtype) for a in self.out_avals]
        args = [*self._head, *[x.buf for x in ins], *self._mid, *[o.buf for o in outs]]
        runtime.launch_elementwise(self._kernel, self.n, *args)
        return outs


def _strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def group_kernel(group) -> GroupKernel | None:
    """Compile ``group`` (a ``FusionGroup``-like object: ``shape``, ``eqns``,
    ``inputs``, ``outputs``) to a kernel, or None if an equation has no CUDA form."""
    src = _Source()
    shape = tuple(group.shape)
    rank = len(shape)
    arrays = {v: f"a{i}" for i, v in enumerate(group.inputs)}
    hoisted: list[str] = []
    loads: list[str] = []
    body: list[str] = []
    names: dict[Any, str] = {}
    loaded: dict[Any, str] = {}
    bcast: list[tuple[Var, list[int]]] = []
    bcast_args: list[str] = []
    need_coords = False

    scalars: dict[tuple, tuple[str, Any]] = {}

    def load(v, bd=None) -> str:
        nonlocal need_coords
        if isinstance(v, Literal):
            # An argument, not a constant in the source: a literal such as the batch
            # size in a mean would otherwise compile a new kernel per value.
            value = np.asarray(v.val, v.aval.dtype)[()]
            key = (value.dtype.str, value.tobytes())
            if key not in scalars:
                scalars[key] = (f"l{len(scalars)}", value)
            return scalars[key][0]
        if v in names:
            return names[v]
        key = (v, bd)
        if key in loaded:
            return loaded[key]
        name = src.fresh("x")
        if v.aval.shape == ():
            hoisted.append(f"{name} = {arrays[v]}[0]")
        elif bd is None:
            loads.append(f"{name} = {arrays[v]}[i]")
        else:
            dims = [j for j, d in enumerate(bd) if v.aval.shape[j] != 1 and shape[d] != 1]
            terms = []
            for j in dims:
                s = f"b{len(bcast_args)}"
                bcast_args.append(s)
                terms.append(f"c{bd[j]} * {s}")
            bcast.append((v, dims))
            need_coords = need_coords or bool(dims)
            loads.append(f"{name} = {arrays[v]}[{' + '.join(terms) if terms else '0'}]")
        loaded[key] = name
        return name

    for eqn in group.eqns:
        out = eqn.outvars[0]
        if eqn.primitive.name == "broadcast_in_dim":
            operand = eqn.invars[0]
            if isinstance(operand, Literal) or operand.aval.shape == ():
                names[out] = load(operand)
            else:
                names[out] = load(operand, tuple(eqn.params["broadcast_dimensions"]))
            continue
        args = [load(v) for v in eqn.invars]
        expr = expression(eqn, args, src.const)
        if expr is None:
            return None
        name = src.fresh("t")
        body.append(f"{name} = {expr}")
        names[out] = name
    stores = [f"o{k}[i] = {names[v]}" for k, v in enumerate(group.outputs)]
    coords = []
    if need_coords:
        coords.append("r = i")
        for d in range(rank - 1, 0, -1):
            coords.append(f"c{d} = r % s{d}")
            coords.append(f"r = r // s{d}")
        coords.append("c0 = r")
    params = (
        ["n"]
        + [f"s{d}" for d in range(rank)]
        + [arrays[v] for v in group.inputs]
        + [name for name, _ in scalars.values()]
        + bcast_args
        + [f"o{k}" for k in range(len(group.outputs))]
    )
    lines = list(src.const_lines)
    lines += ["", "", f"def fused({', '.join(params)}):"]
    lines += ["    " + h for h in hoisted]
    lines += ["    i = cuda.grid(1)", "    step = cuda.gridsize(1)", "    while i < n:"]
    lines += ["        " + s for s in coords + loads + body + stores]
    lines.append("        i += step")
    source = "\n".join(lines) + "\n"
    return GroupKernel(group, source, "fused", bcast, [value for _, value in scalars.values()])


class SingleGroup:
    """A one-equation 'fusion group', for elementwise equations run on their own."""

    def __init__(self, eqn):
        self.shape = tuple(eqn.outvars[0].aval.shape)
        self.eqns = [eqn]
        seen: dict[Var, None] = {}
        for v in eqn.invars:
            if isinstance(v, Var):
                seen.setdefault(v, None)
        self.inputs = list(seen)
        self.outputs = list(eqn.outvars)
