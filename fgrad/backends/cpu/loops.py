"""Loops of the CPU program: scan, while and cond drivers, and jaxpr passes for loops.

Passes (``optimize_loops`` runs them; the compiler calls it on a jaxpr before
partitioning it, and the drivers below on every loop body):

* ``merge_scans`` lets grad-of-scan run the forward loop once: the VJP of ``scan``
  (``fgrad.lax.control_flow._scan_vjp``) binds a second forward scan over the same
  operands whose body is the primal body (the same equations) with extra outputs,
  the per-step residuals. The pass replaces the primal scan by that scan.
* ``hoist_scan_sums`` moves per-step sums out of a scan: the backward scan's
  cotangent of a weight, ``acc + h.T @ dz`` every step, becomes one product over the
  stacked steps after the loop.
* ``pads_to_concatenate``: a sum of zero pads tiling one axis (the VJP of slicing an
  array into pieces, e.g. an LSTM's gates) becomes one ``concatenate``.

``ScanLoop`` runs a scan inside the generated driver: its loop is generated Python
source (preallocated stacked outputs written in place, carries rebound in locals)
around the body's compiled ``Program``; nothing in the source depends on array
sizes, so a new batch size never compiles a new Numba kernel.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from fgrad.core import ClosedJaxpr, Eqn, Jaxpr, Var

# ---------------------------------------------------------------- merging scans


def _same_atoms(a, b) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _merge_map(small: Eqn, big: Eqn) -> list[int] | None:
    """Where each output of scan ``small`` is found among ``big``'s outputs, when
    ``big`` computes a superset of ``small`` (same operands, same body equations)."""
    ps, pb = small.params, big.params
    js, jb = ps["jaxpr"], pb["jaxpr"]
    if not all(ps[k] == pb[k] for k in ("num_consts", "num_carry", "length", "reverse")):
        return None
    if not (
        _same_atoms(small.invars, big.invars) and all(isinstance(v, Var) for v in small.invars)
    ):
        return None
    if not (_same_atoms(js.invars, jb.invars) and _same_atoms(js.eqns, jb.eqns)):
        return None
    nk = ps["num_carry"]
    if not _same_atoms(js.outvars[:nk], jb.outvars[:nk]):
        return None
    where = list(range(nk))
    for v in js.outvars[nk:]:
        j = next((i for i in range(nk, len(jb.outvars)) if jb.outvars[i] is v), None)
        if j is None:
            return None
        where.append(j)
    return where


def merge_scans(jaxpr: Jaxpr) -> Jaxpr:
    """Drop every scan whose results a later scan over the same operands and body
    equations also computes; that scan runs in its place.

    Grad of a scan binds the primal scan and, in its VJP, a residual-recording scan
    sharing the primal body's equations: after this pass the forward runs once.
    """
    eqns = jaxpr.eqns
    scans = [i for i, e in enumerate(eqns) if e.primitive.name == "scan"]
    if len(scans) < 2:
        return jaxpr
    moved: dict[int, int] = {}  # position of the dropped scan -> index of its replacement
    taken: set[int] = set()
    subst: dict[Var, Any] = {}
    for n, i in enumerate(scans):
        if i in taken:
            continue
        for j in scans[n + 1 :]:
            if j in taken:
                continue
            where = _merge_map(eqns[i], eqns[j])
            if where is not None:
                moved[i] = j
                taken.add(j)
                for v, w in zip(eqns[i].outvars, where):
                    subst[v] = eqns[j].outvars[w]
                break
    if not moved:
        return jaxpr

    def sub(v):
        return subst.get(v, v) if isinstance(v, Var) else v

    out: list[Eqn] = []
    for i, e in enumerate(eqns):
        if i in taken:
            continue
        if i in moved:
            e = eqns[moved[i]]
        if any(isinstance(v, Var) and v in subst for v in e.invars):
            e = Eqn(e.primitive, [sub(v) for v in e.invars], e.outvars, e.params, e.source_info)
        out.append(e)
    return Jaxpr(jaxpr.constvars, jaxpr.invars, out, [sub(v) for v in jaxpr.outvars])


# ---------------------------------------------------------------- hoisting carried sums


def _uses(jaxpr: Jaxpr) -> dict[Var, int]:
    n: dict[Var, int] = {}
    for e in jaxpr.eqns:
        for v in e.invars:
            if isinstance(v, Var):
                n[v] = n.get(v, 0) + 1
    for v in jaxpr.outvars:
        if isinstance(v, Var):
            n[v] = n.get(v, 0) + 1
    return n


def _hoistable(scan: Eqn, k: int):
    """For carry ``k`` of ``scan`` updated as ``c + dot_general(p, q)`` (2-D, no batch
    dims; the backward scan's cotangent of a weight, ``h.T @ dz``) or ``c + v``, return
    ``(add_eqn, dot_eqn or None, summand)``; else None."""
    body: Jaxpr = scan.params["jaxpr"]
    nc = scan.params["num_consts"]
    cin, cout = body.invars[nc + k], body.outvars[k]
    if not isinstance(cout, Var) or cin.aval.dtype.kind != "f":
        return None
    uses = _uses(body)
    if uses.get(cin, 0) != 1 or uses.get(cout, 0) != 1:
        return None
    producer = {v: e for e in body.eqns for v in e.outvars}
    add = producer.get(cout)
    if add is None or add.primitive.name != "add" or cin not in add.invars:
        return None
    other = add.invars[1] if add.invars[0] is cin else add.invars[0]
    if not isinstance(other, Var) or other is cin or other.aval != cin.aval:
        return None
    dot = producer.get(other)
    if dot is not None and dot.primitive.name == "dot_general" and uses.get(other) == 1:
        (lc, rc), (lb, rb) = dot.params["contract"], dot.params["batch"]
        x, y = dot.invars
        ok = (
            not lb
            and not rb
            and all(isinstance(a, Var) and a.aval.ndim == 2 for a in (x, y))
            and len(lc) == len(rc) == 1
            and x.aval.dtype == y.aval.dtype == cin.aval.dtype
            and not (set(body.invars[:nc]) & {x, y})
        )
        if ok:
            return add, dot, None
    return add, None, other


def hoist_scan_sums(jaxpr: Jaxpr) -> Jaxpr:
    """Move per-step sums out of scans: a carry updated as ``c + p.T @ q`` becomes one
    matrix product over the stacked steps after the loop (a (T*B, m).T @ (T*B, n)
    product instead of T small ones and T additions); ``c + v`` with ``v`` already
    stacked becomes one reduction. Only when each stacked operand is already an input
    or output of the scan, or no larger than the carry."""
    if not any(e.primitive.name == "scan" for e in jaxpr.eqns):
        return jaxpr
    out_eqns: list[Eqn] = []
    subst: dict[Var, Any] = {}

    def sub(v):
        return subst.get(v, v) if isinstance(v, Var) else v

    for eqn in jaxpr.eqns:
        if any(isinstance(v, Var) and v in subst for v in eqn.invars):
            eqn = Eqn(
                eqn.primitive,
                [sub(v) for v in eqn.invars],
                eqn.outvars,
                eqn.params,
                eqn.source_info,
            )
        if eqn.primitive.name != "scan":
            out_eqns.append(eqn)
            continue
        out_eqns.extend(_hoist_one(eqn, subst))
    return Jaxpr(jaxpr.constvars, jaxpr.invars, out_eqns, [sub(v) for v in jaxpr.outvars])


def _hoist_one(scan: Eqn, subst: dict) -> list[Eqn]:
    from fgrad.core import trace_to_jaxpr

    p = scan.params
    body: Jaxpr = p["jaxpr"]
    nc, nk = p["num_consts"], p["num_carry"]
    x_in = body.invars[nc + nk :]
    ys_out = body.outvars[nk:]
    plans = {}
    for k in range(nk):
        found = _hoistable(scan, k)
        if found is None:
            continue
        add, dot, summand = found
        stacked = [dot.invars[0], dot.invars[1]] if dot is not None else [summand]
        limit = body.invars[nc + k].aval.size
        if all(
            v in x_in or v in ys_out or (dot is not None and v.aval.size <= limit) for v in stacked
        ):
            plans[k] = (add, dot, stacked)
    if not plans:
        return [scan]
    # The new body: without the hoisted carries and their updates; the summands
    # (or the product's operands) become stacked outputs where they are not yet.
    dropped = {id(e) for k, (add, dot, _) in plans.items() for e in (add, dot) if e is not None}
    keep = [k for k in range(nk) if k not in plans]
    new_ys: list[Var] = []
    for _, _, stacked in plans.values():
        for v in stacked:
            if v not in x_in and v not in ys_out and v not in new_ys:
                new_ys.append(v)
    new_body = Jaxpr(
        [],
        body.invars[:nc] + [body.invars[nc + k] for k in keep] + list(x_in),
        [e for e in body.eqns if id(e) not in dropped],
        [body.outvars[k] for k in keep] + list(ys_out) + new_ys,
    )
    consts, init, xs = scan.invars[:nc], scan.invars[nc : nc + nk], scan.invars[nc + nk :]
    new_outvars = (
        [scan.outvars[k] for k in keep]
        + list(scan.outvars[nk:])
        + [Var(type(v.aval)((p["length"],) + v.aval.shape, v.aval.dtype)) for v in new_ys]
    )
    new_scan = Eqn(
        scan.primitive,
        list(consts) + [init[k] for k in keep] + list(xs),
        new_outvars,
        dict(p, jaxpr=new_body, num_carry=len(keep)),
        scan.source_info,
    )
    result = [new_scan]

    def outer(v):  # the stacked outer value of a body var
        if v in x_in:
            return xs[x_in.index(v)]
        if v in ys_out:
            return scan.outvars[nk + ys_out.index(v)]
        return new_outvars[len(keep) + len(ys_out) + new_ys.index(v)]

    for k, (_, dot, stacked) in plans.items():
        operands = [init[k]] + [outer(v) for v in stacked]
        contract = dot.params["contract"] if dot is not None else None
        post = _post_sum_jaxpr(trace_to_jaxpr, [v.aval for v in operands], contract)
        env = dict(zip(post.invars, operands))
        for e in post.eqns:
            fresh = [Var(v.aval) for v in e.outvars]
            result.append(
                Eqn(
                    e.primitive,
                    [env.get(v, v) if isinstance(v, Var) else v for v in e.invars],
                    fresh,
                    e.params,
                    scan.source_info,
                )
            )
            env.update(zip(e.outvars, fresh))
        final = post.outvars[0]
        subst[scan.outvars[k]] = env.get(final, final)
    return result


def _post_sum_jaxpr(trace_to_jaxpr, avals, contract) -> Jaxpr:
    """``init + sum over steps``: one product over the stacked steps, or a reduction."""
    from fgrad import lax

    def flat(init, *stacked):
        if contract is None:
            return [lax.add(init, lax.reduce_sum(stacked[0], (0,)))]
        mats = []
        for s, c in zip(stacked, (contract[0][0], contract[1][0])):
            t, m, n = s.shape
            if c == 1:  # bring the contracted axis next to the step axis
                s, m, n = lax.transpose(s, (0, 2, 1)), n, m
            mats.append(lax.reshape(s, (t * m, n)))
        dims = (((0,), (0,)), ((), ()))
        return [lax.add(init, lax.dot_general(mats[0], mats[1], dims))]

    jaxpr, consts, _, _ = trace_to_jaxpr(flat, avals, name="scan_sum")
    assert not consts
    return jaxpr


# ---------------------------------------------------------------- sums of pads


def _zero_literal(v) -> bool:
    from fgrad.core import Literal

    return isinstance(v, Literal) and np.asarray(v.val).shape == () and np.asarray(v.val) == 0


def _pad_piece(eqn: Eqn):
    """``(axis, start, operand)`` for a zero ``pad`` along one axis only, else None."""
    if eqn.primitive.name != "pad" or not _zero_literal(eqn.invars[1]):
        return None
    config = eqn.params["padding_config"]
    axes = [d for d, (lo, hi, i) in enumerate(config) if (lo, hi, i) != (0, 0, 0)]
    if len(axes) != 1 or config[axes[0]][2] != 0 or min(config[axes[0]][:2]) < 0:
        return None
    return axes[0], config[axes[0]][0], eqn.invars[0]


def pads_to_concatenate(jaxpr: Jaxpr) -> Jaxpr:
    """``pad(a) + pad(b) + ...`` whose zero pads tile one axis exactly becomes one
    ``concatenate``: the backward pass of slicing an array into pieces (an LSTM's gates)
    is such a sum, which costs one call instead of a pad and an add per piece."""
    from fgrad import lax
    from fgrad.core import trace_to_jaxpr

    if not any(e.primitive.name == "pad" for e in jaxpr.eqns):
        return jaxpr
    uses = _uses(jaxpr)
    producer = {v: e for e in jaxpr.eqns for v in e.outvars}

    def collect(v, top: bool, inner: list[Eqn]):
        """The pad pieces summed into ``v`` through adds, or None."""
        e = producer.get(v) if isinstance(v, Var) else None
        if e is None or (not top and uses.get(v) != 1):
            return None
        if e.primitive.name == "add":
            left = collect(e.invars[0], False, inner)
            right = collect(e.invars[1], False, inner) if left is not None else None
            if right is None:
                return None
            inner.append(e)
            return left + right
        piece = None if top else _pad_piece(e)
        if piece is not None:
            inner.append(e)
            return [piece]
        return None

    replace: dict[int, Eqn] = {}
    dropped: set[int] = set()
    for eqn in reversed(jaxpr.eqns):  # the outermost add of a chain first
        if eqn.primitive.name != "add" or id(eqn) in dropped:
            continue
        inner: list[Eqn] = []
        pieces = collect(eqn.outvars[0], True, inner)
        if not pieces or len(pieces) < 2:
            continue
        axis = pieces[0][0]
        out_aval = eqn.outvars[0].aval
        pieces.sort(key=lambda t: t[1])
        pos, ok = 0, all(p[0] == axis for p in pieces)
        for _, start, x in pieces:
            ok = ok and start == pos and x.aval.dtype == out_aval.dtype
            pos = start + x.aval.shape[axis]
        if not (ok and pos == out_aval.shape[axis]):
            continue
        xs = [x for _, _, x in pieces]
        traced, consts, _, _ = trace_to_jaxpr(
            lambda *a, axis=axis: [lax.concatenate(list(a), axis)],
            [x.aval for x in xs],
            name="concat",
        )
        if consts or len(traced.eqns) != 1:
            continue
        cat = traced.eqns[0]
        replace[id(eqn)] = Eqn(cat.primitive, xs, eqn.outvars, cat.params, eqn.source_info)
        dropped.update(id(e) for e in inner if e is not eqn)
    if not replace:
        return jaxpr
    eqns = [replace.get(id(e), e) for e in jaxpr.eqns if id(e) not in dropped]
    return Jaxpr(jaxpr.constvars, jaxpr.invars, eqns, jaxpr.outvars)


def optimize_loops(jaxpr: Jaxpr) -> Jaxpr:
    """The loop passes, for the compiler to run before partitioning a jaxpr."""
    return pads_to_concatenate(hoist_scan_sums(merge_scans(jaxpr)))


# ---------------------------------------------------------------- loop drivers


def _exec(source: str, g: dict[str, Any], name: str):
    exec(builtins.compile(source, f"<fgrad.jit {name}>", "exec"), g)  # noqa: S102
    return g[name]


def _body(program) -> tuple[Any, bool]:
    """The program's raw driver function, and whether it needs ``np.errstate``."""
    fn = getattr(program, "_fn", None)
    if fn is None:
        return program, False
    return fn, bool(getattr(program, "calls_numpy", True))


def _unalias(outs, ins) -> list:
    """``outs``, with a copy of any that may share memory with one of ``ins``.

    Loop bodies and branches run as ``Program(loop_body=True)``, which returns inputs it
    passes through as they are (inside a loop they go straight back in); what leaves
    the loop must not be the caller's buffer or a view of it.
    """
    res = []
    for o in outs:
        if isinstance(o, np.ndarray) and any(
            isinstance(a, np.ndarray) and np.may_share_memory(o, a) for a in ins
        ):
            o = o.copy()
        res.append(o)
    return res


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _tuple(names: list[str]) -> str:
    return ", ".join(names) + ("," if len(names) == 1 else "")


class ScanLoop:
    """One ``scan`` equation as a generated Python loop around its body's Program.

    The loop preallocates the stacked outputs and writes ``ys[i]`` in place; carries
    live in local variables. Only the outputs' shapes (globals of the generated
    source) depend on sizes; the body's Numba kernels never do.
    """

    def __init__(self, eqn: Eqn, make_program):
        p = eqn.params
        jaxpr: Jaxpr = p["jaxpr"]
        nc, nk, length = p["num_consts"], p["num_carry"], int(p["length"])
        self.body = make_program(ClosedJaxpr(optimize_loops(jaxpr), []))
        fn, numpy_errs = _body(self.body)
        nx = len(jaxpr.invars) - nc - nk
        ny = len(jaxpr.outvars) - nk
        g: dict[str, Any] = {"np": np, "_body": fn, "_unalias": _unalias}
        a = _names("a", nc + nk + nx)
        consts, init, xs = a[:nc], a[nc : nc + nk], a[nc + nk :]
        k, t, y = _names("k", nk), _names("t", ny), _names("y", ny)
        lines = [f"def scan_loop({', '.join(a)}):"]
        for yi, v in zip(y, jaxpr.outvars[nk:]):
            g[f"_shape_{yi}"] = (length,) + tuple(v.aval.shape)
            g[f"_dtype_{yi}"] = v.aval.dtype
            lines.append(f"    {yi} = np.empty(_shape_{yi}, _dtype_{yi})")
        lines += [f"    {kk} = {ii}" for kk, ii in zip(k, init)]
        steps = f"range({length - 1}, -1, -1)" if p["reverse"] else f"range({length})"
        x_at = [
            f"{x}[i, ...]" if v.aval.ndim == 0 else f"{x}[i]"
            for x, v in zip(xs, jaxpr.invars[nc + nk :])
        ]
        call = f"_body({', '.join(consts + k + x_at)})"
        pad = "    "
        if numpy_errs:  # the body runs NumPy kernels: overflow is a result, not a warning
            lines.append("    with np.errstate(all='ignore'):")
            pad = "        "
        lines.append(f"{pad}for i in {steps}:")
        if k or t:
            lines.append(f"{pad}    {_tuple(k + t)} = {call}")
        else:
            lines.append(f"{pad}    {call}")
        lines += [f"{pad}    {yy}[i] = {tt}" for yy, tt in zip(y, t)]
        # Never hand an input buffer back as a final carry (a loop that did not run, or
        # a body passing a const or an x through: bodies do not copy what they return).
        if k:
            lines.append(f"    {_tuple(k)} = _unalias([{', '.join(k)}], ({', '.join(a)},))")
        lines.append(f"    return [{', '.join(k + y)}]")
        self.source = "\n".join(lines) + "\n"
        self._fn = _exec(self.source, g, "scan_loop")

    def __call__(self, *args):
        return self._fn(*args)


class WhileLoop:
    """One ``while`` equation as a generated loop around its cond and body Programs."""

    def __init__(self, eqn: Eqn, make_program):
        p = eqn.params
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        self.cond = make_program(ClosedJaxpr(optimize_loops(p["cond_jaxpr"]), []))
        self.body = make_program(ClosedJaxpr(optimize_loops(p["body_jaxpr"]), []))
        cfn, cerr = _body(self.cond)
        bfn, berr = _body(self.body)
        nk = len(p["body_jaxpr"].outvars)
        a = _names("a", cn + bn + nk)
        cc, bc, init = a[:cn], a[cn : cn + bn], a[cn + bn :]
        k = _names("k", nk)
        g: dict[str, Any] = {"np": np, "_cond": cfn, "_body": bfn, "_unalias": _unalias}
        lines = [f"def while_loop({', '.join(a)}):"]
        lines += [f"    {kk} = {ii}" for kk, ii in zip(k, init)]
        pad = "    "
        if cerr or berr:
            lines.append("    with np.errstate(all='ignore'):")
            pad = "        "
        lines.append(f"{pad}while _cond({', '.join(cc + k)})[0]:")
        lines.append(f"{pad}    {_tuple(k)} = _body({', '.join(bc + k)})")
        lines.append(f"    return _unalias([{', '.join(k)}], ({', '.join(a)},))")
        self.source = "\n".join(lines) + "\n"
        self._fn = _exec(self.source, g, "while_loop")

    def __call__(self, *args):
        return self._fn(*args)


class CondSwitch:
    """One ``cond`` equation: every branch compiled once, the chosen one runs."""

    def __init__(self, eqn: Eqn, make_program):
        self.branches = [
            make_program(ClosedJaxpr(optimize_loops(br), [])) for br in eqn.params["branches"]
        ]
        self._last = len(self.branches) - 1

    def __call__(self, index, *ops):
        i = int(index)
        return _unalias(self.branches[0 if i < 0 else min(i, self._last)](*ops), ops)


def loop_runner(eqn: Eqn, make_program):
    """The driver callable for a control-flow equation (scan, while, cond)."""
    kind = {"scan": ScanLoop, "while": WhileLoop, "cond": CondSwitch}[eqn.primitive.name]
    return kind(eqn, make_program)
