"""``jit``: trace once per input signature, compile the whole jaxpr, cache the program.

The signature is (pytree structure, each leaf's shape and dtype, static arguments,
backend). A new signature retraces; the backend's compiler turns the jaxpr into a
program. On the CPU the generated Numba kernels depend only on dtypes and ranks, so a
new batch size retraces and regenerates a cheap Python driver but compiles nothing.

Called with tracers (inside ``grad``, ``jvp`` or another ``jit``), a jitted function
is inlined into the enclosing trace: the outer transformation sees its primitives.
Put ``jit`` outermost (``jit(grad(f))``) to compile the backward pass too.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fgrad import tree as tree_util
from fgrad.config import config
from fgrad.core import (
    Array,
    ClosedJaxpr,
    Tracer,
    asarray_operand,
    get_aval,
    get_backend,
    python_scalar_dtype,
    trace_to_jaxpr,
    user_frame,
)

logger = logging.getLogger("fgrad.jit")


class RetraceWarning(UserWarning):
    """A jitted function keeps being retraced because an argument's signature changes."""


def _leaf_value(x: Any) -> Any:
    """Concrete leaves as NumPy arrays; Python scalars stay dynamic (not recompiled)."""
    if isinstance(x, Array):
        return x._v
    if getattr(x, "fgrad_backend", None):  # a backend's device buffer
        return x
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, bool | int | float) and not isinstance(x, np.generic):
        return np.asarray(x, dtype=python_scalar_dtype(x))
    if isinstance(x, np.generic):
        return np.asarray(x)
    if hasattr(x, "__array__"):
        return np.asarray(x)
    raise TypeError(
        f"jit: argument leaf of type {type(x).__name__} is not an array; pass it with "
        f"static_argnums/static_argnames if it is a configuration value"
    )


class _Signature:
    __slots__ = ("key", "paths", "avals")

    def __init__(self, key, paths, avals):
        self.key = key
        self.paths = paths
        self.avals = avals


# ------------------------------------------------------------ the call fast path
#
# A jitted training step is called again and again with the same pytree structure
# and the same leaf shapes. For that case the generic path (tree_flatten, a key of
# (treedef, shapes, dtypes), tree_unflatten of the outputs) costs more than running
# a small program. So, once a structure has been seen, a flattener specialised to it
# is generated: straight-line code that checks the containers (exact type, length,
# keys), reads each leaf's buffer and builds the signature in one expression; any
# mismatch returns None and the call takes the generic path. Likewise each cached
# program gets a generated function that wraps its outputs and rebuilds the output
# pytree. Only dict/list/tuple/namedtuple/None containers and Array leaves are handled.

_FAST_NODES = (dict, list, tuple, type(None))


def _is_namedtuple(node_type) -> bool:
    return tree_util._kind_of(node_type) is tree_util._NAMEDTUPLE_KIND


def _spec_is_plain(spec) -> bool:
    if spec is tree_util._LEAF:
        return True
    node_type, _, children = spec
    return (node_type in _FAST_NODES or _is_namedtuple(node_type)) and all(
        _spec_is_plain(c) for c in children
    )


def _make_fast_flatten(spec):
    """Generate ``flatten(args) -> (vals, sig) | None`` for the tuple of positional
    arguments whose structure is ``spec`` (the spec of the list of arguments)."""
    if not _spec_is_plain(spec) or spec[0] is not list:
        return None
    lines: list[str] = []
    consts: dict[str, Any] = {}
    leaves: list[str] = []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def visit(node: str, sp, indent: str = "    ") -> None:
        if sp is tree_util._LEAF:
            leaves.append(node)
            return
        node_type, aux, children = sp
        if node_type is type(None):
            lines.append(f"{indent}if {node} is not None: return None")
            return
        tname = fresh("T")
        consts[tname] = node_type
        lines.append(
            f"{indent}if type({node}) is not {tname} or len({node}) != {len(children)}: return None"
        )
        unpack(node, node_type, aux, children, indent)

    def unpack(node, node_type, aux, children, indent) -> None:
        names = [fresh("n") for _ in children]
        if node_type is dict:
            for name, key in zip(names, aux):  # a missing key: KeyError, below
                kname = fresh("K")
                consts[kname] = key
                lines.append(f"{indent}{name} = {node}[{kname}]")
        elif names:
            lines.append(f"{indent}{', '.join(names)}, = {node}")
        for name, c in zip(names, children):
            visit(name, c, indent)

    # The root is the tuple of positional arguments (flattened as a list).
    lines.append(f"    if len(args) != {len(spec[2])}: return None")
    lines.append("    try:")
    lines.append("        pass")  # the body is empty for a function of no arguments
    unpack("args", list, None, spec[2], "        ")
    lines.append("    except KeyError:")
    lines.append("        return None")
    vals = []
    for leaf in leaves:
        v = fresh("v")
        lines.append(f"    if type({leaf}) is not _Array: return None")
        lines.append(f"    {v} = {leaf}._v")
        lines.append(f"    if type({v}) is not _ndarray: return None")
        vals.append(v)
    sig = "".join(f"{v}.shape, {v}.dtype, " for v in vals)
    lines.append(f"    return [{', '.join(vals)}], ({sig})")
    src = "def fast_flatten(args):\n" + "\n".join(lines) + "\n"
    g = {"_Array": Array, "_ndarray": np.ndarray, **consts}
    exec(compile(src, "<fgrad.jit fast_flatten>", "exec"), g)  # noqa: S102
    return g["fast_flatten"]


def _make_fast_unflatten(out_tree):
    """Generate ``unflatten(outs)``: wrap the program's outputs as Arrays and rebuild
    ``out_tree`` (as ``tree_unflatten(out_tree, [_wrap(o) for o in outs])``)."""
    spec = out_tree._spec
    if not _spec_is_plain(spec):
        return None
    consts: dict[str, Any] = {}
    n_leaves = out_tree.num_leaves
    counter = [0]

    def build(sp) -> str:
        if sp is tree_util._LEAF:
            i = counter[0]
            counter[0] += 1
            return f"a{i}"
        node_type, aux, children = sp
        if node_type is type(None):
            return "None"
        parts = [build(c) for c in children]
        if node_type is dict:
            items = []
            for key, part in zip(aux, parts):
                kname = f"K{len(consts)}"
                consts[kname] = key
                items.append(f"{kname}: {part}")
            return "{" + ", ".join(items) + "}"
        if node_type is list:
            return "[" + ", ".join(parts) + "]"
        if node_type is tuple:
            return "(" + "".join(p + ", " for p in parts) + ")"
        tname = f"T{len(consts)}"  # a namedtuple
        if not parts:  # immutable and empty (e.g. an optimizer's EmptyState): built once
            consts[tname] = node_type()
            return tname
        consts[tname] = node_type
        return f"{tname}({', '.join(parts)})"

    expr = build(spec)
    lines = []
    if n_leaves:
        lines.append(f"    {''.join(f'o{i}, ' for i in range(n_leaves))}= outs")
    for i in range(n_leaves):
        lines += [
            f"    a{i} = _new(_Array)",
            f"    if type(o{i}) is _ndarray: o{i}.setflags(False)",  # read-only
            f"    a{i}._v = o{i}",
        ]
    lines.append(f"    return {expr}")
    src = "def fast_unflatten(outs):\n" + "\n".join(lines) + "\n"
    g = {"_Array": Array, "_ndarray": np.ndarray, "_new": object.__new__, **consts}
    exec(compile(src, "<fgrad.jit fast_unflatten>", "exec"), g)  # noqa: S102
    return g["fast_unflatten"]


class JittedFunction:
    """A function compiled by ``fgrad.jit``; call it like the original."""

    def __init__(self, fun, static_argnums, static_argnames, backend, donate_argnums):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.backend = backend
        self.static_argnums = _normalize_static(fun, static_argnums, static_argnames)
        self.static_argnames = tuple(static_argnames)
        del donate_argnums  # accepted for JAX compatibility; buffers are not donated
        self._cache: OrderedDict = OrderedDict()
        self.trace_count = 0
        # Seconds spent tracing, generating and compiling (Numba compiles lazily, so
        # this includes each new program's first run).
        self.compile_time = 0.0
        self._last_sig: _Signature | None = None
        # The fast path (see _make_fast_flatten): the flattener of the last
        # structure seen, and its leaf signatures -> keys of ``_cache``.
        self._fast_flatten = None
        self._fast_keys: dict = {}
        # in_tree -> (flattener or None, its keys), for a few recent structures.
        self._fast_by_tree: dict = {}

    # ------------------------------------------------------------ call path
    def __call__(self, *args, **kwargs):
        fast = self._fast_flatten
        if fast is not None and not kwargs:
            found = fast(args)
            if found is not None:
                vals, fsig = found
                hit = self._fast_keys.get(fsig)
                if hit is not None and hit[1] == (self.backend or config.default_backend):
                    key, _, entry = hit
                    if len(self._cache) > 1:
                        self._cache.move_to_end(key)  # least recently used programs go first
                    outs = entry[0](*vals)
                    if config.debug_nans or config.debug_infs:
                        _check_outputs(entry[2], vals, outs)
                    return entry[3](outs)
        return self._call_slow(args, kwargs)

    def _call_slow(self, args, kwargs):
        if kwargs or self.static_argnums:
            static_pos = self.static_argnums
            static_kw = {k: kwargs[k] for k in self.static_argnames if k in kwargs}
            dyn_kwargs = {k: v for k, v in kwargs.items() if k not in static_kw}
            dyn_args = [a for i, a in enumerate(args) if i not in static_pos]
            static_key = _hashable_static(
                tuple((i, args[i]) for i in static_pos if i < len(args)), static_kw, self.fun
            )
        else:  # the common case: every argument is dynamic
            static_kw, dyn_kwargs, dyn_args, static_key = {}, {}, list(args), None
        leaves, in_tree = tree_util.tree_flatten((dyn_args, dyn_kwargs))
        vals = []
        sig = []
        data_backend = None  # computation follows data: a device buffer picks its backend
        for x in leaves:
            if type(x) is Array:
                v = x._v
            elif isinstance(x, Tracer):
                # Inside another transformation: inline, so it sees the primitives.
                return self.fun(*args, **kwargs)
            else:
                v = _leaf_value(x)
            if data_backend is None and type(v) is not np.ndarray:
                data_backend = v.fgrad_backend
            vals.append(v)
            sig.append((v.shape, v.dtype.num))
        backend = self.backend or data_backend or config.default_backend
        key = (in_tree, tuple(sig), static_key, backend)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._compile(key, args, kwargs, in_tree, vals, static_kw)
            program, out_tree, closed, fast_unflatten = entry
            t0 = time.perf_counter()
            outs = program(*vals)  # Numba compiles (or loads from disk) on first call
            self.compile_time += time.perf_counter() - t0
        else:
            if len(self._cache) > 1:
                self._cache.move_to_end(key)  # least recently used programs go first
            program, out_tree, closed, fast_unflatten = entry
            outs = program(*vals)
        if fast_unflatten is not None and not kwargs and not self.static_argnums:
            self._note_fast(in_tree, vals, key, entry)
        if config.debug_nans or config.debug_infs:
            _check_outputs(closed, vals, outs)
        if fast_unflatten is not None:
            return fast_unflatten(outs)
        wrap = _wrap
        return tree_util.tree_unflatten(out_tree, [wrap(o) for o in outs])

    def _note_fast(self, in_tree, vals, key, entry) -> None:
        """Let later calls with this structure and these leaves take the fast path."""
        if data_backend_of(vals) is not None:
            return
        try:
            known = self._fast_by_tree.get(in_tree)
        except TypeError:  # unhashable aux data in the structure
            return
        if known is None:
            if len(self._fast_by_tree) >= 8:
                self._fast_by_tree.clear()
            # in_tree is the structure of (args, kwargs): the spec of the args list.
            known = (_make_fast_flatten(in_tree._spec[2][0]), {})
            self._fast_by_tree[in_tree] = known
        self._fast_flatten, self._fast_keys = known
        if known[0] is None:
            return
        fsig = tuple(x for v in vals for x in (v.shape, v.dtype))
        if len(self._fast_keys) >= 4 * config.jit_cache_size:
            self._fast_keys.clear()
        self._fast_keys[fsig] = (key, key[3], entry)

    def _forget_fast(self) -> None:
        """Called whenever ``_cache`` drops programs: the fast path must not run them."""
        self._fast_flatten = None
        self._fast_keys = {}
        self._fast_by_tree = {}

    # ------------------------------------------------------------ tracing and compiling
    def _compile(self, key, args, kwargs, in_tree, vals, static_kw):
        t0 = time.perf_counter()
        static_pos = self.static_argnums
        avals = [get_aval(v) for v in vals]
        out_store = {}

        def flat_fun(*tracers):
            dyn_args, dyn_kwargs = tree_util.tree_unflatten(in_tree, list(tracers))
            it = iter(dyn_args)
            full = [args[i] if i in static_pos else next(it) for i in range(len(args))]
            out = self.fun(*full, **dyn_kwargs, **static_kw)
            flat_out, out_tree = tree_util.tree_flatten(out)
            out_store["tree"] = out_tree
            return [asarray_operand(o) for o in flat_out]

        jaxpr, consts, _, _ = trace_to_jaxpr(flat_fun, avals, name="jit")
        closed = ClosedJaxpr(jaxpr, consts)
        program = get_backend(key[3]).compile(closed)
        self.trace_count += 1
        elapsed = time.perf_counter() - t0
        self.compile_time += elapsed
        sig = self._signature(key, in_tree, avals, len(args))
        self._note_retrace(sig, elapsed)
        self._last_sig = sig
        out_tree = out_store["tree"]
        self._cache[key] = (program, out_tree, closed, _make_fast_unflatten(out_tree))
        while len(self._cache) > config.jit_cache_size:
            self._cache.popitem(last=False)
            self._forget_fast()
        return self._cache[key]

    def _signature(self, key, in_tree, avals, n_args) -> _Signature:
        dummy = tree_util.tree_unflatten(in_tree, list(range(len(avals))))
        dyn_positions = [i for i in range(n_args) if i not in self.static_argnums]
        paths = []
        for path, _ in tree_util.tree_flatten_with_path(dummy)[0]:
            rest = tree_util.keystr(path[2:])
            if path[0].idx == 0:
                paths.append(f"{dyn_positions[path[1].idx]}{rest}")
            else:
                paths.append(f"{path[1].key!r}{rest}")
        return _Signature(key, paths, avals)

    def _note_retrace(self, sig: _Signature, elapsed: float) -> None:
        name = getattr(self.fun, "__qualname__", repr(self.fun))
        shapes = ", ".join(a.str_short() for a in sig.avals)
        if config.log_compiles:
            logger.warning(
                "fgrad.jit: traced and compiled %s for (%s) in %.3f s (trace #%d)",
                name,
                shapes,
                elapsed,
                self.trace_count,
            )
        prev = self._last_sig
        if prev is None or self.trace_count < config.retrace_warning_threshold:
            return
        changed = _describe_change(prev, sig)
        warnings.warn(
            f"fgrad.jit: {name} has been traced {self.trace_count} times; the last retrace "
            f"was caused by {changed}. Each new signature (shapes, dtypes, pytree structure, "
            f"static arguments) compiles again: keep shapes fixed (pad the last batch) or "
            f"mark configuration arguments static.",
            RetraceWarning,
            stacklevel=5,  # the user's call: __call__, _call_slow, _compile, _note_retrace
        )

    def cache_size(self) -> int:
        """Number of compiled programs currently cached."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Drop every compiled program of this function."""
        self._cache.clear()
        self._forget_fast()

    def lower_jaxpr(self, *args, **kwargs) -> ClosedJaxpr:
        """The jaxpr this function compiles for these arguments (for inspection)."""
        from fgrad.core import make_jaxpr

        return make_jaxpr(self.fun, static_argnums=self.static_argnums)(*args, **kwargs)

    def program(self, *args, **kwargs):
        """The compiled program used for these arguments (compiling it if needed)."""
        self(*args, **kwargs)
        return next(reversed(self._cache.values()))[0] if self._cache else None


def data_backend_of(vals):
    """The backend of the first device buffer among ``vals`` (None: all NumPy)."""
    for v in vals:
        if type(v) is not np.ndarray:
            return v.fgrad_backend
    return None


def _check_outputs(closed: ClosedJaxpr, vals, outs) -> None:
    """With debug_nans/debug_infs: on a non-finite output, re-run the program one
    unfused equation at a time to name the first primitive that produced it."""
    bad = False
    for o in outs:
        if np.issubdtype(o.dtype, np.floating):
            if (config.debug_nans and np.isnan(o).any()) or (
                config.debug_infs and np.isinf(o).any()
            ):
                bad = True
    if not bad:
        return
    from fgrad.core import Literal, source_context

    jaxpr = closed.jaxpr
    env = dict(zip(jaxpr.constvars, closed.consts))
    env.update(zip(jaxpr.invars, [Array(np.array(v)) for v in vals]))
    for eqn in jaxpr.eqns:
        args = [v.val if isinstance(v, Literal) else env[v] for v in eqn.invars]
        with source_context(f"{eqn.source_info} (found by re-running the jitted program unfused)"):
            res = eqn.primitive.bind(*args, **eqn.params)
        res = res if eqn.primitive.multiple_results else [res]
        env.update(zip(eqn.outvars, res))
    raise FloatingPointError(
        "debug_nans: the jitted program produced a NaN/inf that no single primitive "
        "reproduces when run unfused (check the fused kernels against the reference backend)"
    )


def _wrap(v) -> Array:
    """Wrap a fresh program output (NumPy or device array) as an Array without
    Array.__init__'s checks."""
    a = object.__new__(Array)
    if type(v) is np.ndarray:
        v.setflags(False)  # read-only
    a._v = v
    return a


def _describe_change(prev: _Signature, new: _Signature) -> str:
    if prev.key[0] != new.key[0]:
        return f"a change of pytree structure ({prev.key[0]} -> {new.key[0]})"
    for path, a, b in zip(new.paths, prev.avals, new.avals):
        if a != b:
            return f"argument {path or '(root)'} changing from {a.str_short()} to {b.str_short()}"
    if prev.key[2] != new.key[2]:
        return "a change of a static argument's value"
    return "a new backend"


def _normalize_static(fun, static_argnums, static_argnames) -> tuple[int, ...]:
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    if static_argnames:
        try:
            params = list(inspect.signature(fun).parameters)
        except (TypeError, ValueError):
            params = []
        for name in static_argnames:
            if name in params:
                nums += (params.index(name),)
    return tuple(sorted(set(nums)))


def _hashable_static(static_pos, static_kw, fun):
    try:
        key = (static_pos, tuple(sorted(static_kw.items())))
        hash(key)
    except TypeError:
        bad = [repr(v)[:40] for _, v in static_pos] + [
            f"{k}={v!r}"[:40] for k, v in static_kw.items()
        ]
        raise TypeError(
            f"jit: static arguments must be hashable, but {getattr(fun, '__name__', fun)} got "
            f"an unhashable one among {', '.join(bad)} (at {user_frame()}). Pass arrays as "
            f"dynamic arguments, or convert lists to tuples."
        ) from None
    return key


def jit(
    fun: Callable | None = None,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    backend: str | None = None,
    donate_argnums: Sequence[int] = (),
):
    """Compile ``fun`` for the chosen backend; retrace only for new input signatures.

    Args:
        fun: a pure function of pytrees of arrays.
        static_argnums: positions of arguments that are Python values baked into the
            program (hashable; a new value compiles again).
        static_argnames: the same, by keyword name.
        backend: "cpu" (default, Numba), "reference" (NumPy) or "cuda".
        donate_argnums: accepted for JAX compatibility (ignored).

    Returns:
        A ``JittedFunction`` with ``fun``'s signature. Usable as a decorator, also as
        ``@jit(static_argnums=...)``.

    Example:
        >>> import fgrad, fgrad.numpy as fnp
        >>> f = fgrad.jit(lambda x, y: fnp.tanh(x) * y + 1.0)
        >>> f(fnp.zeros(3), 2.0).tolist()
        [1.0, 1.0, 1.0]
    """
    if isinstance(static_argnames, str):
        static_argnames = (static_argnames,)
    if fun is None:
        return lambda f: JittedFunction(f, static_argnums, static_argnames, backend, donate_argnums)
    return JittedFunction(fun, static_argnums, static_argnames, backend, donate_argnums)
