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
    _execute,
    _source_context,
    get_aval,
    is_float_dtype,
    new_main,
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
    residuals, active = _residuals_and_active(jaxpr)
    main_values = {v: builder.values[v] for v in residuals}
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
        in_cts = backward_pass(jaxpr, main_values, cts, active)
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
    return _residuals_and_active(jaxpr)[0]


def _residuals_and_active(jaxpr) -> tuple[list[Var], set[Var]]:
    """``residual_vars`` and the active vars: the float vars that depend on a float
    input of the jaxpr (the only ones whose cotangent reaches an input)."""
    active = {v for v in jaxpr.invars if is_float_dtype(v.aval.dtype)}
    needed: dict[Var, None] = {}
    for eqn in jaxpr.eqns:
        if not eqn.primitive.differentiable:
            continue
        invars = eqn.invars
        for v in invars:
            if v in active:  # a Literal is never in ``active``
                break
        else:
            continue
        outvars = eqn.outvars
        for v in outvars:
            if is_float_dtype(v.aval.dtype):
                active.add(v)
        for v in invars:
            if type(v) is Var:
                needed[v] = None
        for v in outvars:
            needed[v] = None
    return list(needed), active


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


def backward_pass(
    jaxpr, values: dict, out_cts: Sequence[Any], active: set | None = None
) -> list[Any]:
    """Propagate output cotangents back to the jaxpr's inputs with the VJP rules.

    Args:
        jaxpr: the forward program.
        values: the value of every var seen in the forward pass (residuals).
        out_cts: one cotangent per output (None for zero).
        active: optionally, the vars whose cotangents can reach an input (see
            ``_residuals_and_active``). With it, on concrete values, each VJP rule
            runs as a cached jaxpr that computes only those cotangents (see
            ``_cached_rule``).

    Returns:
        One cotangent per input var (None where it is zero or not differentiable).
    """
    ct_env: dict[Var, Any] = {}
    add = lax.add

    def accumulate(v, ct):
        if ct is None or type(v) is Literal or not is_float_dtype(v.aval.dtype):
            return
        prev = ct_env.get(v)
        ct_env[v] = ct if prev is None else add(prev, ct)

    for v, ct in zip(jaxpr.outvars, out_cts):
        accumulate(v, ct)
    source_stack = _source_context
    for eqn in reversed(jaxpr.eqns):
        prim = eqn.primitive
        if not prim.differentiable:
            for v in eqn.outvars:
                ct_env.pop(v, None)
            continue
        cts_out = [ct_env.pop(v, None) for v in eqn.outvars]
        for c in cts_out:
            if c is not None:
                break
        else:
            continue
        invals = []
        for v in eqn.invars:
            if type(v) is Literal:
                invals.append(v.val)
            else:
                val = values.get(v, _MISSING)
                if val is _MISSING:
                    break  # inactive: no input depends on a differentiated value
                invals.append(val)
        else:
            outs = [values[v] for v in eqn.outvars]
            if prim.multiple_results:
                cts_arg = [_zeros_like(o) if c is None else c for c, o in zip(cts_out, outs)]
                out_arg = outs
            else:
                cts_arg, out_arg = cts_out[0], outs[0]
            # As ``core.source_context``: equations recorded by the rule are attributed
            # to the forward line.
            source_stack.append(f"{eqn.source_info} (in the VJP of {prim.name})")
            try:
                cts_in = None
                module = getattr(prim.vjp_rule, "__module__", None)
                if active is not None and module in _CACHEABLE_RULE_MODULES:
                    wanted = tuple(v in active for v in eqn.invars)
                    cts_in = _cached_rule(prim, wanted, cts_arg, invals, out_arg, eqn.params)
                if cts_in is None:
                    cts_in = prim.vjp_rule(cts_arg, *invals, out=out_arg, **eqn.params)
            except Exception as e:
                e.add_note(f"in the VJP of {prim.name}, from the forward line {eqn.source_info}")
                raise
            finally:
                source_stack.pop()
            for v, ct in zip(eqn.invars, cts_in):
                accumulate(v, ct)
    return [ct_env.get(v) for v in jaxpr.invars]


_MISSING = object()

# ---------------------------------------------------------------- cached VJP rules
#
# An eager backward pass applies each VJP rule to concrete values: the rule's Python
# (index bookkeeping, unbroadcast checks, scalar constants) runs every step, and it
# computes every operand's cotangent, also those nobody reads (a matmul's cotangent
# for the input batch, a divisor's). For the rules of fgrad.lax, which depend only on
# shapes, dtypes and params, the rule is traced once per signature into a jaxpr that
# keeps just the wanted cotangents (dead code removed); later steps evaluate it.

#: Modules whose VJP rules are pure functions of avals and params. Not control flow
#: (rules trace sub-jaxprs), nor custom_vjp/debug rules (user code, side effects).
_CACHEABLE_RULE_MODULES = frozenset(
    {
        "fgrad.lax.elementwise",
        "fgrad.lax.shapes",
        "fgrad.lax.contractions",
        "fgrad.lax.reductions",
        "fgrad.lax.indexing",
        "fgrad.lax.convolution",
        "fgrad.lax.windows",
        "fgrad.lax.bits",
    }
)
_RULE_CACHE: dict = {}
_UNCACHEABLE = object()


def _cached_rule(prim, wanted: tuple, cts_arg, invals: list, out_arg, params: dict):
    """The cotangents ``prim.vjp_rule`` gives for the ``wanted`` operands (None for the
    others), from the cached jaxpr of the rule; None when the rule cannot be cached
    (then the caller runs the rule itself)."""
    multiple = prim.multiple_results
    args = [*cts_arg, *invals, *out_arg] if multiple else [cts_arg, *invals, out_arg]
    sig = []
    for a in args:
        if type(a) is not Array:
            return None  # tracers (grad of grad, jit) or Python values: the rule itself
        v = a._v
        sig.append(v.shape)
        sig.append(v.dtype)
    try:
        pkey = tuple([(k, p.__class__, p) for k, p in params.items()])
        key = (prim, wanted, tuple(sig), pkey)
        entry = _RULE_CACHE.get(key)
    except TypeError:  # unhashable params
        return None
    if entry is None:
        entry = _trace_rule(prim, wanted, args, len(invals), params)
        if len(_RULE_CACHE) >= 4096:
            _RULE_CACHE.clear()
        _RULE_CACHE[key] = entry
    if entry is _UNCACHEABLE:
        return None
    program, n_slots, consts, results, positions = entry
    env = args + consts
    env += [None] * (n_slots - len(env))
    for p, ins, outs, params_ in program:
        vals = [env[i] for i in ins]
        for v in vals:
            if type(v) is not Array:
                res = p.bind(*vals, **params_)  # e.g. an outer trace's value
                if not p.multiple_results:
                    res = [res]
                break
        else:
            if vals:
                res = _execute(p, [v._v for v in vals], params_)[0]
            else:  # iota and the like: bind, in case an outer trace must record it
                res = p.bind(**params_)
                if not p.multiple_results:
                    res = [res]
        for i, r in zip(outs, res):
            env[i] = r
    cts = [None] * len(invals)
    for i, slot in zip(positions, results):
        cts[i] = env[slot]
    return cts


def _trace_rule(prim, wanted: tuple, args: list, n_in: int, params: dict):
    """Trace the rule abstractly, keep the wanted outputs, drop dead equations."""
    n_out = (len(args) - n_in) // 2 if prim.multiple_results else 1  # cts, ins, outs
    positions: list[int] = []

    def rule(*xs):
        if prim.multiple_results:
            cts, ins, outs = list(xs[:n_out]), xs[n_out : n_out + n_in], list(xs[n_out + n_in :])
        else:
            cts, ins, outs = xs[0], xs[1 : 1 + n_in], xs[1 + n_in]
        res = prim.vjp_rule(cts, *ins, out=outs, **params)
        kept = []
        for i, (r, w) in enumerate(zip(res, wanted)):
            if w and r is not None:
                positions.append(i)
                kept.append(_to_operand(r))
        return kept

    try:
        jaxpr, consts, _, _ = trace_to_jaxpr(rule, [a.aval for a in args], name="vjp rule")
    except Exception:  # e.g. a rule that needs concrete values: run it eagerly
        return _UNCACHEABLE
    live = {v for v in jaxpr.outvars if isinstance(v, Var)}
    eqns = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.primitive.effectful or any(v in live for v in eqn.outvars):
            eqns.append(eqn)
            live.update(v for v in eqn.invars if isinstance(v, Var))
    eqns.reverse()
    # As a flat program over a list of slots: the arguments, the constants (the
    # jaxpr's consts, then its literals), then each equation's outputs.
    n_args = len(args)
    consts = list(consts)
    slot: dict[Any, int] = {v: i for i, v in enumerate(jaxpr.invars)}
    for k, v in enumerate(jaxpr.constvars):
        slot[v] = n_args + k
    for atom in [v for eqn in eqns for v in eqn.invars] + list(jaxpr.outvars):
        if isinstance(atom, Literal) and atom not in slot:
            slot[atom] = n_args + len(consts)
            consts.append(atom.val)
    n = n_args + len(consts)
    program = []
    for eqn in eqns:
        ins = [slot[v] for v in eqn.invars]
        outs = []
        for v in eqn.outvars:
            slot[v] = n
            outs.append(n)
            n += 1
        program.append((eqn.primitive, ins, outs, eqn.params))
    results = [slot[v] for v in jaxpr.outvars]
    return program, n, consts, results, positions


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
    for leaf in tree_util.tree_leaves(diff_args):
        if type(leaf) is Array:
            if not is_float_dtype(leaf._v.dtype):
                break
        elif not is_float_dtype(_to_operand(leaf).dtype):
            break
    else:
        return  # all floating point (the common case: no key paths needed)
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
