"""Control flow as higher-order primitives: scan, cond/switch, while_loop, fori_loop.

Each primitive holds the traced body as a sub-jaxpr (closure-converted: values the
body closes over become explicit leading operands), so it prints nested in
``make_jaxpr``, differentiates by rules, and compiles as a real loop in the CPU
program. The rules are written with the public functions themselves:

* scan's JVP is a scan of the body's JVP; its VJP is backpropagation through time:
  a forward scan records each step's residuals (what the body's backward pass reads),
  then a reverse scan runs the body's backward pass step by step on them. Under
  ``jit`` the recording scan replaces the primal one (``loops.merge_scans``).
* cond's JVP/VJP are conds over the branches' JVPs/VJPs.
* while_loop supports forward mode; reverse mode needs a static trip count, so it is
  a clear error that points to ``scan``/``fori_loop``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fgrad import tree as tree_util
from fgrad.core import (
    ClosedJaxpr,
    Jaxpr,
    Primitive,
    ShapedArray,
    Var,
    eval_jaxpr,
    get_aval,
    is_float_dtype,
    trace_to_jaxpr,
    user_frame,
)
from fgrad.lax.utils import asarray_operand


class CarryTypeError(TypeError):
    """A loop body returned a carry whose structure, shape or dtype differs from its input."""


# ---------------------------------------------------------------- tracing helpers


def trace_closure(fun: Callable, in_tree, in_avals: Sequence[ShapedArray], name: str):
    """Trace ``fun`` (taking the unflattened ``in_tree``) into a closed-over-free jaxpr.

    Returns ``(jaxpr, consts, out_tree)``; the jaxpr's invars are ``consts + inputs``.
    """
    store = {}

    def flat(*args):
        out = fun(*tree_util.tree_unflatten(in_tree, list(args)))
        leaves, out_tree = tree_util.tree_flatten(out)
        store["tree"] = out_tree
        return [asarray_operand(o) for o in leaves]

    jaxpr, consts, _, _ = trace_to_jaxpr(flat, in_avals, name=name)
    converted = Jaxpr([], list(jaxpr.constvars) + list(jaxpr.invars), jaxpr.eqns, jaxpr.outvars)
    return converted, list(consts), store["tree"]


def _avals(leaves) -> list[ShapedArray]:
    return [get_aval(x) for x in leaves]


def _run_jaxpr(jaxpr: Jaxpr, *args):
    return eval_jaxpr(jaxpr, [], *args)


def _check_carry(name: str, tree_in, avals_in, tree_out, avals_out):
    if tree_in != tree_out:
        raise CarryTypeError(
            f"{name}: the body must return a carry with the same structure as its input; "
            f"got {tree_out} for input {tree_in} (at {user_frame()})"
        )
    dummy = tree_util.tree_unflatten(tree_in, list(range(len(avals_in))))
    paths = [tree_util.keystr(p) for p, _ in tree_util.tree_flatten_with_path(dummy)[0]]
    for path, a, b in zip(paths, avals_in, avals_out):
        if a != b:
            raise CarryTypeError(
                f"{name}: the carry {path or '(root)'} enters the body as {a.str_short()} but "
                f"leaves it as {b.str_short()}; a loop carry must keep its shape and dtype "
                f"(cast with .astype or fix the shapes) (at {user_frame()})"
            )


# ---------------------------------------------------------------- scan

scan_p = Primitive("scan", multiple_results=True)


@scan_p.def_shape
def _scan_shape(*avals, jaxpr, num_consts, num_carry, length, reverse):
    body_in = [v.aval for v in jaxpr.invars]
    if len(avals) != len(body_in):
        raise TypeError(f"scan body takes {len(body_in)} operands, got {len(avals)}")
    xs = avals[num_consts + num_carry :]
    for a, b in zip(avals[: num_consts + num_carry], body_in):
        if a != b:
            raise TypeError(
                f"scan operand {a.str_short()} does not match body input {b.str_short()}"
            )
    for a, b in zip(xs, body_in[num_consts + num_carry :]):
        if a.shape[:1] != (length,) or ShapedArray(a.shape[1:], a.dtype) != b:
            raise TypeError(f"scanned input {a.str_short()} does not match length {length}")
    outs = [v.aval for v in jaxpr.outvars]
    carry = outs[:num_carry]
    ys = [ShapedArray((length,) + a.shape, a.dtype) for a in outs[num_carry:]]
    return carry + ys


def run_scan(args, params, compile_body):
    """Execute a scan on NumPy arrays; ``compile_body`` turns the body into a callable."""
    jaxpr, nc, nk = params["jaxpr"], params["num_consts"], params["num_carry"]
    length, reverse = params["length"], params["reverse"]
    body = compile_body(ClosedJaxpr(jaxpr, []))
    consts = list(args[:nc])
    carry = list(args[nc : nc + nk])
    xs = args[nc + nk :]
    y_avals = [v.aval for v in jaxpr.outvars[nk:]]
    ys = [np.empty((length,) + a.shape, a.dtype) for a in y_avals]
    for i in reversed(range(length)) if reverse else range(length):
        outs = body(*consts, *carry, *[x[i, ...] for x in xs])  # 0-d arrays, not scalars
        carry = list(outs[:nk])
        for buf, y in zip(ys, outs[nk:]):
            buf[i] = y
    return carry + ys


def _reference_compile(closed):
    from fgrad.backends import reference

    return reference.compile(closed)


scan_p.def_impl(lambda *args, **params: run_scan(args, params, _reference_compile))


def _split3(seq, nc, nk):
    return list(seq[:nc]), list(seq[nc : nc + nk]), list(seq[nc + nk :])


@scan_p.def_jvp
def _scan_jvp(ts, *args, out, jaxpr, num_consts, num_carry, length, reverse):
    from fgrad.ad import jvp

    nc, nk = num_consts, num_carry
    tangents = [(_zeros_like(a) if t is None else t) for t, a in zip(ts, args)]
    consts, init, xs = _split3(args, nc, nk)
    tconsts, tinit, txs = _split3(tangents, nc, nk)

    def body(carry, x):
        (c, tc), (k, tk), (xv, tx) = (carry[0], carry[1]), (carry[2], carry[3]), x
        outs, touts = jvp(lambda *a: _run_jaxpr(jaxpr, *a), (*c, *k, *xv), (*tc, *tk, *tx))
        return (c, tc, list(outs[:nk]), list(touts[:nk])), (list(outs[nk:]), list(touts[nk:]))

    (_, _, _, tcarry), (_, tys) = scan(
        body, (consts, tconsts, init, tinit), (xs, txs), length=length, reverse=reverse
    )
    return list(tcarry) + list(tys)


@scan_p.def_vjp
def _scan_vjp(cts, *args, out, jaxpr, num_consts, num_carry, length, reverse):
    """Backpropagation through time, without recomputing the steps' internals.

    A forward scan runs the body and, besides its own outputs, stacks the *residuals*
    of every step: the values the body's backward pass reads (gate activations, the
    carry entering the step, ...), the way JAX's partial evaluation of scan does. Its
    body shares the primal body's equations (the same list), so ``merge_scans`` (see
    ``fgrad.backends.cpu.loops``) can fuse it with the primal scan under ``jit``: the
    forward then runs once. A reverse scan applies the body's backward pass
    (``ad.backward_pass`` over the recorded residuals) step by step.
    """
    nc, nk = num_consts, num_carry
    consts, init, xs = _split3(args, nc, nk)
    ct_carry, ct_ys = list(cts[:nk]), list(cts[nk:])
    const_in, _, x_in = _split3(jaxpr.invars, nc, nk)
    every, needed = _body_residuals(jaxpr)
    known = set(const_in) | set(x_in)
    recorded = [v for v in needed if v not in known]
    # Values the backward pass passes to rules that do not read them: typed stand-ins
    # (dead code once traced).
    unread = [v for v in every if v not in known and v not in set(needed)]
    record_jaxpr = Jaxpr([], jaxpr.invars, jaxpr.eqns, list(jaxpr.outvars) + recorded)
    fwd = scan_p.bind(
        *args,
        jaxpr=record_jaxpr,
        num_consts=nc,
        num_carry=nk,
        length=length,
        reverse=reverse,
    )
    stacked = list(fwd[len(jaxpr.outvars) :])
    avals = [v.aval for v in jaxpr.invars]

    def back(acc, step):
        from fgrad.ad import backward_pass

        ct_consts, ct_k = acc
        res_t, x_t, ct_y_t = step
        values = dict(zip(const_in, consts))
        values.update(zip(x_in, x_t))
        values.update(zip(recorded, res_t))
        values.update((v, _zeros(v.aval)) for v in unread)
        d = backward_pass(jaxpr, values, list(ct_k) + list(ct_y_t))
        d = [_zeros(a) if c is None else c for c, a in zip(d, avals)]
        d_c, d_k, d_x = _split3(d, nc, nk)
        return ([a + b for a, b in zip(ct_consts, d_c)], list(d_k)), list(d_x)

    zero_consts = [_zeros_like(c) for c in consts]
    (ct_consts, ct_init), ct_xs = scan(
        back, (zero_consts, ct_carry), (stacked, xs, ct_ys), length=length, reverse=not reverse
    )
    result = list(ct_consts) + list(ct_init) + list(ct_xs)
    return tuple(r if is_float_dtype(a.dtype) else None for r, a in zip(result, args))


def _body_residuals(jaxpr: Jaxpr) -> tuple[list[Var], list[Var]]:
    """All vars the body's backward pass may touch, and those it really reads."""
    hit = _RESIDUALS.get(id(jaxpr))
    if hit is not None and hit[0] is jaxpr:
        return hit[1], hit[2]
    from fgrad.ad import needed_residuals, residual_vars

    every, needed = residual_vars(jaxpr), needed_residuals(jaxpr)
    if len(_RESIDUALS) > 256:
        _RESIDUALS.clear()
    _RESIDUALS[id(jaxpr)] = (jaxpr, every, needed)
    return every, needed


_RESIDUALS: dict[int, tuple[Jaxpr, list[Var], list[Var]]] = {}


def _zeros(aval: ShapedArray):
    from fgrad.lax.shapes import full

    return full(aval.shape, 0, aval.dtype)


def _zeros_like(x):
    from fgrad.lax.shapes import zeros_like_array

    return zeros_like_array(x)


def scan(
    f: Callable, init, xs=None, length: int | None = None, reverse: bool = False, unroll: int = 1
):
    """Loop ``carry, y = f(carry, x)`` over the leading axis of ``xs``, stacking the ys.

    As ``jax.lax.scan``: ``init`` and the carry returned by ``f`` must have the same
    structure, shapes and dtypes; ``xs`` (a pytree, or None with ``length``) is sliced
    along axis 0; returns ``(final_carry, stacked_ys)``. The body is traced once, so
    the IR does not grow with ``length``.

    Example:
        >>> import fgrad.numpy as fnp
        >>> from fgrad import lax
        >>> total, partial = lax.scan(lambda c, x: (c + x, c + x), 0.0, fnp.arange(4.0))
        >>> total.item(), partial.tolist()
        (6.0, [0.0, 1.0, 3.0, 6.0])
    """
    del unroll
    init_leaves, init_tree = tree_util.tree_flatten(init)
    init_leaves = [asarray_operand(x) for x in init_leaves]
    xs_leaves, xs_tree = tree_util.tree_flatten(xs)
    xs_leaves = [asarray_operand(x) for x in xs_leaves]
    lengths = {int(x.shape[0]) for x in xs_leaves if x.shape}
    if any(not x.shape for x in xs_leaves):
        raise TypeError(f"scan: scanned inputs must have a leading axis (at {user_frame()})")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) != 1:
        raise TypeError(
            f"scan: could not determine one length: scanned leading sizes and length= give "
            f"{sorted(lengths) or 'nothing'} (at {user_frame()})"
        )
    n = lengths.pop()
    carry_avals = _avals(init_leaves)
    x_avals = [ShapedArray(x.shape[1:], x.dtype) for x in xs_leaves]
    in_tree = tree_util.tree_structure(
        (
            tree_util.tree_unflatten(init_tree, init_leaves),
            tree_util.tree_unflatten(xs_tree, xs_leaves),
        )
    )
    jaxpr, consts, out_tree = trace_closure(f, in_tree, carry_avals + x_avals, "scan")
    out_avals = [v.aval for v in jaxpr.outvars]
    # The body must return (carry, y).
    children = out_tree.children()
    if out_tree.node_data()[0] not in (tuple, list) or len(children) != 2:
        raise CarryTypeError(f"scan: the body must return a pair (carry, y) (at {user_frame()})")
    carry_tree, y_tree = children
    nk = carry_tree.num_leaves
    _check_carry("scan", init_tree, carry_avals, carry_tree, out_avals[:nk])
    outs = scan_p.bind(
        *[asarray_operand(c) for c in consts],
        *init_leaves,
        *xs_leaves,
        jaxpr=jaxpr,
        num_consts=len(consts),
        num_carry=nk,
        length=n,
        reverse=bool(reverse),
    )
    return (
        tree_util.tree_unflatten(carry_tree, outs[:nk]),
        tree_util.tree_unflatten(y_tree, outs[nk:]),
    )


# ---------------------------------------------------------------- cond / switch

cond_p = Primitive("cond", multiple_results=True)


@cond_p.def_shape
def _cond_shape(index, *ops, branches):
    if index.shape != () or not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"the branch index must be an integer scalar, got {index.str_short()}")
    return [v.aval for v in branches[0].outvars]


def run_cond(args, params, compile_body):
    branches = params["branches"]
    i = int(np.clip(int(args[0]), 0, len(branches) - 1))
    return list(compile_body(ClosedJaxpr(branches[i], []))(*args[1:]))


cond_p.def_impl(lambda *args, **params: run_cond(args, params, _reference_compile))


@cond_p.def_jvp
def _cond_jvp(ts, index, *ops, out, branches):
    from fgrad.ad import jvp

    tops = [_zeros_like(o) if t is None else t for t, o in zip(ts[1:], ops)]

    def make(br):
        def branch(ops, tops):
            return list(jvp(lambda *a: _run_jaxpr(br, *a), tuple(ops), tuple(tops))[1])

        return branch

    return switch(index, [make(br) for br in branches], list(ops), tops)


@cond_p.def_vjp
def _cond_vjp(cts, index, *ops, out, branches):
    from fgrad.ad import vjp

    def make(br):
        def branch(ops, cts):
            _, f_vjp = vjp(lambda *a: _run_jaxpr(br, *a), *ops)
            return list(f_vjp(list(cts)))

        return branch

    res = switch(index, [make(br) for br in branches], list(ops), list(cts))
    return (None,) + tuple(r if is_float_dtype(o.dtype) else None for r, o in zip(res, ops))


def switch(index, branches: Sequence[Callable], *operands):
    """Apply ``branches[index](*operands)``; the index is clamped to the valid range.

    All branches must return the same structure, shapes and dtypes. Under ``jit`` only
    the chosen branch runs.

    Example:
        >>> from fgrad import lax
        >>> lax.switch(1, [lambda x: x + 1.0, lambda x: x * 10.0], 2.0).item()
        20.0
    """
    if not branches:
        raise ValueError("switch: needs at least one branch")
    op_leaves, op_tree = tree_util.tree_flatten(operands)
    op_leaves = [asarray_operand(x) for x in op_leaves]
    avals = _avals(op_leaves)
    traced = [trace_closure(b, op_tree, avals, "cond") for b in branches]
    out_tree = traced[0][2]
    out_avals = [v.aval for v in traced[0][0].outvars]
    for i, (jx, _, tr) in enumerate(traced[1:], 1):
        if tr != out_tree or [v.aval for v in jx.outvars] != out_avals:
            shown = ", ".join(a.str_short() for a in out_avals)
            got = ", ".join(v.aval.str_short() for v in jx.outvars)
            raise TypeError(
                f"cond/switch: branch {i} returns {tr} ({got}) but branch 0 returns "
                f"{out_tree} ({shown}); all branches must return the same types "
                f"(at {user_frame()})"
            )
    # Each branch receives every branch's consts and ignores the others'.
    all_consts = [c for _, consts, _ in traced for c in consts]
    jaxprs, start = [], 0
    for jx, consts, _ in traced:
        n = len(consts)
        pre = [Var(get_aval(c)) for c in all_consts[:start]]
        post = [Var(get_aval(c)) for c in all_consts[start + n :]]
        jaxprs.append(Jaxpr([], pre + jx.invars[:n] + post + jx.invars[n:], jx.eqns, jx.outvars))
        start += n
    index = asarray_operand(index)
    if index.dtype != np.int32:
        from fgrad.lax.elementwise import convert_element_type

        index = convert_element_type(index, np.int32)
    outs = cond_p.bind(
        index, *[asarray_operand(c) for c in all_consts], *op_leaves, branches=tuple(jaxprs)
    )
    return tree_util.tree_unflatten(out_tree, outs)


def cond(pred, true_fun: Callable, false_fun: Callable, *operands):
    """``true_fun(*operands) if pred else false_fun(*operands)``, traceable under jit.

    Example:
        >>> from fgrad import lax
        >>> lax.cond(True, lambda x: x * 2.0, lambda x: x, 3.0).item()
        6.0
    """
    pred = asarray_operand(pred)
    if pred.shape != ():
        raise TypeError(f"cond: the predicate must be a scalar, got shape {pred.shape}")
    from fgrad.lax.elementwise import convert_element_type, ne

    if pred.dtype != np.bool_:
        pred = ne(pred, asarray_operand(0, pred.dtype))
    index = convert_element_type(pred, np.int32)
    return switch(index, [false_fun, true_fun], *operands)


# ---------------------------------------------------------------- while_loop

while_p = Primitive("while", multiple_results=True)


@while_p.def_shape
def _while_shape(*avals, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    return [v.aval for v in body_jaxpr.outvars]


def run_while(args, params, compile_body):
    cn, bn = params["cond_nconsts"], params["body_nconsts"]
    cond_fn = compile_body(ClosedJaxpr(params["cond_jaxpr"], []))
    body_fn = compile_body(ClosedJaxpr(params["body_jaxpr"], []))
    cconsts, bconsts, carry = args[:cn], args[cn : cn + bn], list(args[cn + bn :])
    while bool(cond_fn(*cconsts, *carry)[0]):
        carry = list(body_fn(*bconsts, *carry))
    return carry


while_p.def_impl(lambda *args, **params: run_while(args, params, _reference_compile))


@while_p.def_jvp
def _while_jvp(ts, *args, out, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    from fgrad.ad import jvp

    cn, bn = cond_nconsts, body_nconsts
    cconsts, bconsts, init = args[:cn], args[cn : cn + bn], list(args[cn + bn :])
    tb = [_zeros_like(a) if t is None else t for t, a in zip(ts[cn : cn + bn], bconsts)]
    tinit = [_zeros_like(a) if t is None else t for t, a in zip(ts[cn + bn :], init)]

    def cond_fun(state):
        return _run_jaxpr(cond_jaxpr, *cconsts, *state[0])[0]

    def body_fun(state):
        k, tk = state
        outs, touts = jvp(lambda *a: _run_jaxpr(body_jaxpr, *a), (*bconsts, *k), (*tb, *tk))
        return list(outs), list(touts)

    _, tout = while_loop(cond_fun, body_fun, (init, tinit))
    return list(tout)


@while_p.def_vjp
def _while_vjp(cts, *args, out, **params):
    raise TypeError(
        "Reverse-mode differentiation does not work for lax.while_loop: its trip count is "
        "only known at run time, so the steps to differentiate are not recorded. Use "
        "lax.scan, or lax.fori_loop with static (Python int) bounds, which is a scan."
    )


def while_loop(cond_fun: Callable, body_fun: Callable, init_val):
    """``while cond_fun(val): val = body_fun(val)``, traceable under jit.

    Forward-mode differentiable; reverse mode raises (use scan / fori_loop with static
    bounds).

    Example:
        >>> from fgrad import lax
        >>> lax.while_loop(lambda v: v < 10, lambda v: v * 2, 1).item()
        16
    """
    leaves, tree = tree_util.tree_flatten(init_val)
    leaves = [asarray_operand(x) for x in leaves]
    avals = _avals(leaves)
    carry_tree = tree_util.tree_structure(tree_util.tree_unflatten(tree, leaves))
    cj, cconsts, ctree = trace_closure(
        lambda v: cond_fun(v),
        tree_util.tree_structure((tree_util.tree_unflatten(tree, leaves),)),
        avals,
        "while_loop",
    )
    cond_out = [v.aval for v in cj.outvars]
    if len(cond_out) != 1 or cond_out[0].shape != () or cond_out[0].dtype != np.bool_:
        shown = ", ".join(a.str_short() for a in cond_out)
        raise TypeError(
            f"while_loop: cond_fun must return a bool scalar, got {shown} (at {user_frame()})"
        )
    bj, bconsts, btree = trace_closure(
        lambda v: body_fun(v),
        tree_util.tree_structure((tree_util.tree_unflatten(tree, leaves),)),
        avals,
        "while_loop",
    )
    _check_carry("while_loop", carry_tree, avals, btree, [v.aval for v in bj.outvars])
    outs = while_p.bind(
        *[asarray_operand(c) for c in cconsts],
        *[asarray_operand(c) for c in bconsts],
        *leaves,
        cond_jaxpr=cj,
        body_jaxpr=bj,
        cond_nconsts=len(cconsts),
        body_nconsts=len(bconsts),
    )
    return tree_util.tree_unflatten(tree, outs)


def fori_loop(lower, upper, body_fun: Callable, init_val):
    """``for i in range(lower, upper): val = body_fun(i, val)``.

    With Python-int (static) bounds this is a ``scan``, so it is differentiable in
    both modes; with traced bounds it is a ``while_loop`` (forward mode only).

    Example:
        >>> from fgrad import lax
        >>> lax.fori_loop(0, 4, lambda i, v: v + i, 0).item()
        6
    """
    static = all(
        isinstance(b, int | np.integer) and not isinstance(b, bool) for b in (lower, upper)
    )
    if static:
        lo, hi = int(lower), int(upper)

        def step(carry, _):
            i, v = carry
            return (i + 1, body_fun(i, v)), None

        (_, out), _ = scan(
            step, (asarray_operand(lo, np.int32), init_val), None, length=max(hi - lo, 0)
        )
        return out
    lower, upper = asarray_operand(lower), asarray_operand(upper)

    def cond_fun(c):
        return c[0] < c[1]

    def body(c):
        i, hi, v = c
        return (i + 1, hi, body_fun(i, v))

    _, _, out = while_loop(cond_fun, body, (lower, upper, init_val))
    return out


def map(f: Callable, xs):  # noqa: A001 - jax.lax.map
    """Apply ``f`` to each slice of ``xs`` along axis 0 (a scan without a carry)."""
    _, ys = scan(lambda c, x: (c, f(x)), (), xs)
    return ys


# ---------------------------------------------------------------- batching rules
# Each maps the body with vmap (no loop over the batch). Batched loop carries stay
# batched at axis 0; scanned inputs carry their batch at axis 1 (axis 0 is time).


def _body_vmap(jaxpr: Jaxpr, in_axes, size: int):
    from fgrad.batching import vmap

    return vmap(
        lambda *a: _run_jaxpr(jaxpr, *a), in_axes=tuple(in_axes), out_axes=0, axis_size=size
    )


def _front_or_none(x, d):
    from fgrad.lax.batch_util import moveaxis

    return (x, None) if d is None else (moveaxis(x, d, 0), 0)


@scan_p.def_batch
def _scan_batch(args, dims, *, jaxpr, num_consts, num_carry, length, reverse):
    from fgrad.lax.batch_util import batch_size, bdim_at, moveaxis

    size = batch_size(args, dims)
    nc, nk = num_consts, num_carry
    consts = [_front_or_none(x, d) for x, d in zip(args[:nc], dims[:nc])]
    init = [bdim_at(x, d, size, 0) for x, d in zip(args[nc : nc + nk], dims[nc : nc + nk])]
    xs = [
        (x, None) if d is None else (moveaxis(x, d, 1), 0)
        for x, d in zip(args[nc + nk :], dims[nc + nk :])
    ]
    body = _body_vmap(jaxpr, [d for _, d in consts] + [0] * nk + [d for _, d in xs], size)
    const_vals = [c for c, _ in consts]

    def step(carry, x):
        outs = body(*const_vals, *carry, *x)
        return list(outs[:nk]), list(outs[nk:])

    carry, ys = scan(step, init, [x for x, _ in xs], length=length, reverse=reverse)
    return list(carry) + list(ys), [0] * nk + [1] * len(ys)


@cond_p.def_batch
def _cond_batch(args, dims, *, branches):
    from fgrad.lax.batch_util import batch_size, moveaxis
    from fgrad.lax.elementwise import select_n
    from fgrad.lax.shapes import broadcast_in_dim

    size = batch_size(args, dims)
    ops = [_front_or_none(x, d) for x, d in zip(args[1:], dims[1:])]
    op_vals, op_dims = [o for o, _ in ops], [d for _, d in ops]
    fns = [_body_vmap(br, op_dims, size) for br in branches]
    if dims[0] is None:
        outs = switch(args[0], [lambda *o, f=f: list(f(*o)) for f in fns], *op_vals)
        return list(outs), [0] * len(outs)
    # A batched predicate: run every branch, then select per batch element.
    index = moveaxis(args[0], dims[0], 0)
    from fgrad.lax.elementwise import max as lax_max
    from fgrad.lax.elementwise import min as lax_min

    index = lax_min(lax_max(index, 0), len(branches) - 1)
    all_outs = [list(f(*op_vals)) for f in fns]
    results = []
    for j in range(len(all_outs[0])):
        cases = [outs[j] for outs in all_outs]
        which = broadcast_in_dim(index, tuple(cases[0].shape), (0,))
        results.append(select_n(which, *cases))
    return results, [0] * len(results)


@while_p.def_batch
def _while_batch(args, dims, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    from fgrad.lax.batch_util import batch_size, bdim_at
    from fgrad.lax.elementwise import select_n
    from fgrad.lax.reductions import reduce_max
    from fgrad.lax.shapes import broadcast_in_dim

    size = batch_size(args, dims)
    cn, bn = cond_nconsts, body_nconsts
    cconsts = [_front_or_none(x, d) for x, d in zip(args[:cn], dims[:cn])]
    bconsts = [_front_or_none(x, d) for x, d in zip(args[cn : cn + bn], dims[cn : cn + bn])]
    init = [bdim_at(x, d, size, 0) for x, d in zip(args[cn + bn :], dims[cn + bn :])]
    n = len(init)
    cond_v = _body_vmap(cond_jaxpr, [d for _, d in cconsts] + [0] * n, size)
    body_v = _body_vmap(body_jaxpr, [d for _, d in bconsts] + [0] * n, size)
    cvals, bvals = [c for c, _ in cconsts], [c for c, _ in bconsts]

    # Run while any element still loops; finished elements keep their carry.
    def cond_fun(carry):
        return reduce_max(cond_v(*cvals, *carry)[0], (0,))

    def body_fun(carry):
        pred = cond_v(*cvals, *carry)[0]
        new = body_v(*bvals, *carry)
        return [
            select_n(broadcast_in_dim(pred, tuple(o.shape), (0,)), o, v) for o, v in zip(carry, new)
        ]

    out = while_loop(cond_fun, body_fun, init)
    return list(out), [0] * n
