"""The primitive test table: for every primitive, how to draw valid operands and params.

``tests/test_primitives.py`` sweeps the registry (``fgrad.core.primitives``) with this
table: finite-difference checks of the VJP and JVP rules to second order, every backend
against the reference backend, and JAX cross-checks. A registered primitive without an
entry here fails the sweep, so adding a primitive is its declaration plus one entry:

    CASES["exp"] = Case(unary(-2.0, 2.0), jax=lambda x: jlax.exp(x))

A ``Case`` holds a generator ``gen(d) -> (args, params)``. ``d`` is a ``Draw``: it draws
shapes and small integers through hypothesis (so failures shrink to small shapes) and
values from a seeded NumPy generator, in ``d.dtype`` (the dtype under test). ``args``
are NumPy arrays, in the primitive's operand order; ``params`` are its keyword params,
exactly as ``Primitive.bind`` takes them. Generators draw values AWAY from kinks, ties
and singularities (by at least ~0.1, far more than the finite-difference step), so the
derivative is well defined there; the conventions exactly at kinks and ties are pinned
by named tests instead. When ``d.for_grad`` is set the case is used for derivative
checks (float64) and should give at least one floating output.

Higher-order primitives (``scan``, ``cond``, ``custom_jvp_call``, ...) carry traced
sub-jaxprs in their params, so their generators trace a small function with the public
API and take the operands and params of that one equation (``traced``).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

F32, F64, I32, BOOL, U32 = "float32", "float64", "int32", "bool", "uint32"
FLOATS = (F32, F64)
NUMERIC = (F32, F64, I32)
ALL = (F32, F64, I32, BOOL)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_tool():
    """``tools/gen_primitive_table.py`` as a module: its ``load_primitives`` imports every
    fgrad module, so the docs table and the sweep see the same registry."""
    path = os.path.join(_ROOT, "tools", "gen_primitive_table.py")
    spec = importlib.util.spec_from_file_location("gen_primitive_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Lazy:
    """A module imported on first attribute access (JAX is only a test oracle)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


jlax = _Lazy("jax.lax")
jnp = _Lazy("jax.numpy")


# ---------------------------------------------------------------- drawing operands


class Draw:
    """Draws one case: shapes and small ints via hypothesis, values from a seeded RNG."""

    def __init__(self, data: Any, dtype: str, for_grad: bool = False):
        self.data = data
        self.dtype = np.dtype(dtype)
        self.for_grad = for_grad
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))

    # ---- structure (hypothesis: shrinks toward small shapes)
    def int(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return self.data.draw(st.integers(lo, hi))

    def flag(self) -> bool:
        return self.data.draw(st.booleans())

    def choice(self, options):
        return self.data.draw(st.sampled_from(list(options)))

    def shape(self, min_rank=0, max_rank=3, min_side=0, max_side=4) -> tuple[int, ...]:
        """A shape; with ``min_side == 0`` about one in eight has a size-0 axis."""
        sides = st.integers(max(min_side, 1), max_side)
        shape = self.data.draw(st.lists(sides, min_size=min_rank, max_size=max_rank))
        if min_side == 0 and shape and self.int(0, 7) == 0:
            shape[self.int(0, len(shape) - 1)] = 0
        return tuple(shape)

    def size(self, lo: int = 0, hi: int = 3) -> int:
        """One axis length in ``[max(lo, 1), hi]``, or 0 about one time in eight if lo == 0."""
        if lo == 0 and self.int(0, 7) == 0:
            return 0
        return self.int(max(lo, 1), hi)

    def subset(self, items, min_size=0, max_size=None) -> tuple:
        """A sorted subset of ``items``."""
        items = list(items)
        if not items:
            return ()
        chosen = self.data.draw(
            st.lists(st.sampled_from(items), min_size=min_size, max_size=max_size, unique=True)
            if min_size <= len(items)
            else st.nothing()
        )
        return tuple(sorted(chosen))

    def permutation(self, n: int) -> tuple[int, ...]:
        return tuple(self.data.draw(st.permutations(list(range(n)))))

    def binary_shapes(self, **kw) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Equal shapes, or one operand rank 0 (elementwise binaries broadcast scalars)."""
        shape = self.shape(**kw)
        kind = self.choice(["same", "same", "lhs_scalar", "rhs_scalar"])
        return (
            ((), shape)
            if kind == "lhs_scalar"
            else (shape, ())
            if kind == "rhs_scalar"
            else (
                shape,
                shape,
            )
        )

    # ---- values (seeded NumPy; ``self.dtype`` unless told)
    def _cast(self, v, dtype=None) -> np.ndarray:
        return np.asarray(v).astype(dtype or self.dtype)

    def any(self, shape, dtype=None) -> np.ndarray:
        """Generic values: normal floats, small integers, random booleans."""
        dtype = np.dtype(dtype or self.dtype)
        if dtype == np.bool_:
            return self.rng.random(shape) < 0.5
        if np.issubdtype(dtype, np.unsignedinteger):
            return self.rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
        if np.issubdtype(dtype, np.integer):
            return self.rng.integers(-5, 6, shape).astype(dtype)
        return self._cast(self.rng.normal(size=shape) * 1.5, dtype)

    def uniform(self, shape, lo: float, hi: float) -> np.ndarray:
        """Floats in ``[lo, hi)``; integers in ``[ceil(lo), floor(hi)]`` for int dtypes."""
        if np.issubdtype(self.dtype, np.integer):
            return self.rng.integers(math.ceil(lo), math.floor(hi) + 1, shape).astype(self.dtype)
        return self._cast(self.rng.uniform(lo, hi, shape))

    def away_from_zero(self, shape, lo=0.2, hi=2.0) -> np.ndarray:
        """Magnitudes in ``[lo, hi]`` with random signs (non-zero integers for ints)."""
        sign = np.where(self.rng.random(shape) < 0.5, -1, 1)
        if np.issubdtype(self.dtype, np.integer):
            mag = self.rng.integers(max(1, math.ceil(lo)), max(1, math.floor(hi)) + 1, shape)
            return (sign * mag).astype(self.dtype)
        return self._cast(sign * self.rng.uniform(lo, hi, shape))

    def off_grid(self, shape, lo: float, hi: float) -> np.ndarray:
        """``k + u`` for a random integer k and ``u`` in ``[lo, hi]`` (away from jumps)."""
        k = self.rng.integers(-3, 4, shape)
        return self._cast(k + self.rng.uniform(lo, hi, shape))

    def distinct(self, shape, spacing=0.25) -> np.ndarray:
        """All-distinct values (no ties anywhere), at least ``spacing`` apart."""
        n = int(np.prod(shape, dtype=np.int64))
        perm = self.rng.permutation(n) - n // 2
        if np.issubdtype(self.dtype, np.integer):
            return perm.reshape(shape).astype(self.dtype)
        jitter = self.rng.uniform(0, 0.2 * spacing, n)
        return self._cast((perm * spacing + jitter).reshape(shape))

    def indices(self, shape, lo: int, hi: int) -> np.ndarray:
        """int32 indices in ``[lo, hi]``."""
        return self.rng.integers(lo, hi + 1, shape).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Case:
    """How to test one primitive.

    Attributes:
        gen: ``gen(d: Draw) -> (args, params)``.
        dtypes: dtypes ``gen`` supports (the backend sweep runs each; derivative checks
            run float64 when the primitive is differentiable).
        fd: the derivative rules compute the function's true derivative (False for
            ``stop_gradient``, whose derivative is zero by definition).
        second_order: check second derivatives against finite differences.
        jax: ``jax(*args, **params)`` with JAX's same-semantics counterpart, or None.
        examples: fraction of the hypothesis profile's ``max_examples`` to run (lower
            for expensive primitives).
        forward, reverse: whether forward mode (jvp) / reverse mode (vjp) is defined;
            ``while`` has no reverse mode and ``custom_vjp_call`` no forward mode (as in
            JAX): using them must raise a clear error instead.
    """

    gen: Callable[[Draw], tuple[list, dict]]
    dtypes: tuple[str, ...] = FLOATS
    fd: bool = True
    second_order: bool = True
    jax: Callable | None = None
    examples: float = 1.0
    forward: bool = True
    reverse: bool = True


CASES: dict[str, Case] = {}

# Primitives the sweep expects from modules still being written: an entry here whose
# primitive is not registered (yet) is not an error. (Empty: all have landed.)
PENDING: set[str] = set()


# ---------------------------------------------------------------- generator builders


def unary(lo: float, hi: float, **shape_kw) -> Callable:
    """One operand with values in ``[lo, hi)``."""
    return lambda d: ([d.uniform(d.shape(**shape_kw), lo, hi)], {})


def unary_any(d: Draw):
    return [d.any(d.shape())], {}


def unary_nonzero(d: Draw):
    return [d.away_from_zero(d.shape())], {}


def binary(make_y: Callable | None = None, x_range=None) -> Callable:
    """Two operands of equal shape or with one of rank 0; ``make_y(d, x, shape)``."""

    def gen(d: Draw):
        sx, sy = d.binary_shapes()
        x = d.any(sx) if x_range is None else d.uniform(sx, *x_range)
        y = d.any(sy) if make_y is None else make_y(d, x, sy)
        return [x, y], {}

    return gen


def distinct_pair(d: Draw):
    """Two operands (one may be rank 0) that differ everywhere by >= 0.2: no ties."""
    sx, sy = d.binary_shapes()
    if sx == ():
        x = d.any(sx)
        y = x + d.away_from_zero(sy)
    else:
        y = d.any(sy)
        x = y + d.away_from_zero(sx)
    return [x.astype(d.dtype), y.astype(d.dtype)], {}


def comparison(d: Draw):
    """Small integer-valued operands, so ties (x == y) are frequent."""
    sx, sy = d.binary_shapes()
    if d.dtype == np.bool_:
        return [d.any(sx), d.any(sy)], {}
    return [
        d.uniform(sx, -2, 2).round().astype(d.dtype),
        d.uniform(sy, -2, 2).round().astype(d.dtype),
    ], {}


def reduction(values: str) -> Callable:
    def gen(d: Draw):
        shape = d.shape(min_rank=1, min_side=0 if values in ("any", "prod") else 1)
        axes = d.subset(range(len(shape)))
        if values == "any":
            x = d.any(shape)
        elif values == "prod":
            x = (
                d.away_from_zero(shape, 0.5, 1.5)
                if d.dtype.kind == "f"
                else d.uniform(shape, -2, 2)
            )
        else:
            x = d.distinct(shape)
        return [x], {"axes": axes}

    return gen


def arg_reduction(d: Draw):
    shape = d.shape(min_rank=1)
    axis = d.int(0, len(shape) - 1)
    shape = tuple(max(n, 1) if i == axis else n for i, n in enumerate(shape))
    return [d.distinct(shape)], {"axis": axis, "index_dtype": np.dtype(np.int32)}


# ---------------------------------------------------------------- elementwise

_SMOOTH = {
    # name: (lo, hi, jax function)
    "exp": (-2.0, 2.0, lambda x: jlax.exp(x)),
    "log": (0.3, 3.0, lambda x: jlax.log(x)),
    "log1p": (-0.5, 2.0, lambda x: jlax.log1p(x)),
    "expm1": (-2.0, 2.0, lambda x: jlax.expm1(x)),
    "tanh": (-2.0, 2.0, lambda x: jlax.tanh(x)),
    "logistic": (-3.0, 3.0, lambda x: jlax.logistic(x)),
    "sin": (-3.0, 3.0, lambda x: jlax.sin(x)),
    "cos": (-3.0, 3.0, lambda x: jlax.cos(x)),
    "tan": (-1.2, 1.2, lambda x: jlax.tan(x)),
    "sqrt": (0.3, 3.0, lambda x: jlax.sqrt(x)),
    "rsqrt": (0.3, 3.0, lambda x: jlax.rsqrt(x)),
    "erf": (-2.0, 2.0, lambda x: jlax.erf(x)),
    "erf_inv": (-0.9, 0.9, lambda x: jlax.erf_inv(x)),
}
for _name, (_lo, _hi, _jax) in _SMOOTH.items():
    CASES[_name] = Case(unary(_lo, _hi), jax=_jax)

CASES["neg"] = Case(unary_any, dtypes=NUMERIC, jax=lambda x: jlax.neg(x))
CASES["abs"] = Case(unary_nonzero, dtypes=NUMERIC, jax=lambda x: jlax.abs(x))
CASES["sign"] = Case(unary_nonzero, dtypes=NUMERIC, jax=lambda x: jlax.sign(x))
CASES["floor"] = Case(
    lambda d: ([d.off_grid(d.shape(), 0.1, 0.9)], {}), jax=lambda x: jlax.floor(x)
)
CASES["ceil"] = Case(lambda d: ([d.off_grid(d.shape(), 0.1, 0.9)], {}), jax=lambda x: jlax.ceil(x))
CASES["round"] = Case(
    lambda d: ([d.off_grid(d.shape(), -0.4, 0.4)], {"rounding_method": d.choice([0, 1])}),
    jax=lambda x, rounding_method: jlax.round(x, rounding_method),
)

CASES["add"] = Case(binary(), dtypes=NUMERIC, jax=lambda x, y: jlax.add(x, y))
CASES["sub"] = Case(binary(), dtypes=NUMERIC, jax=lambda x, y: jlax.sub(x, y))
CASES["mul"] = Case(binary(), dtypes=NUMERIC, jax=lambda x, y: jlax.mul(x, y))
CASES["div"] = Case(
    binary(lambda d, x, s: d.away_from_zero(s, 0.5, 3.0)),
    dtypes=NUMERIC,
    jax=lambda x, y: jlax.div(x, y),
)
CASES["pow"] = Case(
    binary(lambda d, x, s: d.uniform(s, -2.0, 2.0), x_range=(0.5, 2.0)),
    jax=lambda x, y: jlax.pow(x, y),
)
CASES["max"] = Case(distinct_pair, dtypes=NUMERIC, jax=lambda x, y: jlax.max(x, y))
CASES["min"] = Case(distinct_pair, dtypes=NUMERIC, jax=lambda x, y: jlax.min(x, y))


def _integer_pow(d: Draw):
    if d.dtype.kind == "f":
        y = d.int(-3, 4)
        return [d.away_from_zero(d.shape(), 0.5, 1.5)], {"y": y}
    return [d.uniform(d.shape(), -3, 3)], {"y": d.int(0, 4)}


CASES["integer_pow"] = Case(_integer_pow, dtypes=NUMERIC, jax=lambda x, y: jlax.integer_pow(x, y))

for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    CASES[_name] = Case(comparison, dtypes=ALL, jax=lambda x, y, _n=_name: getattr(jlax, _n)(x, y))

_LOGICAL = {"and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor"}
for _name, _jname in _LOGICAL.items():
    CASES[_name] = Case(
        binary(), dtypes=(BOOL, I32), jax=lambda x, y, _j=_jname: getattr(jlax, _j)(x, y)
    )
CASES["not"] = Case(unary_any, dtypes=(BOOL, I32), jax=lambda x: jlax.bitwise_not(x))


def _convert(d: Draw):
    x = d.any(d.shape())
    # Derivative checks keep float64 (a float32 round trip would swamp the FD step).
    new = np.dtype(F64) if d.for_grad else np.dtype(d.choice(ALL))
    return [x], {"new_dtype": new}


CASES["convert_element_type"] = Case(
    _convert, dtypes=ALL, jax=lambda x, new_dtype: jlax.convert_element_type(x, new_dtype)
)
CASES["stop_gradient"] = Case(unary_any, dtypes=ALL, fd=False, jax=lambda x: jlax.stop_gradient(x))


def _select_n(d: Draw):
    shape = d.shape()
    n = 2 if d.flag() else d.int(1, 3)
    which_shape = () if d.flag() else shape
    if n == 2 and d.flag():
        which = d.rng.random(which_shape) < 0.5
    else:
        which = d.indices(which_shape, 0, n - 1)
    return [which] + [d.any(shape) for _ in range(n)], {}


CASES["select_n"] = Case(_select_n, dtypes=ALL, jax=lambda which, *cs: jlax.select_n(which, *cs))


# ---------------------------------------------------------------- indexing


def _gather(d: Draw):
    n = d.int(1, 4)
    x = d.any((n,) + d.shape(max_rank=2))
    # Negative indices wrap; out-of-range ones (here n and -n - 1) clamp.
    idx = d.indices(d.shape(max_rank=2), -n - 1, n)
    return [x, idx], {}


def _jax_gather(x, idx):
    n = x.shape[0]
    return x[jnp.clip(jnp.where(idx < 0, idx + n, idx), 0, n - 1)]


CASES["gather"] = Case(_gather, dtypes=ALL, jax=_jax_gather)


def _scatter(d: Draw):
    n = d.int(1, 4)
    mode = d.choice(["add", "set", "mul", "min", "max"])
    rest = d.shape(max_rank=2)
    x = d.any((n,) + rest)
    if mode == "add":
        # Duplicates accumulate; out-of-range updates (n, -n - 1) are dropped.
        idx = d.indices(d.shape(max_rank=2), -n - 1, n)
    else:
        # set/mul/min/max: each position written at most once (the order of duplicate
        # writes is unspecified, as in JAX); some written as negative indices.
        k = d.int(0, n)
        pos = d.rng.permutation(n)[:k]
        pos = np.where(d.rng.random(k) < 0.3, pos - n, pos)
        if d.flag():
            pos = np.append(pos, d.choice([n, -n - 1]))  # dropped
        idx = d.rng.permutation(pos).astype(np.int32)
    u_shape = idx.shape + rest
    if mode in ("min", "max"):
        # Updates differ from the operand entries they compete with: no ties.
        target = x[np.clip(np.where(idx < 0, idx + n, idx), 0, n - 1)]
        u = (target + d.away_from_zero(u_shape, 0.2, 2.0)).astype(d.dtype)
    else:
        u = d.any(u_shape)
    return [x, idx, u], {"mode": mode}


def _jax_scatter(x, idx, u, mode):
    ref = x.at[idx]
    op = {"add": ref.add, "set": ref.set, "mul": ref.multiply, "min": ref.min, "max": ref.max}
    kw = {} if mode == "add" else {"unique_indices": True}
    return op[mode](u, mode="drop", **kw)


CASES["scatter"] = Case(_scatter, dtypes=NUMERIC, jax=_jax_scatter)


# ---------------------------------------------------------------- reductions

CASES["reduce_sum"] = Case(
    reduction("any"), dtypes=NUMERIC, jax=lambda x, axes: jnp.sum(x, axis=axes)
)
CASES["reduce_max"] = Case(
    reduction("distinct"), dtypes=NUMERIC, jax=lambda x, axes: jnp.max(x, axis=axes)
)
CASES["reduce_min"] = Case(
    reduction("distinct"), dtypes=NUMERIC, jax=lambda x, axes: jnp.min(x, axis=axes)
)
CASES["reduce_prod"] = Case(
    reduction("prod"), dtypes=NUMERIC, jax=lambda x, axes: jnp.prod(x, axis=axes)
)
CASES["argmax"] = Case(
    arg_reduction,
    dtypes=NUMERIC,
    jax=lambda x, axis, index_dtype: jlax.argmax(x, axis, index_dtype),
)
CASES["argmin"] = Case(
    arg_reduction,
    dtypes=NUMERIC,
    jax=lambda x, axis, index_dtype: jlax.argmin(x, axis, index_dtype),
)


def _cumsum(d: Draw):
    shape = d.shape(min_rank=1)
    return [d.any(shape)], {"axis": d.int(0, len(shape) - 1), "reverse": d.flag()}


CASES["cumsum"] = Case(
    _cumsum, dtypes=NUMERIC, jax=lambda x, axis, reverse: jlax.cumsum(x, axis, reverse)
)


def _argsort(d: Draw):
    shape = d.shape(min_rank=1)
    return [d.distinct(shape)], {"axis": d.int(0, len(shape) - 1), "descending": d.flag()}


CASES["argsort"] = Case(
    _argsort,
    dtypes=NUMERIC,
    jax=lambda x, axis, descending: jnp.argsort(x, axis=axis, descending=descending).astype(
        np.int32
    ),
)


# ---------------------------------------------------------------- structural


def _broadcast_in_dim(d: Draw):
    shape = d.shape(max_rank=4)
    dims = d.subset(range(len(shape)))
    operand_shape = tuple(shape[i] if d.flag() else 1 for i in dims)
    return [d.any(operand_shape)], {"shape": shape, "broadcast_dimensions": dims}


CASES["broadcast_in_dim"] = Case(
    _broadcast_in_dim,
    dtypes=ALL,
    jax=lambda x, shape, broadcast_dimensions: jlax.broadcast_in_dim(
        x, shape, broadcast_dimensions
    ),
)


def _reshape(d: Draw):
    shape = d.shape(max_rank=4)
    # Regroup adjacent axes (merge some neighbours) and sprinkle in size-1 axes.
    new, acc = [], 1
    for i, n in enumerate(shape):
        acc *= n
        if i == len(shape) - 1 or d.flag():
            new.append(acc)
            acc = 1
    for _ in range(d.int(0, 2)):
        new.insert(d.int(0, len(new)), 1)
    return [d.any(shape)], {"new_sizes": tuple(new)}


CASES["reshape"] = Case(_reshape, dtypes=ALL, jax=lambda x, new_sizes: jlax.reshape(x, new_sizes))


def _transpose(d: Draw):
    shape = d.shape(max_rank=4)
    return [d.any(shape)], {"permutation": d.permutation(len(shape))}


CASES["transpose"] = Case(
    _transpose, dtypes=ALL, jax=lambda x, permutation: jlax.transpose(x, permutation)
)


def _squeeze(d: Draw):
    shape = list(d.shape(max_rank=3))
    for _ in range(d.int(1, 2)):
        shape.insert(d.int(0, len(shape)), 1)
    ones = [i for i, n in enumerate(shape) if n == 1]
    return [d.any(tuple(shape))], {"dimensions": d.subset(ones, min_size=1)}


CASES["squeeze"] = Case(_squeeze, dtypes=ALL, jax=lambda x, dimensions: jlax.squeeze(x, dimensions))


def _expand_dims(d: Draw):
    shape = d.shape()
    k = d.int(1, 2)
    return [d.any(shape)], {"dimensions": d.subset(range(len(shape) + k), k, k)}


CASES["expand_dims"] = Case(
    _expand_dims, dtypes=ALL, jax=lambda x, dimensions: jlax.expand_dims(x, dimensions)
)


def _concatenate(d: Draw):
    shape = d.shape(min_rank=1)
    dim = d.int(0, len(shape) - 1)
    xs = []
    for _ in range(d.int(1, 3)):
        s = list(shape)
        s[dim] = d.size(0, 3)
        xs.append(d.any(tuple(s)))
    return xs, {"dimension": dim}


CASES["concatenate"] = Case(
    _concatenate, dtypes=ALL, jax=lambda *xs, dimension: jlax.concatenate(xs, dimension)
)


def _pad(d: Draw):
    shape = d.shape()
    config = []
    for n in shape:
        lo, hi, interior = d.int(-2, 2), d.int(-2, 2), d.int(0, 2)
        if lo + hi + n + max(n - 1, 0) * interior < 0:
            lo, hi = max(lo, 0), max(hi, 0)
        config.append((lo, hi, interior))
    return [d.any(shape), d.any(())], {"padding_config": tuple(config)}


CASES["pad"] = Case(
    _pad, dtypes=ALL, jax=lambda x, v, padding_config: jlax.pad(x, v, padding_config)
)


def _slice(d: Draw):
    shape = d.shape()
    start = tuple(d.int(0, n) for n in shape)
    limit = tuple(d.int(s, n) for s, n in zip(start, shape))
    strides = tuple(d.int(1, 3) for _ in shape)
    return [d.any(shape)], {"start_indices": start, "limit_indices": limit, "strides": strides}


CASES["slice"] = Case(
    _slice,
    dtypes=ALL,
    jax=lambda x, start_indices, limit_indices, strides: jlax.slice(
        x, start_indices, limit_indices, strides
    ),
)


def _starts(d: Draw, shape):
    # Out-of-range starts (negative, or past n - size) are clamped, as in JAX.
    return [np.int32(d.int(-2, n + 1)) for n in shape]


def _dynamic_slice(d: Draw):
    shape = d.shape()
    sizes = tuple(d.int(0, n) for n in shape)
    return [d.any(shape), *_starts(d, shape)], {"slice_sizes": sizes}


CASES["dynamic_slice"] = Case(
    _dynamic_slice,
    dtypes=ALL,
    jax=lambda x, *idx, slice_sizes: jlax.dynamic_slice(x, idx, slice_sizes),
)


def _dynamic_update_slice(d: Draw):
    shape = d.shape()
    update = d.any(tuple(d.int(0, n) for n in shape))
    return [d.any(shape), update, *_starts(d, shape)], {}


CASES["dynamic_update_slice"] = Case(
    _dynamic_update_slice,
    dtypes=ALL,
    jax=lambda x, u, *idx: jlax.dynamic_update_slice(x, u, idx),
)


# ---------------------------------------------------------------- contractions


def _dot_general(d: Draw):
    nb, nc, nl, nr = d.int(0, 1), d.int(0, 2), d.int(0, 2), d.int(0, 1)
    b = [d.int(1, 3) for _ in range(nb)]
    c = [d.size(0, 3) for _ in range(nc)]
    lf = [d.int(1, 3) for _ in range(nl)]
    rf = [d.int(1, 3) for _ in range(nr)]
    # Axis roles in a random order on each side: where batch/contract/free dims live.
    lperm, rperm = d.permutation(nb + nc + nl), d.permutation(nb + nc + nr)
    lsizes, rsizes = b + c + lf, b + c + rf
    lshape = [0] * len(lsizes)
    rshape = [0] * len(rsizes)
    for role, axis in enumerate(lperm):
        lshape[axis] = lsizes[role]
    for role, axis in enumerate(rperm):
        rshape[axis] = rsizes[role]
    batch = (tuple(lperm[:nb]), tuple(rperm[:nb]))
    contract = (tuple(lperm[nb : nb + nc]), tuple(rperm[nb : nb + nc]))
    x, y = d.any(tuple(lshape)), d.any(tuple(rshape))
    return [x, y], {"contract": contract, "batch": batch}


CASES["dot_general"] = Case(
    _dot_general,
    dtypes=NUMERIC,
    jax=lambda x, y, contract, batch: jlax.dot_general(x, y, (contract, batch)),
)


# ---------------------------------------------------------------- convolution and windows


def _conv(d: Draw):
    n = d.int(1, 2)
    g, i = d.int(1, 2), d.int(1, 2)
    o = g * d.int(1, 2)
    spatial = [d.int(1, 5) for _ in range(n)]
    window = [d.int(1, 3) for _ in range(n)]
    params = {
        "window_strides": tuple(d.int(1, 2) for _ in range(n)),
        "padding": tuple((d.int(-1, 2), d.int(-1, 2)) for _ in range(n)),
        "lhs_dilation": tuple(d.int(1, 2) for _ in range(n)),
        "rhs_dilation": tuple(d.int(1, 2) for _ in range(n)),
        "feature_group_count": g,
    }
    for k in range(n):  # negative padding may not crop more than the dilated input
        size = (spatial[k] - 1) * params["lhs_dilation"][k] + 1
        lo, hi = params["padding"][k]
        if size + lo + hi < 0:
            params["padding"] = tuple(
                (0, 0) if j == k else p for j, p in enumerate(params["padding"])
            )
    lhs = d.any((d.int(1, 2), *spatial, g * i))
    rhs = d.any((*window, i, o))
    return [lhs, rhs], params


def _jax_conv(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation, **kw):
    spatial = "DHW"[3 - (lhs.ndim - 2) :]
    specs = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    return jlax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers=specs,
        feature_group_count=kw["feature_group_count"],
    )


CASES["conv_general_dilated"] = Case(_conv, dtypes=NUMERIC, jax=_jax_conv, examples=0.5)


def _window(values: str) -> Callable:
    def gen(d: Draw):
        shape = d.shape(min_rank=1, min_side=1)
        dims = tuple(d.int(1, 3) for _ in shape)
        strides = tuple(d.int(1, 2) for _ in shape)
        if values == "distinct":
            # Padding narrower than the window, so no window is all padding (-inf).
            padding = tuple((d.int(0, w - 1), d.int(0, w - 1)) for w in dims)
        else:
            padding = tuple(
                (lo, hi) if n + lo + hi >= 0 else (0, 0)
                for n, lo, hi in ((n, d.int(-1, 2), d.int(-1, 2)) for n in shape)
            )
        x = d.distinct(shape) if values == "distinct" else d.any(shape)
        return [x], {"window_dimensions": dims, "window_strides": strides, "padding": padding}

    return gen


def _jax_window(init, op):
    def fn(x, window_dimensions, window_strides, padding):
        if np.issubdtype(x.dtype, np.integer) and init == -np.inf:
            start = np.iinfo(x.dtype).min
        else:
            start = np.array(init, x.dtype)
        return jlax.reduce_window(
            x, start, getattr(jlax, op), window_dimensions, window_strides, padding
        )

    return fn


CASES["reduce_window_sum"] = Case(
    _window("any"), dtypes=NUMERIC, jax=_jax_window(0, "add"), examples=0.5
)
CASES["reduce_window_max"] = Case(
    _window("distinct"), dtypes=NUMERIC, jax=_jax_window(-np.inf, "max"), examples=0.5
)


def _select_and_scatter(d: Draw):
    [x], params = _window("distinct")(d)
    out_shape = tuple(
        max(0, (n + lo + hi - w) // s + 1)
        for n, w, s, (lo, hi) in zip(
            x.shape, params["window_dimensions"], params["window_strides"], params["padding"]
        )
    )
    return [d.any(out_shape), x], params


def _jax_select_and_scatter(source, operand, window_dimensions, window_strides, padding):
    import jax

    def pool(x):
        return _jax_window(-np.inf, "max")(x, window_dimensions, window_strides, padding)

    return jax.vjp(pool, operand)[1](source)[0]


CASES["select_and_scatter_add"] = Case(
    _select_and_scatter, jax=_jax_select_and_scatter, examples=0.5
)


# ---------------------------------------------------------------- bits (threefry PRNG support)


def _shift(d: Draw):
    # Amounts of the bit width or more are well defined (XLA: 0 or the sign fill).
    sx, sy = d.binary_shapes()
    return [d.any(sx), d.rng.integers(0, 40, sy).astype(d.dtype)], {}


for _name in ("shift_left", "shift_right_logical", "shift_right_arithmetic"):
    CASES[_name] = Case(
        _shift, dtypes=(I32, U32), jax=lambda x, y, _n=_name: getattr(jlax, _n)(x, y)
    )


def _threefry(d: Draw):
    shape = d.shape()
    k_shape = () if d.flag() else shape
    u32 = np.dtype(U32)
    keys = [d.any(k_shape, u32), d.any(k_shape, u32)]
    return keys + [d.any(shape, u32), d.any(shape, u32)], {}


CASES["threefry2x32"] = Case(
    _threefry,
    dtypes=(U32,),
    jax=lambda *args: _Lazy("jax.extend.random").threefry2x32_p.bind(*args),
)

CASES["iota_2x32_shape"] = Case(lambda d: ([], {"shape": d.shape()}), dtypes=(U32,))

# Bitcast targets per source dtype: equal widths keep the shape; float64 -> uint32 adds
# a trailing axis of 2, and uint32[..., 2] -> float64 removes it.
_BITCAST = {F32: (I32, U32), I32: (F32, U32), U32: (F32, I32, F64), F64: (U32, I32)}


def _bitcast(d: Draw):
    target = np.dtype(d.choice(_BITCAST[d.dtype.name]))
    shape = d.shape()
    if target.itemsize > d.dtype.itemsize:
        shape = shape + (target.itemsize // d.dtype.itemsize,)
    return [d.any(shape)], {"new_dtype": target}


CASES["bitcast_convert_type"] = Case(
    _bitcast,
    dtypes=(F32, F64, I32, U32),
    jax=lambda x, new_dtype: jlax.bitcast_convert_type(x, new_dtype),
)


# ---------------------------------------------------------------- higher-order primitives
# Their params hold traced sub-jaxprs, so the generators trace a small function with the
# public API and take the operands and params of the one equation of that primitive.


def traced(fn: Callable, args: list, name: str) -> tuple[list, dict]:
    """Operands and params of the ``name`` equation in ``make_jaxpr(fn)(*args)``."""
    import fgrad
    from fgrad.core import Array, Literal

    closed = fgrad.make_jaxpr(fn)(*[Array(np.array(a)) for a in args])
    env = dict(zip(closed.jaxpr.constvars, closed.consts))
    env.update(zip(closed.jaxpr.invars, args))

    def read(v):
        return np.asarray(v.val if isinstance(v, Literal) else env[v])

    for eqn in closed.jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if eqn.primitive.name == name:
            return ins, dict(eqn.params)
        outs = eqn.primitive.bind(*[Array(np.array(a)) for a in ins], **eqn.params)
        outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    raise LookupError(f"no {name} equation in\n{closed}")


def _lax():
    from fgrad import lax

    return lax


def _cond(d: Draw):
    lax = _lax()
    shape = d.shape(max_rank=2)
    x, y, c = d.uniform(shape, -2, 2), d.uniform(shape, -2, 2), d.uniform(shape, -2, 2)
    branches = [  # the third closes over an array: it becomes an operand (a const)
        lambda x, y: (lax.mul(lax.sin(x), y), x),
        lambda x, y: (lax.add(x, lax.cos(y)), lax.exp(y)),
        lambda x, y: (lax.mul(x, c), lax.tanh(lax.mul(x, y))),
    ][: d.int(1, 3)]
    index = np.int32(d.int(-1, len(branches)))  # out of range: clamped, as in JAX
    return traced(lambda i, x, y: lax.switch(i, branches, x, y), [index, x, y], "cond")


def _scan(d: Draw):
    lax = _lax()
    shape = d.shape(max_rank=2)
    length = d.int(0, 3)
    w = d.uniform(shape, -1, 1)  # closed over: a const operand of the scan

    def body(carry, x):
        c, s = carry
        c_new = lax.add(lax.mul(lax.sin(c), w), x)
        return (c_new, lax.add(s, lax.mul(c, x))), lax.mul(c, lax.cos(x))

    init = [d.uniform(shape, -1, 1), d.uniform(shape, -1, 1)]
    xs = d.uniform((length,) + shape, -1, 1)
    reverse = d.flag()
    fn = lambda c, s, xs: lax.scan(body, (c, s), xs, reverse=reverse)  # noqa: E731
    return traced(fn, [*init, xs], "scan")


def _while(d: Draw):
    lax = _lax()
    shape = d.shape(max_rank=2)
    trips = d.int(0, 3)

    def body(state):
        i, x = state
        return lax.add(i, np.int32(1)), lax.add(lax.mul(lax.sin(x), 0.9), lax.mul(x, 0.3))

    fn = lambda x: lax.while_loop(lambda s: lax.lt(s[0], np.int32(trips)), body, (np.int32(0), x))  # noqa: E731
    return traced(fn, [d.uniform(shape, -1, 1)], "while")


def _custom_fns():
    """A custom_jvp and a custom_vjp function with correct rules, and a checkpoint."""
    global _CUSTOM
    if _CUSTOM is None:
        import fgrad

        lax = _lax()

        @fgrad.custom_jvp
        def softplus_mul(x, y):  # log(1 + e^x) * y
            return lax.mul(lax.log1p(lax.exp(x)), y)

        @softplus_mul.defjvp
        def _(primals, tangents):
            (x, y), (tx, ty) = primals, tangents
            sp = lax.log1p(lax.exp(x))
            return lax.mul(sp, y), lax.add(
                lax.mul(lax.mul(lax.logistic(x), y), tx), lax.mul(sp, ty)
            )

        @fgrad.custom_vjp
        def sin_mul(x, y):  # sin(x) * y
            return lax.mul(lax.sin(x), y)

        def fwd(x, y):
            return sin_mul(x, y), (x, y)

        def bwd(res, ct):
            x, y = res
            return lax.mul(lax.mul(ct, lax.cos(x)), y), lax.mul(ct, lax.sin(x))

        sin_mul.defvjp(fwd, bwd)
        block = fgrad.checkpoint(lambda x, y: lax.add(lax.tanh(lax.mul(x, y)), lax.sin(x)))
        _CUSTOM = {"custom_jvp_call": softplus_mul, "custom_vjp_call": sin_mul, "checkpoint": block}
    return _CUSTOM


_CUSTOM = None


def _call(name: str) -> Callable:
    def gen(d: Draw):
        shape = d.shape(max_rank=2)
        args = [d.uniform(shape, -2, 2), d.uniform(shape, -2, 2)]
        return traced(_custom_fns()[name], args, name)

    return gen


CASES["cond"] = Case(_cond, examples=0.5)
CASES["scan"] = Case(_scan, examples=0.5)
CASES["while"] = Case(_while, reverse=False, examples=0.5)
CASES["custom_jvp_call"] = Case(_call("custom_jvp_call"), examples=0.5)
CASES["custom_vjp_call"] = Case(_call("custom_vjp_call"), forward=False, examples=0.5)
CASES["checkpoint"] = Case(_call("checkpoint"), examples=0.5)


def _debug_print(d: Draw):
    import fgrad

    xs = [d.any(d.shape(max_rank=2)) for _ in range(d.int(1, 2))]
    fmt = "debug_print test: " + " ".join("{}" for _ in xs)
    return traced(lambda *a: (fgrad.debug_print(fmt, *a), a[0])[1], xs, "debug_print")


CASES["debug_print"] = Case(_debug_print, dtypes=ALL, examples=0.5)
