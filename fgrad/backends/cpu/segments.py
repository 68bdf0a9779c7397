"""Segments: runs of compiled steps merged into one Numba function.

Calling a Numba function from Python costs ~0.3-0.5 us plus ~0.1 us per argument; a
training step of a small model is dozens of steps, so per-step calls would dominate.
Consecutive steps that Numba can run on its own — fusion groups, reductions,
transposes, reshapes and small matrix products — are therefore emitted as ONE
function (a *segment*). The Python driver calls a segment once, and leaves it only
for BLAS-sized contractions and the primitives that run their NumPy kernels.

Array sizes never appear in a segment's source: every shape it allocates is passed in
as a tuple argument by the driver, so a new batch size reuses the compiled segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad.backends.cpu.emit import EMITTERS, np_type
from fgrad.core import Eqn, Literal, Var

#: Reductions a fusion group may accumulate in its loop (see ``compiler.partition``).
FUSED_REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min")

#: Contractions up to this many multiply-adds run as loops inside a segment.
SMALL_DOT_MACS = 32768
_RESHAPES = ("reshape", "squeeze", "expand_dims")
#: dtypes whose reductions run as Numba loops (in segments, or fused into groups).
REDUCIBLE_DTYPES = {np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64)}


def small_dot_kind(eqn: Eqn) -> str | None:
    """``mm_nn``/``mm_tn``/``mm_nt``/``mm_tt`` for a small 2-D float product, else None."""
    (lc, rc), (lb, _) = eqn.params["contract"], eqn.params["batch"]
    x, y = eqn.invars[0].aval, eqn.invars[1].aval
    if lb or x.ndim != 2 or y.ndim != 2 or x.dtype.kind != "f":
        return None
    kind = {
        ((1,), (0,)): "mm_nn",
        ((0,), (0,)): "mm_tn",
        ((1,), (1,)): "mm_nt",
        ((0,), (1,)): "mm_tt",
    }.get((tuple(lc), tuple(rc)))
    macs = x.size * y.shape[1 - rc[0]]
    return kind if macs <= SMALL_DOT_MACS else None


def eligible(step: Any) -> bool:
    """Whether a step (FusionGroup or Eqn) can run inside a segment."""
    if not isinstance(step, Eqn):
        return True  # a fusion group
    eqn = step
    if any(isinstance(v, Literal) for v in eqn.invars):
        return False
    name = eqn.primitive.name
    if name in FUSED_REDUCTIONS:
        return eqn.invars[0].aval.dtype in REDUCIBLE_DTYPES
    if name == "transpose":
        # Numba takes seconds to compile a copy of a rank-4+ transposed array; NumPy
        # does it at once (and these are small arrays: a kernel flip in a conv VJP).
        return eqn.invars[0].aval.ndim <= 3
    if name in _RESHAPES:
        return True
    if name == "dot_general":
        return small_dot_kind(eqn) is not None
    return False


class _Emitter:
    """Accumulates the source of one segment function."""

    def __init__(self):
        self.top: list[str] = []
        self.body: list[str] = []
        self.consts: dict[tuple, str] = {}
        self.shape_args: list[tuple[int, ...]] = []
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value, dtype) -> str:
        v = np.asarray(value, dtype).item()
        key = (repr(v), np.dtype(dtype).name)
        if key not in self.consts:
            if isinstance(v, float) and not np.isfinite(v):
                lit = "np.inf" if v > 0 else ("-np.inf" if v < 0 else "np.nan")
            else:
                lit = repr(v)
            name = f"c{len(self.consts)}"
            self.consts[key] = name
            self.top.append(f"{name} = {np_type(dtype)}({lit})")
        return self.consts[key]

    def shape_arg(self, shape: tuple[int, ...]) -> str:
        self.shape_args.append(tuple(int(d) for d in shape))
        return f"s{len(self.shape_args) - 1}"


def group_lines(
    group, arrays: dict[Var, str], out_names: list[str], em: _Emitter, indent: str
) -> list[str]:
    """One fused loop nest: read ``arrays``, write ``out_names`` (already allocated)."""
    rank = len(group.shape)
    idx = ", ".join(f"i{d}" for d in range(rank)) if rank else "()"
    hoisted: list[str] = []
    loads: list[str] = []
    body: list[str] = []
    names: dict[Any, str] = {}
    loaded: dict[Any, str] = {}

    def load(v, pattern=None) -> str:
        if isinstance(v, Literal):
            return em.const(np.asarray(v.val), v.aval.dtype)
        if v in names:
            return names[v]
        key = (v, pattern)
        if key not in loaded:
            name = em.fresh("x")
            if v.aval.shape == ():
                hoisted.append(f"{name} = {arrays[v]}[()]")
            else:
                loads.append(f"{name} = {arrays[v]}[{idx if pattern is None else pattern}]")
            loaded[key] = name
        return loaded[key]

    reductions: list[tuple[Eqn, str]] = []  # (eqn, accumulator) updated in the loop
    for eqn in group.eqns:
        out = eqn.outvars[0]
        if eqn.primitive.name in FUSED_REDUCTIONS:
            reductions.append((eqn, names[eqn.invars[0]]))
            continue
        if eqn.primitive.name == "slice":
            # Offsets are runtime arguments: the source stays independent of sizes.
            start = em.shape_arg(eqn.params["start_indices"])
            rank_in = eqn.invars[0].aval.ndim
            names[out] = load(
                eqn.invars[0], ", ".join(f"i{d} + {start}[{d}]" for d in range(rank_in))
            )
            continue
        if eqn.primitive.name == "broadcast_in_dim":
            operand = eqn.invars[0]
            if isinstance(operand, Literal) or operand.aval.shape == ():
                names[out] = load(operand)
                continue
            bd = eqn.params["broadcast_dimensions"]
            pattern = ", ".join(
                f"i{d}" if operand.aval.shape[j] == group.shape[d] else "0"
                for j, d in enumerate(bd)
            )
            names[out] = load(operand, pattern)
            continue
        args = [load(v) for v in eqn.invars]
        name = em.fresh("t")
        body.append(f"{name} = {EMITTERS[eqn.primitive.name](eqn, args, em.const)}")
        names[out] = name
    out_of = dict(zip(group.outputs, out_names))
    stores = [f"{out_of[v]}[{idx}] = {names[v]}" for v in group.outputs if v in names]
    lines = [indent + h for h in hoisted]
    # Full reductions accumulate in a local scalar (kept in a register); partial ones
    # in their output array, indexed by the kept axes.
    before, updates, after = [], [], []
    for eqn, value in reductions:
        target = out_of[eqn.outvars[0]]
        axes = eqn.params["axes"]
        kept = [f"i{d}" for d in range(rank) if d not in axes]
        combine = {"reduce_sum": "{a} + {x}", "reduce_max": "np.maximum({a}, {x})"}.get(
            eqn.primitive.name, "np.minimum({a}, {x})"
        )
        if kept:
            cell = f"{target}[{', '.join(kept)}]"
            updates.append(f"{cell} = {combine.format(a=cell, x=value)}")
        else:
            acc = em.fresh("acc")
            before.append(f"{acc} = {target}[()]")
            updates.append(f"{acc} = {combine.format(a=acc, x=value)}")
            after.append(f"{target}[()] = {acc}")
    lines.extend(indent + b for b in before)
    inner = loads + body + updates + stores
    if rank == 0:
        return lines + [indent + s for s in inner] + [indent + a for a in after]
    dims = ", ".join(f"n{d}" for d in range(rank))
    full = [o for v, o in out_of.items() if v.aval.shape == group.shape]
    bound = full[0] + ".shape" if full else em.shape_arg(group.shape)
    lines.append(f"{indent}{dims}{',' if rank == 1 else ''} = {bound}")
    for d in range(rank):
        lines.append(indent + "    " * d + f"for i{d} in range(n{d}):")
    lines.extend(indent + "    " * rank + s for s in inner)
    lines.extend(indent + a for a in after)
    return lines


def reduction_init(eqn: Eqn) -> tuple[object, np.dtype]:
    """Initial value and accumulator dtype of a fused reduction.

    Float sums accumulate in float64 (a float32 running sum over a long loop loses
    digits NumPy's pairwise summation keeps); max/min start at the dtype's extreme.
    """
    dtype = eqn.outvars[0].aval.dtype
    name = eqn.primitive.name
    if name == "reduce_sum":
        return 0, (np.dtype(np.float64) if dtype.kind == "f" else dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return (info.min if name == "reduce_max" else info.max), dtype
    return (-np.inf if name == "reduce_max" else np.inf), dtype


def _reduce_lines(eqn: Eqn, x: str, out: str, em: _Emitter) -> list[str]:
    aval = eqn.invars[0].aval
    axes = eqn.params["axes"]
    kept = [d for d in range(aval.ndim) if d not in axes]
    dtype = eqn.outvars[0].aval.dtype
    name = eqn.primitive.name
    init, _ = reduction_init(eqn)  # (accumulates in the output dtype here)
    s = em.shape_arg(eqn.outvars[0].aval.shape)
    lines = [f"{out} = np.full({s}, {em.const(init, dtype)})"]
    rank = aval.ndim
    oidx = ", ".join(f"i{d}" for d in kept) if kept else "()"
    iidx = ", ".join(f"i{d}" for d in range(rank)) if rank else "()"
    if rank:
        dims = ", ".join(f"m{d}" for d in range(rank))
        lines.append(f"{dims}{',' if rank == 1 else ''} = {x}.shape")
    for d in range(rank):
        lines.append("    " * d + f"for i{d} in range(m{d}):")
    pad = "    " * rank
    if name == "reduce_sum":
        lines.append(f"{pad}{out}[{oidx}] += {x}[{iidx}]")
    else:
        fn = "np.maximum" if name == "reduce_max" else "np.minimum"
        lines.append(f"{pad}{out}[{oidx}] = {fn}({out}[{oidx}], {x}[{iidx}])")
    return lines


def segment_source(
    steps: Sequence[Any],
    inputs: Sequence[Var],
    outputs: Sequence[Var],
    name: str = "segment",
    out_buffers: Sequence[Var] = (),
) -> tuple[str, list[tuple[int, ...]]]:
    """Source of one Numba function running ``steps``; and its shape arguments.

    The function takes ``*inputs, *buffers, shp`` (``buffers``: one preallocated array
    per var of ``out_buffers``, which fusion groups write instead of allocating; ``shp``:
    every shape it allocates, concatenated into one int64 array, in the order of the
    returned shape list) and returns a tuple of ``outputs``.
    """
    em = _Emitter()
    arrays: dict[Var, str] = {v: f"a{i}" for i, v in enumerate(inputs)}
    given = {v: f"b{k}" for k, v in enumerate(out_buffers)}
    lines: list[str] = []
    for step in steps:
        if not isinstance(step, Eqn):
            outs, casts = [], []
            reduced = {e.outvars[0]: e for e in step.eqns if e.primitive.name in FUSED_REDUCTIONS}
            for v in step.outputs:
                o = em.fresh("o")
                shape = None if v in given else em.shape_arg(v.aval.shape)
                if v in reduced:
                    init, acc_dtype = reduction_init(reduced[v])
                    c = em.const(init, acc_dtype)
                    lines.append(f"{o} = np.full({shape}, {c})")
                    if acc_dtype != v.aval.dtype:
                        final = em.fresh("o")
                        casts.append(f"{final} = {o}.astype(np.{v.aval.dtype.name})")
                        arrays[v] = final
                    else:
                        arrays[v] = o
                elif v in given:
                    o = given[v]
                    arrays[v] = o
                else:
                    lines.append(f"{o} = np.empty({shape}, np.{v.aval.dtype.name})")
                    arrays[v] = o
                outs.append(o)
            if outs:
                lines.extend(group_lines(step, arrays, outs, em, ""))
                lines.extend(casts)
            continue
        eqn = step
        prim = eqn.primitive.name
        out = em.fresh("r")
        x = arrays[eqn.invars[0]]
        if prim in FUSED_REDUCTIONS:
            lines.extend(_reduce_lines(eqn, x, out, em))
        elif prim == "transpose":
            perm = tuple(eqn.params["permutation"])
            if perm == tuple(range(len(perm))):  # also rank 0: a fresh copy, never a view
                lines.append(f"{out} = {x}.copy()")
            else:
                lines.append(f"{out} = np.ascontiguousarray(np.transpose({x}, {perm!r}))")
        elif prim in _RESHAPES:
            s = em.shape_arg(eqn.outvars[0].aval.shape)
            lines.append(f"{out} = np.ascontiguousarray({x}).reshape({s})")
        elif prim == "dot_general":
            y = arrays[eqn.invars[1]]
            kind = small_dot_kind(eqn)
            lines.append(f"{out} = {kind}(np.ascontiguousarray({x}), np.ascontiguousarray({y}))")
        else:  # pragma: no cover - guarded by eligible()
            raise AssertionError(prim)
        arrays[eqn.outvars[0]] = out
    rets = ", ".join(arrays[v] for v in outputs)
    # All shapes travel in one int64 array (one argument to unbox, not one tuple each).
    unpack, pos = [], 0
    for i, shape in enumerate(em.shape_args):
        dims = ", ".join(f"shp[{pos + k}]" for k in range(len(shape)))
        unpack.append(f"s{i} = ({dims}{',' if len(shape) == 1 else ''})")
        pos += len(shape)
    params = [f"a{i}" for i in range(len(inputs))] + list(given.values())
    params += ["shp"] if em.shape_args else []
    src = [
        "from fgrad.backends.cpu.fastmath import exp32, logistic32, tanh32",
        "from fgrad.backends.cpu.seglib import mm_nn, mm_nt, mm_tn, mm_tt",
        "",
        "",
        "@numba.njit(cache=True, error_model='numpy', nogil=True)",
        f"def {name}({', '.join(params)}):",
    ]
    src.extend("    " + line for line in unpack + em.top + lines)
    src.append(f"    return ({rets}{',' if len(outputs) == 1 else ''})")
    return "\n".join(src) + "\n", em.shape_args


#: Programs whose arrays all have at most this many elements merge their steps into
#: segments: for them call overhead dominates. Larger programs compile one kernel per
#: fusion group instead: the work dominates there, and identical groups (the same
#: optimizer update on parameters of different sizes) share one compiled kernel,
#: which keeps compile time low.
MERGE_MAX_ELEMENTS = 16384


def split_segments(steps: Sequence[Any], merge: bool = True, small=None) -> list[Any]:
    """Group consecutive eligible steps into lists (segments); other steps stay single.

    With ``merge=False`` every fusion group is a segment of its own and the other
    steps run outside segments, except that consecutive eligible steps for which
    ``small(step)`` holds still merge (a large program's loss head and scalar optimizer
    bookkeeping: fewer kernels to compile and to call).
    """
    if not merge and small is None:
        return [[s] if not isinstance(s, Eqn) else s for s in steps]
    out: list[Any] = []
    run: list[Any] = []
    for step in steps:
        if eligible(step) and (merge or small(step)):
            run.append(step)
        else:
            if run:
                out.append(run)
                run = []
            out.append([step] if not merge and not isinstance(step, Eqn) else step)
    if run:
        out.append(run)
    return out
