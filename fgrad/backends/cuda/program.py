"""The CUDA compiler: a closed jaxpr becomes a plan of kernel launches over device arrays.

It reuses the CPU compiler's front half (``inline_calls``, ``dce``, ``partition``) and
replaces the code generator:

* each fusion group becomes one kernel (``fusion.group_kernel``);
* every other equation gets its device runner from ``kernels.LOWERINGS``; an
  elementwise equation the CPU does not fuse (``erf_inv``, shifts, integer division)
  becomes a one-equation kernel; control flow (``scan``, ``cond``, ``while``) runs as
  a loop on the host whose body is itself a ``CudaProgram`` over device-resident data;
* anything without a device form runs its reference implementation on the host,
  with a copy each way (``host_runner``): ``argsort``, ``debug_print``,
  ``scatter`` with ``mul``, float16 values, and anything added to ``fgrad.lax`` before
  it gets a kernel here. So every program compiles.

``CudaProgram.run_device`` takes NumPy or device arrays and returns device arrays;
intermediates are dropped after their last use so their memory goes back early.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fgrad.backends.cpu.compiler import FusionGroup, dce, inline_calls, partition
from fgrad.backends.cuda import runtime
from fgrad.backends.cuda.emit import EMITTERS
from fgrad.backends.cuda.fusion import SingleGroup, group_kernel
from fgrad.backends.cuda.kernels import LOWERINGS
from fgrad.backends.cuda.runtime import CudaArray, to_device, to_host
from fgrad.core import ClosedJaxpr, Eqn, Literal

Runner = Callable[[list], list]


def host_runner(eqn: Eqn) -> Runner:
    """Run the primitive's reference implementation on host copies of the operands."""
    impl, params = eqn.primitive.impl, dict(eqn.params)
    avals = [v.aval for v in eqn.outvars]
    multiple = eqn.primitive.multiple_results

    def run(ins):
        with np.errstate(all="ignore"):
            outs = impl(*[to_host(x) for x in ins], **params)
        outs = list(outs) if multiple else [outs]
        return [to_device(np.asarray(o, a.dtype)) for o, a in zip(outs, avals)]

    run.on_host = True  # type: ignore[attr-defined]
    return run


def lower_eqn(eqn: Eqn) -> Runner:
    """The runner of one (unfused) equation: a device kernel where there is one."""
    name = eqn.primitive.name
    if name in _CONTROL_FLOW:
        return _CONTROL_FLOW[name](eqn)
    lower = LOWERINGS.get(name)
    if lower is not None:
        runner = lower(eqn)
        if runner is not None:
            return runner
    if name in EMITTERS and len(eqn.outvars) == 1:
        group = SingleGroup(eqn)
        k = group_kernel(group)
        if k is not None:
            # The kernel takes the distinct Var operands; literals are in its source.
            pos = [eqn.invars.index(v) for v in group.inputs]
            return lambda ins: k([ins[i] for i in pos])
    return host_runner(eqn)


class CudaProgram:
    """A compiled jaxpr: a list of (runner, input slots, output slots) steps."""

    def __init__(self, closed: ClosedJaxpr):
        runtime.load()  # kernel sources depend on the launch geometry (GPU or simulator)
        jaxpr = inline_calls(closed.jaxpr)
        self.jaxpr = jaxpr
        self._consts_host = list(closed.consts)
        self._consts: list[CudaArray] | None = None
        slots: dict[Any, int] = {}

        def slot(v) -> int:
            if v not in slots:
                slots[v] = len(slots)
            return slots[v]

        self.const_slots = [slot(v) for v in jaxpr.constvars]
        self.in_slots = [slot(v) for v in jaxpr.invars]
        self.literals: list[tuple[int, Any, np.dtype]] = []
        literal_slots: dict[tuple, int] = {}

        def ref(v) -> int:
            if isinstance(v, Literal):
                value = np.asarray(v.val, v.aval.dtype)
                key = (value.dtype.str, value.tobytes())
                if key not in literal_slots:
                    s = len(slots)
                    slots[("literal", key)] = s
                    literal_slots[key] = s
                    self.literals.append((s, value, value.dtype))
                return literal_slots[key]
            return slot(v)

        self.steps: list[tuple[Runner, list[int], list[int]]] = []
        self.groups: list = []
        for step in partition(dce(jaxpr), jaxpr.outvars):
            if isinstance(step, FusionGroup):
                if not step.outputs:
                    continue
                k = group_kernel(step)
                if k is not None:
                    self.groups.append(k)
                    ins = [ref(v) for v in step.inputs]
                    self.steps.append((k, ins, [slot(v) for v in step.outputs]))
                    continue
                eqns = step.eqns  # an equation without a CUDA expression: one by one
            else:
                eqns = [step]
            for eqn in eqns:
                ins = [ref(v) for v in eqn.invars]
                self.steps.append((lower_eqn(eqn), ins, [slot(v) for v in eqn.outvars]))
        self.out_slots = [ref(v) for v in jaxpr.outvars]
        self.n_slots = len(slots)
        # Drop each intermediate after the step that reads it last.
        keep = set(self.out_slots) | set(self.const_slots) | {s for s, _, _ in self.literals}
        last: dict[int, int] = {}
        for i, (_, ins, _) in enumerate(self.steps):
            for s in ins:
                last[s] = i
        self.frees: list[list[int]] = [[] for _ in self.steps]
        for s, i in last.items():
            if s not in keep:
                self.frees[i].append(s)

    @property
    def host_steps(self) -> list[Runner]:
        """Steps that run on the host (reference implementations)."""
        return [r for r, _, _ in self.steps if getattr(r, "on_host", False)]

    def _load_consts(self) -> list[CudaArray]:
        if self._consts is None:
            self._consts = [to_device(c) for c in self._consts_host]
            self._literal_values = [to_device(v, d) for _, v, d in self.literals]
        return self._consts

    def run_device(self, *args) -> list[CudaArray]:
        """Run on device arrays (NumPy arrays are copied over); return device arrays."""
        consts = self._load_consts()
        env: list[Any] = [None] * self.n_slots
        for s, c in zip(self.const_slots, consts):
            env[s] = c
        for (s, _, _), v in zip(self.literals, self._literal_values):
            env[s] = v
        for s, a in zip(self.in_slots, args):
            env[s] = a if type(a) is CudaArray else to_device(a)
        for (runner, ins, outs), frees in zip(self.steps, self.frees):
            results = runner([env[s] for s in ins])
            for s, r in zip(outs, results):
                env[s] = r
            for s in frees:
                env[s] = None
        return [env[s] for s in self.out_slots]

    def __call__(self, *args) -> list:
        """The backend's ``compile`` hook: outputs on the device where the core keeps
        device arrays (``fgrad.core.DEVICE_ARRAYS``), else fresh NumPy arrays."""
        outs = self.run_device(*args)
        if _device_results():
            return outs
        return [np.array(to_host(o)) for o in outs]


def _device_results() -> bool:
    from fgrad import core

    return bool(getattr(core, "DEVICE_ARRAYS", False))


# ---------------------------------------------------------------- control flow


def _bodies():
    cache: dict[int, CudaProgram] = {}

    def compile_body(jaxpr) -> CudaProgram:
        key = id(jaxpr)
        if key not in cache:
            cache[key] = CudaProgram(ClosedJaxpr(jaxpr, []))
        return cache[key]

    return compile_body


def _scan(eqn: Eqn) -> Runner:
    p = eqn.params
    jaxpr, nc, nk = p["jaxpr"], p["num_consts"], p["num_carry"]
    length, reverse = p["length"], p["reverse"]
    y_avals = [v.aval for v in jaxpr.outvars[nk:]]
    body = _bodies()

    def run(ins):
        prog = body(jaxpr)
        consts, carry, xs = ins[:nc], list(ins[nc : nc + nk]), ins[nc + nk :]
        ys = [runtime.empty((length,) + a.shape, a.dtype) for a in y_avals]
        for i in reversed(range(length)) if reverse else range(length):
            outs = prog.run_device(*consts, *carry, *[x.rows(i) for x in xs])
            carry = outs[:nk]
            for buf, y in zip(ys, outs[nk:]):
                runtime.copy_into(buf, i * y.size, y)
        return carry + ys

    return run


def _cond(eqn: Eqn) -> Runner:
    branches = eqn.params["branches"]
    body = _bodies()

    def run(ins):
        i = int(np.clip(int(to_host(ins[0])), 0, len(branches) - 1))
        return body(branches[i]).run_device(*ins[1:])

    return run


def _while(eqn: Eqn) -> Runner:
    p = eqn.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    body = _bodies()

    def run(ins):
        cond, step = body(p["cond_jaxpr"]), body(p["body_jaxpr"])
        cconsts, bconsts, carry = ins[:cn], ins[cn : cn + bn], list(ins[cn + bn :])
        while bool(to_host(cond.run_device(*cconsts, *carry)[0])):
            carry = step.run_device(*bconsts, *carry)
        return carry

    return run


_CONTROL_FLOW: dict[str, Callable[[Eqn], Runner]] = {
    "scan": _scan,
    "cond": _cond,
    "while": _while,
}


def compile(closed: ClosedJaxpr) -> CudaProgram:  # noqa: A001 - the backend hook's name
    """Compile a closed jaxpr for the GPU."""
    runtime.load()
    return CudaProgram(closed)


__all__ = ["CudaProgram", "compile", "host_runner", "lower_eqn"]
