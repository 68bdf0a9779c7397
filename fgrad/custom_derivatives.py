"""User-defined derivatives: ``custom_jvp`` and ``custom_vjp``, as in JAX.

Each wraps the function's traced jaxpr in a call primitive whose JVP/VJP rule runs the
user's rule instead of differentiating the body. Under ``jit`` the CPU compiler
inlines the body (the rules matter only to ``grad``/``jvp``).

* ``custom_jvp``: reverse mode is derived from the user's JVP rule (its tangent output
  is linear in the tangents, so its VJP is the transpose, computed here by ``vjp`` of
  the tangent map).
* ``custom_vjp``: the backward pass calls ``fwd`` again to get the residuals, then
  ``bwd`` (fwd is pure, so recomputing gives the residuals the forward pass had).
  Forward mode is an error, as in JAX.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from fgrad import tree as tree_util
from fgrad.ad import _to_operand, _zeros_like, jvp, vjp
from fgrad.core import Primitive, eval_jaxpr, get_aval
from fgrad.lax.control_flow import trace_closure

# ---------------------------------------------------------------- shared call machinery


def _call_shape(*avals, call_jaxpr, **params):
    return [v.aval for v in call_jaxpr.outvars]


def _call_impl(*args, call_jaxpr, **params):
    from fgrad.backends import reference
    from fgrad.core import ClosedJaxpr

    return reference.compile(ClosedJaxpr(call_jaxpr, []))(*args)


def _trace_call(fun: Callable, args: Sequence[Any], name: str):
    leaves, in_tree = tree_util.tree_flatten(tuple(args))
    leaves = [_to_operand(x) for x in leaves]
    jaxpr, consts, out_tree = trace_closure(
        lambda *a: fun(*a), in_tree, [get_aval(x) for x in leaves], name
    )
    return leaves, in_tree, jaxpr, [_to_operand(c) for c in consts], out_tree


# ---------------------------------------------------------------- custom_jvp

custom_jvp_call_p = Primitive("custom_jvp_call", multiple_results=True)
custom_jvp_call_p.def_shape(_call_shape)
custom_jvp_call_p.def_impl(_call_impl)


def _split_consts(args, num_consts):
    return list(args[:num_consts]), list(args[num_consts:])


@custom_jvp_call_p.def_jvp
def _custom_jvp_jvp(ts, *args, out, call_jaxpr, num_consts, rule, in_tree, out_tree):
    _, primals = _split_consts(args, num_consts)
    tangents = [_zeros_like(p) if t is None else t for t, p in zip(ts[num_consts:], primals)]
    p_tree = tree_util.tree_unflatten(in_tree, primals)
    t_tree = tree_util.tree_unflatten(in_tree, tangents)
    _, t_out = rule(tuple(p_tree), tuple(t_tree))
    return [_to_operand(t) for t in tree_util.tree_leaves(t_out)]


@custom_jvp_call_p.def_vjp
def _custom_jvp_vjp(cts, *args, out, call_jaxpr, num_consts, rule, in_tree, out_tree):
    _, primals = _split_consts(args, num_consts)
    p_tree = tuple(tree_util.tree_unflatten(in_tree, primals))

    def tangent_map(*tangents):
        _, t_out = rule(p_tree, tuple(tree_util.tree_unflatten(in_tree, list(tangents))))
        return [_to_operand(t) for t in tree_util.tree_leaves(t_out)]

    _, f_vjp = vjp(tangent_map, *[_zeros_like(p) for p in primals])
    return (None,) * num_consts + tuple(f_vjp(list(cts)))


class custom_jvp:
    """Give a function a custom JVP rule (forward and, derived from it, reverse mode).

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> @fgrad.custom_jvp
        ... def safe_log1pexp(x):
        ...     return fnp.logaddexp(0.0, x)
        >>> @safe_log1pexp.defjvp
        ... def _(primals, tangents):
        ...     (x,), (t,) = primals, tangents
        ...     return safe_log1pexp(x), t * fgrad.lax.logistic(x)
        >>> fgrad.grad(safe_log1pexp)(100.0).item()
        1.0
    """

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.jvp_rule: Callable | None = None

    def defjvp(self, jvp_rule: Callable) -> Callable:
        """Set ``jvp_rule(primals, tangents) -> (primal_out, tangent_out)``."""
        self.jvp_rule = jvp_rule
        return jvp_rule

    def __call__(self, *args):
        if self.jvp_rule is None:
            raise TypeError(f"custom_jvp {self.fun.__name__}: no JVP rule; call .defjvp first")
        static = {i: args[i] for i in self.nondiff_argnums}
        dyn = [a for i, a in enumerate(args) if i not in static]

        def merged(dyn_args):
            it = iter(dyn_args)
            return [static[i] if i in static else next(it) for i in range(len(args))]

        leaves, in_tree, jaxpr, consts, out_tree = _trace_call(
            lambda *d: self.fun(*merged(d)), dyn, "custom_jvp"
        )
        user_rule = self.jvp_rule

        def rule(primals, tangents):
            nd = [static[i] for i in self.nondiff_argnums]
            return user_rule(*nd, primals, tangents) if nd else user_rule(primals, tangents)

        outs = custom_jvp_call_p.bind(
            *consts,
            *leaves,
            call_jaxpr=jaxpr,
            num_consts=len(consts),
            rule=rule,
            in_tree=in_tree,
            out_tree=out_tree,
        )
        return tree_util.tree_unflatten(out_tree, outs)


# ---------------------------------------------------------------- custom_vjp

custom_vjp_call_p = Primitive("custom_vjp_call", multiple_results=True)
custom_vjp_call_p.def_shape(_call_shape)
custom_vjp_call_p.def_impl(_call_impl)


@custom_vjp_call_p.def_vjp
def _custom_vjp_vjp(cts, *args, out, call_jaxpr, num_consts, fwd, bwd, in_tree, out_tree):
    _, primals = _split_consts(args, num_consts)
    p_tree = tuple(tree_util.tree_unflatten(in_tree, primals))
    _, res = fwd(*p_tree)
    ct_tree = tree_util.tree_unflatten(out_tree, list(cts))
    grads = bwd(res, ct_tree)
    if not isinstance(grads, tuple | list) or len(grads) != len(p_tree):
        raise TypeError(
            f"custom_vjp bwd must return a tuple with one cotangent per differentiable "
            f"argument ({len(p_tree)}), got {type(grads).__name__}"
            + (f" of length {len(grads)}" if isinstance(grads, tuple | list) else "")
        )
    flat = []
    for g, p in zip(grads, p_tree):
        g_leaves = tree_util.tree_leaves(g) if g is not None else None
        p_leaves = tree_util.tree_leaves(p)
        if g_leaves is None:
            flat.extend(_zeros_like(_to_operand(x)) for x in p_leaves)
        else:
            flat.extend(_to_operand(x) for x in g_leaves)
    return (None,) * num_consts + tuple(flat)


@custom_vjp_call_p.def_jvp
def _custom_vjp_jvp(ts, *args, out, **params):
    raise TypeError(
        "can't apply forward-mode autodiff (jvp) to a custom_vjp function; "
        "use custom_jvp if you need forward mode"
    )


class custom_vjp:
    """Give a function a custom VJP: ``f.defvjp(fwd, bwd)``.

    ``fwd(*args) -> (out, residuals)``; ``bwd(residuals, ct) -> tuple`` with one
    cotangent per (differentiable) argument; ``nondiff_argnums`` are passed to bwd
    first, as in JAX.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> @fgrad.custom_vjp
        ... def clip_gradient(x):
        ...     return x
        >>> clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (fnp.clip(g, -1.0, 1.0),))
        >>> fgrad.grad(lambda x: 5.0 * clip_gradient(x))(2.0).item()
        1.0
    """

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """Set the forward (``-> (out, residuals)``) and backward rules."""
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args):
        if self.fwd is None:
            raise TypeError(f"custom_vjp {self.fun.__name__}: no rules; call .defvjp first")
        static = {i: args[i] for i in self.nondiff_argnums}
        dyn = [a for i, a in enumerate(args) if i not in static]
        nd = [static[i] for i in self.nondiff_argnums]

        def merged(dyn_args):
            it = iter(dyn_args)
            return [static[i] if i in static else next(it) for i in range(len(args))]

        leaves, in_tree, jaxpr, consts, out_tree = _trace_call(
            lambda *d: self.fun(*merged(d)), dyn, "custom_vjp"
        )
        user_fwd, user_bwd = self.fwd, self.bwd
        outs = custom_vjp_call_p.bind(
            *consts,
            *leaves,
            call_jaxpr=jaxpr,
            num_consts=len(consts),
            fwd=lambda *d: user_fwd(*merged(d)),
            bwd=lambda res, ct: user_bwd(*nd, res, ct),
            in_tree=in_tree,
            out_tree=out_tree,
        )
        return tree_util.tree_unflatten(out_tree, outs)


# ---------------------------------------------------------------- checkpoint (remat)

remat_p = Primitive("checkpoint", multiple_results=True)
remat_p.def_shape(_call_shape)
remat_p.def_impl(_call_impl)


@remat_p.def_vjp
def _remat_vjp(cts, *args, out, call_jaxpr, num_consts, **params):
    # Recompute the forward pass here, in the backward pass: nothing inside was saved.
    _, f_vjp = vjp(lambda *a: eval_jaxpr(call_jaxpr, [], *a), *args)
    return f_vjp(list(cts))


@remat_p.def_jvp
def _remat_jvp(ts, *args, out, call_jaxpr, num_consts, **params):
    tangents = [_zeros_like(a) if t is None else t for t, a in zip(ts, args)]
    return list(jvp(lambda *a: eval_jaxpr(call_jaxpr, [], *a), tuple(args), tuple(tangents))[1])


def checkpoint(
    fun: Callable,
    *,
    prevent_cse: bool = True,
    policy: Any = None,
    static_argnums: Sequence[int] = (),
) -> Callable:
    """Rematerialise ``fun`` in the backward pass instead of saving its intermediates.

    Gradients are unchanged; the backward pass keeps only ``fun``'s inputs and
    recomputes the rest (``print_saved_residuals`` shows the difference). ``policy``
    and ``prevent_cse`` are accepted for JAX compatibility; every intermediate is
    recomputed.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> block = fgrad.checkpoint(lambda x: fnp.tanh(fnp.tanh(x)))
        >>> round(fgrad.grad(lambda x: block(x))(0.5).item(), 6)
        0.639808
    """
    del prevent_cse, policy
    static = set((static_argnums,) if isinstance(static_argnums, int) else static_argnums)

    @functools.wraps(fun)
    def remat_fun(*args):
        st = {i: args[i] for i in static}
        dyn = [a for i, a in enumerate(args) if i not in st]

        def merged(dyn_args):
            it = iter(dyn_args)
            return [st[i] if i in st else next(it) for i in range(len(args))]

        leaves, _, jaxpr, consts, out_tree = _trace_call(
            lambda *d: fun(*merged(d)), dyn, "checkpoint"
        )
        outs = remat_p.bind(
            *consts,
            *leaves,
            call_jaxpr=jaxpr,
            num_consts=len(consts),
            name=getattr(fun, "__name__", "f"),
        )
        return tree_util.tree_unflatten(out_tree, outs)

    return remat_fun


remat = checkpoint


# ---------------------------------------------------------------- residual inspection


def saved_residuals(fun: Callable, *args) -> list[tuple[str, str, int, str]]:
    """What ``vjp(fun, *args)`` keeps for its backward pass.

    Returns:
        One ``(kind, type, bytes, where)`` tuple per saved array: kind is
        "argument", "constant" or "intermediate"; where is the user's line.
    """
    from fgrad.ad import needed_residuals
    from fgrad.core import trace_to_jaxpr

    leaves, in_tree = tree_util.tree_flatten(args)
    leaves = [_to_operand(x) for x in leaves]

    def flat(*xs):
        out = fun(*tree_util.tree_unflatten(in_tree, list(xs)))
        return [_to_operand(o) for o in tree_util.tree_leaves(out)]

    jaxpr, _, _, _ = trace_to_jaxpr(flat, [get_aval(x) for x in leaves], leaves, name="vjp")
    producers = {v: e for e in jaxpr.eqns for v in e.outvars}
    invars, constvars = set(jaxpr.invars), set(jaxpr.constvars)
    rows = []
    for v in needed_residuals(jaxpr):
        if v in invars:
            kind, where = "argument", "argument"
        elif v in constvars:
            kind, where = "constant", "closed-over value"
        else:
            kind, where = "intermediate", producers[v].source_info
        rows.append((kind, v.aval.str_short(), v.aval.size * v.aval.dtype.itemsize, where))
    return rows


def print_saved_residuals(fun: Callable, *args) -> None:
    """Print what the backward pass of ``fun`` at ``args`` keeps: type, bytes, line.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> fgrad.print_saved_residuals(lambda x: fnp.sin(x).sum(), fnp.ones(3))
        f32[3] 12 bytes  argument  (argument)
        total: 1 arrays, 12 bytes
    """
    rows = saved_residuals(fun, *args)
    for kind, typ, nbytes, where in rows:
        print(f"{typ} {nbytes} bytes  {kind}  ({where})")
    print(f"total: {len(rows)} arrays, {sum(r[2] for r in rows)} bytes")


# ---------------------------------------------------------------- batching
# Under vmap the call is mapped through its body; a grad taken inside the vmap still
# sees the call primitive (and its custom rule), because vjp/jvp trace above vmap.


def _call_batch(prim: Primitive):
    def rule(args, dims, *, call_jaxpr, **params):
        from fgrad.batching import vmap

        outs = vmap(lambda *a: eval_jaxpr(call_jaxpr, [], *a), in_axes=tuple(dims), out_axes=0)(
            *args
        )
        return list(outs), [0] * len(outs)

    prim.def_batch(rule)


for _prim in (custom_jvp_call_p, custom_vjp_call_p, remat_p):
    _call_batch(_prim)
del _prim
