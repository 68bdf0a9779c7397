"""Automatic differentiation: vjp/grad (reverse mode) and jvp (forward mode).

Reverse mode traces the function once into a jaxpr (``core.trace_to_jaxpr`` with
concrete values, so Python ``if`` on values still works and every intermediate is kept
as a residual), then builds the backward function by walking the equations in
reverse and applying each primitive's VJP rule. The rules are fgrad operations, so
the backward pass is itself traceable: ``grad(grad(f))``, ``make_jaxpr(grad(f))`` and
``jit(grad(f))`` need no extra machinery.

Forward mode pushes (primal, tangent) pairs through ``JVPTrace``; a tangent of
``None`` is a symbolic zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fgrad import lax
from fgrad import tree as tree_util
from fgrad.core import (
    Array,
    JaxprTracer,
    Literal,
    Trace,
    Tracer,
    Var,
    get_aval,
    is_float_dtype,
    new_main,
    source_context,
    trace_to_jaxpr,
    user_frame,
)

# ---------------------------------------------------------------- helpers


def _to_operand(x: Any) -> Any:
    """Leaves handed to a transformation become fgrad values (tracers pass through)."""
    if isinstance(x, Array | Tracer):
        return x
    from fgrad.lax.utils import asarray_operand

    try:
        return asarray_operand(x)
    except Exception:
        raise TypeError(
            f"argument of type {type(x).__name__} is not a valid array leaf: {x!r}"
        ) from None


def _zeros_like(x: Any) -> Any:
    return lax.full(x.shape, 0, x.dtype)


def _ones_like(x: Any) -> Any:
    return lax.full(x.shape, 1, x.dtype)


def _argnums_tuple(argnums) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _split_aux(out, has_aux: bool, name: str):
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise TypeError(
            f"{name} with has_aux=True needs the function to return a pair (output, aux), "
            f"got {type(out).__name__}"
        )
    return out[0], out[1]


# ---------------------------------------------------------------- reverse mode


def vjp(fun: Callable, *primals: Any, has_aux: bool = False):
    """Evaluate ``fun(*primals)`` and return its vector-Jacobian product function.

    The function is traced once into the IR; ``vjp_fn`` walks that IR backwards with
    each primitive's VJP rule (it never calls ``fun`` again).

    Args:
        fun: function of pytrees of arrays returning a pytree of arrays.
        *primals: the point to differentiate at.
        has_aux: ``fun`` returns ``(out, aux)``; aux is returned, not differentiated.

    Returns:
        ``(out, vjp_fn)`` or ``(out, vjp_fn, aux)``; ``vjp_fn(ct)`` takes a cotangent
        shaped like ``out`` and returns a tuple with one cotangent per primal.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> y, f_vjp = fgrad.vjp(lambda x: x * x, fnp.asarray(3.0))
        >>> f_vjp(fnp.asarray(1.0))[0].item()
        6.0
    """
    flat_in, in_tree = tree_util.tree_flatten(primals)
    flat_in = [_to_operand(x) for x in flat_in]
    in_avals = [get_aval(x) for x in flat_in]
    out_store: dict[str, Any] = {}

    def flat_fun(*args):
        out = fun(*tree_util.tree_unflatten(in_tree, list(args)))
        out, aux = _split_aux(out, has_aux, "vjp")
        flat_out, out_tree = tree_util.tree_flatten(out)
        out_store["tree"], out_store["aux"] = out_tree, aux
        return flat_out

    jaxpr, consts, out_vals, builder = trace_to_jaxpr(flat_fun, in_avals, flat_in, name="vjp")
    out_tree = out_store["tree"]
    # Keep only what a backward rule can read: the values around differentiable eqns.
    main_values = {v: builder.values[v] for v in residual_vars(jaxpr)}
    aux = out_store["aux"]
    if has_aux:
        aux = _lower_aux_from_builder(aux, builder)

    def vjp_fn(ct):
        flat_ct, ct_tree = tree_util.tree_flatten(ct)
        if ct_tree != out_tree:
            raise TypeError(
                f"vjp_fn: cotangent structure {ct_tree} does not match the output "
                f"structure {out_tree}"
            )
        cts = []
        for c, v in zip(flat_ct, out_vals):
            c = _to_operand(c)
            if tuple(c.shape) != tuple(v.shape):
                raise TypeError(
                    f"vjp_fn: cotangent shape {tuple(c.shape)} does not match the primal "
                    f"output shape {tuple(v.shape)} at {user_frame()}"
                )
            if c.dtype != v.dtype and is_float_dtype(v.dtype):
                c = lax.convert_element_type(c, v.dtype)
            cts.append(c)
        in_cts = backward_pass(jaxpr, main_values, cts)
        in_cts = [_zeros_like(x) if c is None else c for c, x in zip(in_cts, flat_in)]
        return tuple(tree_util.tree_unflatten(in_tree, in_cts))

    out = tree_util.tree_unflatten(out_tree, out_vals)
    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _lower_aux_from_builder(aux, builder):
    def lower(x):
        if isinstance(x, JaxprTracer) and id(x) in builder.tracer_to_var:
            return x.val
        return x

    return tree_util.tree_map(lower, aux)


def residual_vars(jaxpr) -> list[Var]:
    """Vars whose values the backward pass may read (inputs/outputs of active eqns).

    An equation is active when one of its float inputs depends on a float input of the
    jaxpr; only active equations receive cotangents.
    """
    active = {v for v in jaxpr.invars if is_float_dtype(v.aval.dtype)}
    needed: dict[Var, None] = {}
    for eqn in jaxpr.eqns:
        if not eqn.primitive.differentiable:
            continue
        if any(isinstance(v, Var) and v in active for v in eqn.invars):
            active.update(v for v in eqn.outvars if is_float_dtype(v.aval.dtype))
            for v in list(eqn.invars) + list(eqn.outvars):
                if isinstance(v, Var):
                    needed[v] = None
    return list(needed)


def needed_residuals(jaxpr) -> list[Var]:
    """The residual vars the backward pass really reads.

    Traces the backward pass abstractly with every candidate residual as an input, then
    keeps those inputs that a live equation uses.
    """
    candidates = residual_vars(jaxpr)
    n = len(candidates)

    def backward(*args):
        values = dict(zip(candidates, args[:n]))
        cts = backward_pass(jaxpr, values, list(args[n:]))
        return [c for c in cts if c is not None]

    avals = [v.aval for v in candidates] + [v.aval for v in jaxpr.outvars]
    bwd, _, _, _ = trace_to_jaxpr(backward, avals, name="backward")
    live = {v for v in bwd.outvars if isinstance(v, Var)}
    for eqn in reversed(bwd.eqns):
        if any(v in live for v in eqn.outvars):
            live.update(v for v in eqn.invars if isinstance(v, Var))
    return [v for v, b in zip(candidates, bwd.invars[:n]) if b in live]


def backward_pass(jaxpr, values: dict, out_cts: Sequence[Any]) -> list[Any]:
    """Propagate output cotangents back to the jaxpr's inputs with the VJP rules.

    Args:
        jaxpr: the forward program.
        values: the value of every var seen in the forward pass (residuals).
        out_cts: one cotangent per output (None for zero).

    Returns:
        One cotangent per input var (None where it is zero or not differentiable).
    """
    ct_env: dict[Var, Any] = {}

    def read(v):
        return v.val if isinstance(v, Literal) else values[v]

    def accumulate(v, ct):
        if ct is None or isinstance(v, Literal) or not is_float_dtype(v.aval.dtype):
            return
        if v in ct_env:
            ct_env[v] = lax.add(ct_env[v], ct)
        else:
            ct_env[v] = ct

    for v, ct in zip(jaxpr.outvars, out_cts):
        accumulate(v, ct)
    for eqn in reversed(jaxpr.eqns):
        cts_out = [ct_env.pop(v, None) for v in eqn.outvars]
        prim = eqn.primitive
        if all(c is None for c in cts_out) or not prim.differentiable:
            continue
        if any(isinstance(v, Var) and v not in values for v in eqn.invars):
            continue  # inactive: no input depends on a differentiated value
        outs = [values[v] for v in eqn.outvars]
        invals = [read(v) for v in eqn.invars]
        if prim.multiple_results:
            cts_arg = [_zeros_like(o) if c is None else c for c, o in zip(cts_out, outs)]
            out_arg = outs
        else:
            cts_arg, out_arg = cts_out[0], outs[0]
        try:
            with source_context(f"{eqn.source_info} (in the VJP of {prim.name})"):
                cts_in = prim.vjp_rule(cts_arg, *invals, out=out_arg, **eqn.params)
        except Exception as e:
            e.add_note(f"in the VJP of {prim.name}, from the forward line {eqn.source_info}")
            raise
        for v, ct in zip(eqn.invars, cts_in):
            accumulate(v, ct)
    return [ct_env.get(v) for v in jaxpr.invars]


def value_and_grad(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """Make a function returning ``(fun(...), grad of fun w.r.t. argnums)``.

    Args:
        fun: returns a real scalar (or ``(scalar, aux)`` with ``has_aux``).
        argnums: int or tuple of ints: which positional arguments to differentiate.
        has_aux: ``fun`` returns ``(value, aux)``.

    Returns:
        A function returning ``(value, grads)`` or ``((value, aux), grads)``; grads has
        the structure of the chosen argument (a tuple of them for a tuple argnums).

    Example:
        >>> import fgrad
        >>> v, g = fgrad.value_and_grad(lambda x: x ** 3)(2.0)
        >>> (v.item(), g.item())
        (8.0, 12.0)
    """
    nums = _argnums_tuple(argnums)

    def value_and_grad_fun(*args, **kwargs):
        if max(nums, default=-1) >= len(args):
            raise TypeError(
                f"grad: argnums={argnums} but the function was called with "
                f"{len(args)} positional arguments"
            )
        diff = tuple(args[i] for i in nums)
        _check_differentiable_inputs(diff, nums)

        def partial_fun(*diff_args):
            full = list(args)
            for i, a in zip(nums, diff_args):
                full[i] = a
            return fun(*full, **kwargs)

        result = vjp(partial_fun, *diff, has_aux=has_aux)
        out, vjp_fn = result[0], result[1]
        _check_scalar_output(out)
        grads = vjp_fn(_ones_like(out))
        g = grads[0] if isinstance(argnums, int) else grads
        return ((out, result[2]) if has_aux else out), g

    value_and_grad_fun.__name__ = f"value_and_grad({getattr(fun, '__name__', 'f')})"
    value_and_grad_fun.__wrapped__ = fun
    return value_and_grad_fun


def grad(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """Make a function computing the gradient of scalar-valued ``fun``.

    Args:
        fun: returns a real scalar (or ``(scalar, aux)`` with ``has_aux``).
        argnums: int or tuple of ints: which positional arguments to differentiate.
        has_aux: ``fun`` returns ``(value, aux)``; then ``(grads, aux)`` is returned.

    Returns:
        A function with ``fun``'s signature returning gradients shaped like the
        chosen arguments.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> fgrad.grad(lambda x: fnp.sum(x ** 2))(fnp.asarray([1.0, 2.0])).tolist()
        [2.0, 4.0]
    """
    vg = value_and_grad(fun, argnums, has_aux)

    def grad_fun(*args, **kwargs):
        (value, g) = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    grad_fun.__name__ = f"grad({getattr(fun, '__name__', 'f')})"
    grad_fun.__wrapped__ = fun
    return grad_fun


def _check_differentiable_inputs(diff_args, nums) -> None:
    leaves, _ = tree_util.tree_flatten_with_path(diff_args)
    for path, leaf in leaves:
        dtype = _to_operand(leaf).dtype
        if not is_float_dtype(dtype):
            where = f"argument {nums[path[0].idx]}{tree_util.keystr(path[1:])}"
            raise TypeError(
                f"grad requires floating-point inputs, but {where} has dtype "
                f"{np.dtype(dtype).name} (at {user_frame()}). Integer and boolean values "
                f"are not differentiable: convert with .astype(fnp.float32), or leave "
                f"the argument out of argnums."
            )


def _check_scalar_output(out) -> None:
    leaves = tree_util.tree_leaves(out)
    if len(leaves) != 1 or not hasattr(out, "shape") or tuple(leaves[0].shape) != ():
        desc = ", ".join(get_aval(x).str_short() for x in leaves) if leaves else "no arrays"
        raise TypeError(
            f"grad requires a function returning a scalar (shape ()), but it returned "
            f"{desc} (at {user_frame()}). Use jacrev/vjp for non-scalar outputs, or "
            f"reduce the output (e.g. .sum() or .mean())."
        )
    if not is_float_dtype(leaves[0].dtype):
        raise TypeError(
            f"grad requires a floating-point output, but the function returned "
            f"{np.dtype(leaves[0].dtype).name} (at {user_frame()})"
        )


# ---------------------------------------------------------------- forward mode


class JVPTracer(Tracer):
    __slots__ = ("primal", "tangent")

    def __init__(self, trace, primal, tangent, source_info="jvp"):
        self._trace = trace
        self.primal = primal
        self.tangent = tangent
        self.source_info = source_info

    @property
    def aval(self):
        return get_aval(self.primal)

    def concrete_value(self):
        p = self.primal
        return p.concrete_value() if isinstance(p, Tracer) else p


class JVPTrace(Trace):
    def pure(self, val):
        return JVPTracer(self, val, None, "constant")

    def process_primitive(self, prim, tracers, params):
        primals = [t.primal for t in tracers]
        tangents = [
            t.tangent if t.tangent is not None and is_float_dtype(t.tangent.dtype) else None
            for t in tracers
        ]
        out = prim.bind(*primals, **params)
        outs = out if prim.multiple_results else [out]
        if not prim.differentiable or all(t is None for t in tangents):
            t_outs = [None] * len(outs)
        else:
            t = prim.jvp_rule(tangents, *primals, out=out, **params)
            t_outs = list(t) if prim.multiple_results else [t]
        src = user_frame()
        return [JVPTracer(self, o, t, src) for o, t in zip(outs, t_outs)]


def jvp(fun: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
    """Evaluate ``fun`` and its Jacobian-vector product at ``primals`` along ``tangents``.

    Args:
        fun: function of pytrees of arrays.
        primals: tuple/list of arguments.
        tangents: same structure, shapes and dtypes as ``primals``.

    Returns:
        ``(out, tangent_out)``.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> y, t = fgrad.jvp(fnp.sin, (0.0,), (1.0,))
        >>> t.item()
        1.0
    """
    if not isinstance(primals, tuple | list) or not isinstance(tangents, tuple | list):
        raise TypeError("jvp: primals and tangents must be tuples or lists of arguments")
    flat_p, p_tree = tree_util.tree_flatten(tuple(primals))
    flat_t, t_tree = tree_util.tree_flatten(tuple(tangents))
    if p_tree != t_tree:
        raise TypeError(f"jvp: primal structure {p_tree} and tangent structure {t_tree} differ")
    flat_p = [_to_operand(p) for p in flat_p]
    checked = []
    for p, t in zip(flat_p, flat_t):
        t = _to_operand(t)
        if tuple(t.shape) != tuple(p.shape):
            raise TypeError(
                f"jvp: tangent shape {tuple(t.shape)} does not match primal shape {tuple(p.shape)}"
            )
        if is_float_dtype(p.dtype) and t.dtype != p.dtype:
            t = lax.convert_element_type(t, p.dtype)
        checked.append(t if is_float_dtype(p.dtype) else None)
    with new_main(JVPTrace, name="jvp") as main:
        trace = JVPTrace(main)
        args = [JVPTracer(trace, p, t, "argument") for p, t in zip(flat_p, checked)]
        out = fun(*tree_util.tree_unflatten(p_tree, args))
        flat_out, out_tree = tree_util.tree_flatten(out)
        out_tracers = [trace.full_raise(_to_operand(o)) for o in flat_out]
        out_p = [t.primal for t in out_tracers]
        out_t = [_zeros_like(t.primal) if t.tangent is None else t.tangent for t in out_tracers]
    return tree_util.tree_unflatten(out_tree, out_p), tree_util.tree_unflatten(out_tree, out_t)


def linearize(fun: Callable, *primals: Any):
    """Return ``(fun(*primals), jvp_fn)`` where ``jvp_fn(*tangents)`` is the JVP there."""
    out = fun(*primals)

    def jvp_fn(*tangents):
        return jvp(fun, primals, tangents)[1]

    return out, jvp_fn


# ---------------------------------------------------------------- Jacobians


def jacfwd(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """Jacobian by forward mode: ``jvp`` vmapped over the standard basis of the inputs.

    One batched JVP computes every column at once (no Python loop over the input
    elements), so the traced program has the same size for any input size.

    Args:
        fun: function of pytrees of arrays.
        argnums: int or tuple of ints: which positional arguments to differentiate.
        has_aux: ``fun`` returns ``(out, aux)``; then ``(jacobian, aux)`` is returned.

    Returns:
        A function giving, for each output leaf, a pytree like the chosen argument(s)
        whose leaves have shape ``out.shape + in.shape``.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> fgrad.jacfwd(lambda x: x * 2.0)(fnp.ones(2)).tolist()
        [[2.0, 0.0], [0.0, 2.0]]
    """
    from fgrad.batching import vmap

    nums = _argnums_tuple(argnums)

    def jac_fun(*args):
        diff = tuple(_tree_operands(args[i]) for i in nums)
        flat_x, x_tree = tree_util.tree_flatten(diff)

        def f_flat(*xs):
            full = list(args)
            for i, a in zip(nums, tree_util.tree_unflatten(x_tree, list(xs)), strict=True):
                full[i] = a
            out, aux = _split_aux(fun(*full), has_aux, "jacfwd")
            return (out, aux) if has_aux else out

        # Row k of the identity, split into one tangent per input leaf: e_k.
        sizes = [math.prod(x.shape) for x in flat_x]
        total, starts = sum(sizes), np.cumsum([0] + sizes)
        eye = np.eye(total)
        basis = [
            Array(eye[:, a:b].astype(x.dtype).reshape((total, *x.shape)))
            for x, a, b in zip(flat_x, starts[:-1], starts[1:], strict=True)
        ]

        def push(*tangents):
            return jvp(f_flat, tuple(flat_x), tangents)

        # Primal outputs do not depend on the tangents: out_axes None keeps them
        # unbatched; the tangents' batch axis goes last (out.shape + (total,)).
        out, t_out = vmap(push, out_axes=(None, -1), axis_size=total)(*basis)
        if has_aux:
            (out, aux), t_out = out, t_out[0]
        flat_out, out_tree = tree_util.tree_flatten(out)
        jac_leaves = []
        for y, t in zip(flat_out, tree_util.tree_leaves(t_out), strict=True):
            nd = len(y.shape)
            row = []
            for x, a, b in zip(flat_x, starts[:-1], starts[1:], strict=True):
                cols = lax.slice(t, (0,) * nd + (int(a),), tuple(y.shape) + (int(b),))
                row.append(lax.reshape(cols, tuple(y.shape) + tuple(x.shape)))
            sub = tree_util.tree_unflatten(x_tree, row)
            jac_leaves.append(sub[0] if isinstance(argnums, int) else sub)
        jac = tree_util.tree_unflatten(out_tree, jac_leaves)
        return (jac, aux) if has_aux else jac

    return jac_fun


def jacrev(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """Jacobian by reverse mode: the VJP of one trace, vmapped over an output basis.

    One batched backward pass computes every row at once (no Python loop over the
    output elements), so the traced program has the same size for any output size.

    Args:
        fun: function of pytrees of arrays.
        argnums: int or tuple of ints: which positional arguments to differentiate.
        has_aux: ``fun`` returns ``(out, aux)``; then ``(jacobian, aux)`` is returned.

    Returns:
        A function giving, for each output leaf, a pytree like the chosen argument(s)
        whose leaves have shape ``out.shape + in.shape``.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> fgrad.jacrev(lambda x: x * 2.0)(fnp.ones(2)).tolist()
        [[2.0, 0.0], [0.0, 2.0]]
    """
    from fgrad.batching import vmap

    nums = _argnums_tuple(argnums)

    def jac_fun(*args):
        diff = tuple(_tree_operands(args[i]) for i in nums)

        def partial_fun(*diff_args):
            full = list(args)
            for i, a in zip(nums, diff_args, strict=True):
                full[i] = a
            return fun(*full)

        res = vjp(partial_fun, *diff, has_aux=has_aux)
        out, vjp_fn = res[0], res[1]
        flat_out, out_tree = tree_util.tree_flatten(out)
        flat_x, x_tree = tree_util.tree_flatten(diff)

        # Row k of the identity, split into one cotangent per output leaf.
        sizes = [math.prod(y.shape) for y in flat_out]
        total, starts = sum(sizes), np.cumsum([0] + sizes)
        eye = np.eye(total)
        basis = [
            Array(eye[:, a:b].astype(y.dtype).reshape((total, *y.shape)))
            for y, a, b in zip(flat_out, starts[:-1], starts[1:], strict=True)
        ]

        def pull(*cts):
            return tree_util.tree_leaves(vjp_fn(tree_util.tree_unflatten(out_tree, list(cts))))

        rows = vmap(pull, axis_size=total)(*basis)  # per input leaf: (total, *x.shape)
        jac_leaves = []
        for y, a, b in zip(flat_out, starts[:-1], starts[1:], strict=True):
            row = []
            for x, r in zip(flat_x, rows, strict=True):
                nd = len(x.shape)
                part = lax.slice(r, (int(a),) + (0,) * nd, (int(b),) + tuple(x.shape))
                row.append(lax.reshape(part, tuple(y.shape) + tuple(x.shape)))
            sub = tree_util.tree_unflatten(x_tree, row)
            jac_leaves.append(sub[0] if isinstance(argnums, int) else sub)
        jac = tree_util.tree_unflatten(out_tree, jac_leaves)
        return (jac, res[2]) if has_aux else jac

    return jac_fun


def hessian(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """Hessian of scalar ``fun``: ``jacfwd(jacrev(fun))``, both vmapped (no Python loops).

    Args:
        fun: returns a real scalar (or ``(scalar, aux)`` with ``has_aux``).
        argnums: int or tuple of ints: which positional arguments to differentiate.
        has_aux: ``fun`` returns ``(value, aux)``; then ``(hessian, aux)`` is returned.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> fgrad.hessian(lambda x: fnp.sum(x ** 3))(fnp.asarray([1.0, 2.0])).tolist()
        [[6.0, 0.0], [0.0, 12.0]]
    """
    return jacfwd(jacrev(fun, argnums, has_aux=has_aux), argnums, has_aux=has_aux)


def _tree_operands(tree):
    return tree_util.tree_map(_to_operand, tree)
