"""The CPU compiler: a jaxpr becomes one generated Python program over fused Numba loops.

1. Dead equations are dropped.
2. ``partition`` groups maximal chains of elementwise equations (and the
   ``broadcast_in_dim`` feeding them) that share an output shape into fusion groups;
   every other equation (contractions, reductions, gathers, ...) stays on its own.
3. Each group becomes one Numba loop nest (``group_kernel_source``): intermediates
   live in registers, only values needed outside the group are written out. The
   source depends on dtypes and ranks (and which broadcast axes have size 1), never
   on sizes, so a new batch size reuses the compiled kernel.
4. A Python driver (``Program``) calls the kernels and, for the other equations,
   BLAS through NumPy (``np.matmul`` on transposed views) or the primitive's NumPy
   implementation directly. No eager dispatch happens while it runs.

The driver is regenerated per input signature (it is plain Python, built in
milliseconds); a second code generator (CUDA) can reuse ``partition`` unchanged.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from fgrad.backends.cpu.buffers import RECYCLE_MIN_BYTES, BufferPlanner, Recycler, last_uses
from fgrad.backends.cpu.emit import EMITTERS
from fgrad.backends.cpu.kernel_cache import load_kernel
from fgrad.backends.cpu.loops import optimize_loops
from fgrad.backends.cpu.segments import (
    FUSED_REDUCTIONS,
    MERGE_MAX_ELEMENTS,
    REDUCIBLE_DTYPES,
    segment_source,
    split_segments,
)
from fgrad.core import ClosedJaxpr, Eqn, Jaxpr, Literal, Var

# ---------------------------------------------------------------- dead code and partition


def dce(jaxpr: Jaxpr) -> list[Eqn]:
    """Equations whose results reach an output (all primitives are pure)."""
    live = {v for v in jaxpr.outvars if isinstance(v, Var)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.primitive.effectful or any(v in live for v in eqn.outvars):
            kept.append(eqn)
            live.update(v for v in eqn.invars if isinstance(v, Var))
    kept.reverse()
    return kept


_CALLS = ("checkpoint", "custom_jvp_call", "custom_vjp_call")


def inline_calls(jaxpr: Jaxpr) -> Jaxpr:
    """Replace call primitives (checkpoint, custom_jvp/vjp) by their bodies.

    Their rules only matter to differentiation, which happened before compiling.
    """
    if not any(e.primitive.name in _CALLS for e in jaxpr.eqns):
        return jaxpr
    subst: dict[Var, Any] = {}

    def sub(v):
        return subst.get(v, v) if isinstance(v, Var) else v

    eqns: list[Eqn] = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name not in _CALLS:
            eqns.append(
                Eqn(
                    eqn.primitive,
                    [sub(v) for v in eqn.invars],
                    eqn.outvars,
                    eqn.params,
                    eqn.source_info,
                )
            )
            continue
        inner = inline_calls(eqn.params["call_jaxpr"])
        env: dict[Var, Any] = dict(zip(inner.invars, [sub(v) for v in eqn.invars]))
        for ie in inner.eqns:
            outs = [Var(v.aval) for v in ie.outvars]
            ins = [env.get(v, v) if isinstance(v, Var) else v for v in ie.invars]
            env.update(zip(ie.outvars, outs))
            eqns.append(Eqn(ie.primitive, ins, outs, ie.params, ie.source_info))
        for outer, v in zip(eqn.outvars, inner.outvars):
            subst[outer] = env.get(v, v) if isinstance(v, Var) else v
    return Jaxpr(jaxpr.constvars, jaxpr.invars, eqns, [sub(v) for v in jaxpr.outvars])


class FusionGroup:
    """Elementwise equations sharing one output shape, run as one loop nest."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.eqns: list[Eqn] = []
        self.closed = False
        self.inputs: list[Var | Literal] = []
        self.outputs: list[Var] = []

    def __repr__(self) -> str:
        names = " ".join(e.primitive.name for e in self.eqns)
        return f"FusionGroup({self.shape}: {names})"


def _fusible(eqn: Eqn, slices: bool = False) -> bool:
    name = eqn.primitive.name
    if name == "broadcast_in_dim":
        return True
    if name == "slice":
        # A unit-stride slice is a load at an offset: the LSTM's gate slices then read
        # the pre-activations in place instead of being copied first.
        x = eqn.invars[0]
        return (
            slices and isinstance(x, Var) and x.aval.ndim > 0 and set(eqn.params["strides"]) <= {1}
        )
    emitter = EMITTERS.get(name)
    if emitter is None or len(eqn.outvars) != 1:
        return False
    return emitter(eqn, ["x"] * len(eqn.invars), lambda v, d: "c") is not None


def _reduction_target(eqn: Eqn, producer: dict) -> FusionGroup | None:
    """The open group whose loop can also accumulate ``eqn`` (a reduction), if any."""
    if eqn.primitive.name not in FUSED_REDUCTIONS or not eqn.params["axes"]:
        return None
    operand = eqn.invars[0]
    if not isinstance(operand, Var) or operand.aval.dtype not in REDUCIBLE_DTYPES:
        return None
    g = producer.get(operand)
    if g is None or g.closed or g.shape != operand.aval.shape:
        return None
    return g


def partition(
    eqns: Sequence[Eqn],
    outvars: Sequence[Any],
    fuse_reductions: bool = False,
    fuse_slices: bool = False,
) -> list[Eqn | FusionGroup]:
    """Split equations into fusion groups and single equations, in a valid order.

    A group runs when it closes: before the first equation outside it that reads one
    of its values. Equations may join an open group after unrelated equations ran,
    which is what lets a whole elementwise chain fuse across interleaved matmuls.

    With ``fuse_reductions``, a sum/max/min whose operand an open group produces joins
    that group: its loop accumulates the result, and the operand is never written out
    unless something else reads it. A reduced value is complete only when the loop
    ends, so reading it closes the group. With ``fuse_slices``, unit-stride slices join
    groups as offset loads of their operand.
    """
    steps: list[Eqn | FusionGroup] = []
    open_groups: dict[tuple[int, ...], FusionGroup] = {}
    producer: dict[Var, FusionGroup] = {}
    reduced: set[Var] = set()

    def close(g: FusionGroup) -> None:
        if not g.closed:
            g.closed = True
            steps.append(g)
            if open_groups.get(g.shape) is g:
                del open_groups[g.shape]

    for eqn in eqns:
        target = None
        fusible = _fusible(eqn, fuse_slices)
        reduction = None if fusible or not fuse_reductions else _reduction_target(eqn, producer)
        if fusible:
            shape = eqn.outvars[0].aval.shape
            target = open_groups.get(shape)
        elif reduction is not None:
            target = reduction
        for v in eqn.invars:
            g = producer.get(v) if isinstance(v, Var) else None
            if g is not None and (g is not target or v in reduced):
                close(g)
        if reduction is not None and not reduction.closed:
            reduction.eqns.append(eqn)
            producer[eqn.outvars[0]] = reduction
            reduced.add(eqn.outvars[0])
        elif fusible:
            if target is None or target.closed:
                target = FusionGroup(eqn.outvars[0].aval.shape)
                open_groups[target.shape] = target
            target.eqns.append(eqn)
            for v in eqn.outvars:
                producer[v] = target
        else:
            steps.append(eqn)
    for g in list(open_groups.values()):
        close(g)
    # Inputs (read from outside) and outputs (read outside or returned) of each group.
    used_outside: dict[Var, bool] = {v: True for v in outvars if isinstance(v, Var)}
    for step in steps:
        if isinstance(step, Eqn):
            for v in step.invars:
                if isinstance(v, Var):
                    used_outside[v] = True
    for step in steps:
        if isinstance(step, FusionGroup):
            inside = {v for e in step.eqns for v in e.outvars}
            for other in steps:
                if other is step or not isinstance(other, FusionGroup):
                    continue
                for e in other.eqns:
                    for v in e.invars:
                        if isinstance(v, Var) and v in inside:
                            used_outside[v] = True
            seen = set()
            for e in step.eqns:
                for v in e.invars:
                    if isinstance(v, Var) and v not in inside and v not in seen:
                        seen.add(v)
                        step.inputs.append(v)
            step.outputs = [v for e in step.eqns for v in e.outvars if used_outside.get(v)]
    return steps


# ---------------------------------------------------------------- the driver


def _contiguous(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


_MATMUL_PATTERNS = {
    # (lhs contract, rhs contract) for 2-D operands -> expression over views.
    ((1,), (0,)): "np.matmul({x}, {y})",
    ((0,), (0,)): "np.matmul({x}.T, {y})",
    ((1,), (1,)): "np.matmul({x}, {y}.T)",
    ((0,), (1,)): "np.matmul({x}.T, {y}.T)",
}


def _dot_expr(eqn: Eqn, x: str, y: str) -> str | None:
    (lc, rc), (lb, rb) = eqn.params["contract"], eqn.params["batch"]
    nx, ny = len(eqn.invars[0].aval.shape), len(eqn.invars[1].aval.shape)
    if not lb and nx == 2 and ny == 2:
        pattern = _MATMUL_PATTERNS.get((tuple(lc), tuple(rc)))
        return pattern.format(x=x, y=y) if pattern else None
    if lb == rb == tuple(range(nx - 2)) and nx == ny and nx >= 3:
        b = nx - 2
        if lc == (b + 1,) and rc == (b,):
            return f"np.matmul({x}, {y})"
    return None


class Program:
    """A compiled jaxpr: call it with NumPy arrays, get a list of NumPy arrays."""

    def __init__(self, closed: ClosedJaxpr, fuse: bool = True, loop_body: bool = False):
        # Loop rewrites (one forward scan for grad-of-scan, sums hoisted out of loops).
        jaxpr = optimize_loops(inline_calls(closed.jaxpr)) if fuse else inline_calls(closed.jaxpr)
        closed = ClosedJaxpr(jaxpr, closed.consts)
        self.jaxpr = jaxpr
        eqns = dce(jaxpr)
        self.fuse = fuse
        self.loop_body = loop_body
        self.steps = (
            partition(eqns, jaxpr.outvars, fuse_reductions=True, fuse_slices=True)
            if fuse
            else list(eqns)
        )
        self.kernels: dict[str, Any] = {}
        self.segment_sources: dict[str, str] = {}
        self.calls_numpy = False  # NumPy kernels may warn on inf/NaN; Numba ones don't
        self.source = self._generate(closed)

    @property
    def groups(self) -> list[FusionGroup]:
        return [s for s in self.steps if isinstance(s, FusionGroup)]

    def _generate(self, closed: ClosedJaxpr) -> str:
        jaxpr = closed.jaxpr
        g: dict[str, Any] = {"np": np, "_c": _contiguous}
        names: dict[Any, str] = {}
        lines: list[str] = []
        counter = [0]

        def fresh(prefix="v") -> str:
            counter[0] += 1
            return f"{prefix}{counter[0]}"

        def glob(value, prefix) -> str:
            name = fresh(prefix)
            g[name] = value
            return name

        def ref(v) -> str:
            if isinstance(v, Literal):
                return glob(np.asarray(v.val), "_lit")
            return names[v]

        args = [f"a{i}" for i in range(len(jaxpr.invars))]
        for v, a in zip(jaxpr.invars, args):
            names[v] = a
        for v, c in zip(jaxpr.constvars, closed.consts):
            names[v] = glob(np.asarray(c), "_const")
        from_kernel: set[str] = set()
        largest = max(
            (
                v.aval.size
                for e in jaxpr.eqns
                for v in list(e.invars) + list(e.outvars)
                if isinstance(v, Var)
            ),
            default=0,
        )
        self.merged = largest <= MERGE_MAX_ELEMENTS
        units = (
            split_segments(self.steps, self.merged, small=_small) if self.fuse else list(self.steps)
        )
        reads = [_unit_reads(u) for u in units]
        later: list[set] = [set() for _ in units]
        acc = {v for v in jaxpr.outvars if isinstance(v, Var)}
        for i in range(len(units) - 1, -1, -1):
            later[i] = set(acc)
            acc |= reads[i]

        def arg(v) -> str:
            r = ref(v)
            return r if r in from_kernel or isinstance(v, Literal) else f"_c({r})"

        # Large programs reuse dead intermediate buffers (their big groups run one
        # kernel each); in small, merged programs everything is allocated in Numba.
        planner = (
            BufferPlanner(last_uses(units, reads, jaxpr.outvars))
            if self.fuse and not self.merged
            else None
        )

        self.recycler = Recycler()
        g["_rec"] = self.recycler

        def recycled(v) -> str | None:
            """A driver name holding a recycled array for large ``v`` (else None)."""
            if v.aval.size * v.aval.dtype.itemsize < RECYCLE_MIN_BYTES:
                return None
            key = (tuple(v.aval.shape), np.dtype(v.aval.dtype).name)
            self.recycler.register(key)
            name = fresh("_buf")
            lines.append(f"{name} = _rec.take({glob(key, '_key')})")
            return name

        def unit_reads(i):
            return [(v, names[v]) for v in reads[i] if v in names]

        for i, (unit, needed_after) in enumerate(zip(units, later)):
            if isinstance(unit, list):
                steps = [s for s in unit if isinstance(s, Eqn) or s.outputs]
                if not steps:
                    continue
                defined = _unit_defines(steps)
                inputs = [v for v in _ordered_reads(steps) if v not in defined]
                outputs = [v for v in defined if v in needed_after]
                if not outputs:
                    continue
                buffered, bufs = [], {}
                if planner is not None and len(steps) == 1 and isinstance(steps[0], FusionGroup):
                    group = steps[0]
                    reduced = {
                        e.outvars[0] for e in group.eqns if e.primitive.name in FUSED_REDUCTIONS
                    }
                    # Outputs get a dead buffer of this call when one is waiting, a
                    # recycled array when large; small new arrays are as cheap to
                    # allocate inside Numba.
                    for v in outputs:
                        if v in reduced:
                            continue
                        buf = planner.pooled(v) or recycled(v)
                        if buf is not None:
                            bufs[v] = buf
                    buffered = list(bufs)
                src, shapes = segment_source(steps, inputs, outputs, out_buffers=buffered)
                sname = glob(load_kernel(src, "segment"), "_seg")
                self.kernels[sname] = g[sname]
                self.segment_sources[sname] = src
                call_args = [arg(v) for v in inputs] + list(bufs.values())
                if shapes:
                    flat = np.asarray([d for s in shapes for d in s], dtype=np.int64)
                    call_args.append(glob(flat, "_shp"))
                outs = [fresh() for _ in outputs]
                lines.append(f"{', '.join(outs)}, = {sname}({', '.join(call_args)})")
                single_group = len(steps) == 1 and isinstance(steps[0], FusionGroup)
                for v, o in zip(outputs, outs):
                    names[v] = o
                    from_kernel.add(o)
                    if planner is not None and single_group:
                        planner.owns(o, v, bufs.get(v))
                if planner is not None:
                    if not single_group:  # a merged segment's reshapes may return views
                        planner.pin(names[v] for v in inputs)
                    planner.release(i, unit_reads(i))
                continue
            eqn = unit
            ins = [ref(v) for v in eqn.invars]
            expr = _dot_expr(eqn, *ins) if eqn.primitive.name == "dot_general" else None
            owned = expr is not None  # np.matmul returns a fresh array (or fills out=)
            if (
                owned
                and planner is not None
                and all(v.aval.dtype == eqn.outvars[0].aval.dtype for v in eqn.invars)
            ):
                buf = planner.pooled(eqn.outvars[0]) or recycled(eqn.outvars[0])
                if buf is not None:
                    expr = expr[:-1] + f", out={buf})"
            else:
                buf = None
            if expr is None and eqn.primitive.name in _CONTROL_FLOW:
                fn = glob(_control_flow_runner(eqn), "_loop")
                expr = f"{fn}({', '.join(ins)})"
            if expr is None:
                fn = glob(_bind_impl(eqn), "_f")
                expr = f"{fn}({', '.join(ins)})"
                self.calls_numpy = True
            outs = [fresh() for _ in eqn.outvars]
            if not outs:
                lines.append(expr)
            elif eqn.primitive.multiple_results:
                lines.append(f"{', '.join(outs)}{',' if len(outs) == 1 else ''} = {expr}")
            else:
                lines.append(f"{outs[0]} = {expr}")
            for v, o in zip(eqn.outvars, outs):
                names[v] = o
            if planner is not None:
                if owned:
                    planner.owns(outs[0], eqn.outvars[0], buf)
                else:  # a NumPy kernel or a loop: its results may alias its inputs
                    planner.pin(ins)
                planner.release(i, unit_reads(i))
        self.buffers_reused = planner.reused if planner is not None else 0
        rets = []
        for v in jaxpr.outvars:
            r = ref(v)
            # Never hand a caller's own input buffer back as an output. (A loop body's
            # outputs go back into the loop, or are copied into the stacked outputs; the
            # loop driver copies a final carry that is still its initial value.)
            rets.append(f"np.array({r})" if r in args and not self.loop_body else r)
        body = "\n".join("    " + line for line in lines) or "    pass"
        source = f"def program({', '.join(args)}):\n{body}\n    return [{', '.join(rets)}]\n"
        exec(builtins.compile(source, "<fgrad.jit program>", "exec"), g)  # noqa: S102
        self._fn = g["program"]
        self._globals = g
        return source

    def __call__(self, *args: np.ndarray) -> list[np.ndarray]:
        if not self.calls_numpy:
            return self._fn(*args)
        # Overflow to inf and 0/0 = NaN are results, not warnings (as in JAX).
        with np.errstate(all="ignore"):
            return self._fn(*args)


def _small(step) -> bool:
    """Whether every array a step touches is small enough to merge into a segment."""
    eqns = step.eqns if isinstance(step, FusionGroup) else [step]
    return all(
        v.aval.size <= MERGE_MAX_ELEMENTS
        for e in eqns
        for v in list(e.invars) + list(e.outvars)
        if isinstance(v, Var)
    )


def _unit_reads(unit) -> set:
    steps = unit if isinstance(unit, list) else [unit]
    out = set()
    for s in steps:
        out.update(v for v in (s.invars if isinstance(s, Eqn) else s.inputs) if isinstance(v, Var))
    return out


def _unit_defines(steps) -> list[Var]:
    out = []
    for s in steps:
        out.extend(s.outvars if isinstance(s, Eqn) else s.outputs)
    return out


def _ordered_reads(steps) -> list[Var]:
    seen: dict[Var, None] = {}
    for s in steps:
        for v in s.invars if isinstance(s, Eqn) else s.inputs:
            if isinstance(v, Var):
                seen.setdefault(v, None)
    return list(seen)


def _bind_impl(eqn: Eqn):
    """The primitive's CPU kernel (Numba where one exists, else its NumPy impl) with its
    params bound, checking the output dtype."""
    from fgrad.backends.cpu.kernels import KERNELS

    impl, params = KERNELS.get(eqn.primitive.name, eqn.primitive.impl), dict(eqn.params)
    avals = [v.aval for v in eqn.outvars]
    if eqn.primitive.multiple_results:

        def run(*xs):
            return [np.asarray(o, a.dtype) for o, a in zip(impl(*xs, **params), avals)]
    else:
        dtype = avals[0].dtype

        def run(*xs):
            return np.asarray(impl(*xs, **params), dtype)

    return run


_CONTROL_FLOW = ("scan", "cond", "while")


def _control_flow_runner(eqn: Eqn):
    """A real loop in the driver whose body is itself a compiled program (see
    ``loops``: generated loop source around the body's Program)."""
    from fgrad.backends.cpu.loops import loop_runner

    return loop_runner(eqn, _loop_body_program)


def _loop_body_program(closed: ClosedJaxpr) -> Program:
    return Program(closed, loop_body=True)


def compile(closed: ClosedJaxpr, fuse: bool = True) -> Program:  # noqa: A001
    """Compile a closed jaxpr into a CPU ``Program``."""
    return Program(closed, fuse=fuse)
