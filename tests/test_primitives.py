"""One sweep over the whole primitive registry, plus the conventions at kinks and ties.

For every registered primitive, with inputs from ``tests/primitive_cases.py``:

* it has a shape rule, a reference impl, a VJP and a JVP (if differentiable) and test
  inputs; its impl agrees with its shape rule; the CPU backend agrees with the
  reference backend, eagerly (``cpu.run``, where Numba kernels plug in) and compiled
  (``cpu.compile`` of a one-equation jaxpr, where the fused Numba loops plug in);
* in float64, at points drawn away from kinks and ties: the VJP and the JVP agree with
  central finite differences, with each other (<vjp(ct), t> == <ct, jvp(t)>), and so do
  the four second-order compositions (reverse/forward over reverse/forward);
* where JAX has a counterpart with the same semantics: forward values and the gradient
  of ``sum(sin(f(x)))`` equal JAX's.

Exactly at kinks and ties, derivatives follow JAX's conventions; each one is pinned by
a named test below that compares with ``jax.grad`` of the same function.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from primitive_cases import CASES, F64, PENDING, Draw, load_tool

import fgrad
import fgrad.numpy as fnp
from fgrad import core, lax
from fgrad.backends import cpu, reference

TOOL = load_tool()  # tools/gen_primitive_table.py: it also writes docs/primitives.md
IMPORT_ERRORS = TOOL.load_primitives()  # imports every fgrad module: all primitives register
PRIMS = TOOL.fgrad_primitives()
NAMES = sorted(PRIMS)
CASED = [n for n in NAMES if n in CASES]
DIFF = [n for n in CASED if PRIMS[n].differentiable and F64 in CASES[n].dtypes]
FD = [n for n in DIFF if CASES[n].fd]
FD_REV = [n for n in FD if CASES[n].reverse]
FD_FWD = [n for n in FD if CASES[n].forward]
BOTH = [n for n in DIFF if CASES[n].forward and CASES[n].reverse]
ONE_MODE = [n for n in DIFF if not (CASES[n].forward and CASES[n].reverse)]
SECOND = [n for n in FD if CASES[n].second_order]
BY_DTYPE = [(n, dt) for n in CASED for dt in CASES[n].dtypes]
JAXED = [
    (n, dt)
    for n in CASED
    if CASES[n].jax is not None
    for dt in ((F64,) if F64 in CASES[n].dtypes else CASES[n].dtypes)
]

EPS = 1e-6  # central-difference step in float64 (truncation ~eps^2, rounding ~1e-16/eps)
RTOL = 1e-5  # finite differences vs rules
EXACT = 1e-10  # rules vs rules (e.g. <vjp(ct), t> vs <ct, jvp(t)>)


def sweep(name: str, dtype: str, check, *, for_grad: bool = False, scale: float = 1.0):
    """Run ``check(d, prim, args, params)`` on hypothesis-drawn cases of ``name``."""
    case, prim = CASES[name], PRIMS[name]
    n = max(1, round(settings.default.max_examples * case.examples * scale))

    @settings(max_examples=n)
    @given(data=st.data())
    def run(data):
        d = Draw(data, dtype, for_grad)
        args, params = case.gen(d)
        args = [np.asarray(a) for a in args]
        check(d, prim, args, params)

    run()


# ---------------------------------------------------------------- helpers


def arrays(values) -> list[core.Array]:
    return [core.Array(np.array(v)) for v in values]


def as_list(prim, out) -> list:
    return list(out) if prim.multiple_results else [out]


def np_list(values) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.float64) for v in values]


def bind_fn(prim, args, params, diff):
    """``f(*xs)``: the primitive with the operands ``diff`` replaced by ``xs``."""
    fixed = arrays(args)

    def f(*xs):
        full = list(fixed)
        for i, x in zip(diff, xs):
            full[i] = x
        return prim.bind(*full, **params)

    return f


def evaluate(prim, f, xs) -> list[np.ndarray]:
    return np_list(as_list(prim, f(*arrays(xs))))


def central_difference(prim, f, xs, vs, eps=EPS) -> list[np.ndarray]:
    plus = evaluate(prim, f, [x + eps * v for x, v in zip(xs, vs)])
    minus = evaluate(prim, f, [x - eps * v for x, v in zip(xs, vs)])
    return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]


def inner(a, b) -> tuple[float, float]:
    """``sum_i <a_i, b_i>`` and the sum of |terms| (the scale to judge its error by)."""
    a, b = np_list(a), np_list(b)
    value = sum(float(np.sum(x * y)) for x, y in zip(a, b))
    scale = sum(float(np.sum(np.abs(x * y))) for x, y in zip(a, b))
    return value, scale


def assert_close(got, want, scale, rtol, what, ctx):
    assert abs(got - want) <= rtol * scale + 1e-12, (
        f"{what}: {got!r} != {want!r} (|diff| {abs(got - want):.3g}, scale {scale:.3g}); {ctx}"
    )


def describe(prim, args, params) -> str:
    shapes = ", ".join(f"{a.dtype.name}{list(a.shape)}" for a in args)
    shown = {
        k: v if isinstance(v, int | float | str | tuple | np.dtype) else type(v).__name__
        for k, v in params.items()
    }
    return f"{prim.name}({shapes}) params={shown}"


def prepare(d, prim, args, params):
    """Float operands, the function of them, and random directions; None to skip.

    Cotangents of integer outputs (e.g. a while loop's counter) are zero, so those
    outputs drop out of every inner product below.
    """
    diff = [i for i, a in enumerate(args) if a.dtype.kind == "f"]
    avals = prim.abstract_eval(*[core.get_aval(a) for a in args], **params)
    floats = [core.is_float_dtype(a.dtype) for a in avals]
    if not diff or not any(floats):
        return None
    f = bind_fn(prim, args, params, diff)
    xs = [args[i] for i in diff]
    vs = [d.rng.normal(size=x.shape) for x in xs]
    cts = [
        d.rng.normal(size=a.shape) if fl else np.zeros(a.shape, a.dtype)
        for a, fl in zip(avals, floats)
    ]
    return f, xs, vs, cts


def ct_arg(prim, cts):
    cts = arrays(cts)
    return cts if prim.multiple_results else cts[0]


def float_outputs(values, cts):
    """The entries of ``values`` at float outputs (those with a float cotangent)."""
    return [v for v, c in zip(values, cts) if c.dtype.kind == "f"]


def lax_inner(a, b):
    """``<a, b>`` in fgrad ops (traceable), for building scalar test functions."""
    return lax.reduce_sum(lax.mul(a, b), tuple(range(len(a.shape))))


def lax_total(terms):
    total = terms[0]
    for t in terms[1:]:
        total = lax.add(total, t)
    return total


# ---------------------------------------------------------------- the registry is complete


def test_primitive_modules_import():
    assert not IMPORT_ERRORS, f"modules declaring primitives failed to import: {IMPORT_ERRORS}"


@pytest.mark.parametrize("name", NAMES)
def test_primitive_has_all_rules_and_test_inputs(name):
    p = PRIMS[name]
    missing = [r for r in ("shape_rule", "impl") if getattr(p, r) is None]
    if p.differentiable:
        missing += [r for r in ("vjp_rule", "jvp_rule") if getattr(p, r) is None]
    if name not in CASES:
        missing.append("an entry in tests/primitive_cases.py CASES")
    assert not missing, f"primitive {name!r} lacks: {', '.join(missing)}"


def test_case_table_has_no_stale_entries():
    stale = sorted(set(CASES) - set(PRIMS) - PENDING)
    assert not stale, f"CASES entries for primitives that are not registered: {stale}"


def test_primitive_table_is_up_to_date():
    path = TOOL.DOC_PATH
    current = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    assert current == TOOL.render(), (
        "docs/primitives.md is out of date with the registry: "
        "run `python tools/gen_primitive_table.py`"
    )


# ---------------------------------------------------------------- backends


def _read_only(args):
    out = []
    for a in args:
        a = np.array(a)
        a.flags.writeable = False  # what core.execute hands a kernel (Array._v)
        out.append(a)
    return out


@pytest.mark.parametrize(("name", "dtype"), BY_DTYPE)
def test_reference_impl_matches_shape_rule(name, dtype):
    def check(d, prim, args, params):
        avals = prim.abstract_eval(*[core.get_aval(a) for a in args], **params)
        outs = reference.run(prim, _read_only(args), params)
        assert len(outs) == len(avals)
        for o, aval in zip(outs, avals):
            o = np.asarray(o)
            assert (o.shape, o.dtype) == (aval.shape, aval.dtype), (
                f"impl gives {o.dtype.name}{list(o.shape)}, shape rule says "
                f"{aval.str_short()}; {describe(prim, args, params)}"
            )

    sweep(name, dtype, check)


@pytest.mark.parametrize(("name", "dtype"), BY_DTYPE)
def test_cpu_backend_matches_reference(name, dtype):
    def check(d, prim, args, params):
        want = reference.run(prim, _read_only(args), params)
        got = cpu.run(prim, _read_only(args), params)
        _compare_backend(got, want, describe(prim, args, params))

    sweep(name, dtype, check, scale=0.5)


def _compare_backend(got, want, ctx):
    assert len(got) == len(want), ctx
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert (g.shape, g.dtype) == (w.shape, w.dtype), ctx
        if w.dtype.kind == "f":
            tol = 1e-5 if w.dtype.itemsize <= 4 else 1e-12
            finite = np.abs(w[np.isfinite(w)])
            atol = tol * (float(finite.max()) if finite.size else 1.0)
            np.testing.assert_allclose(g, w, rtol=tol, atol=atol, err_msg=ctx)
        else:
            np.testing.assert_array_equal(g, w, err_msg=ctx)


def _check_compiled(d, prim, args, params):
    if not args:
        return  # nothing to trace (iota_2x32_shape): it becomes a constant
    closed = fgrad.make_jaxpr(lambda *xs: prim.bind(*xs, **params))(*arrays(args))
    got = cpu.compile(closed)(*_read_only(args))
    want = reference.run(prim, _read_only(args), params)
    _compare_backend(got, want, describe(prim, args, params))


@pytest.mark.parametrize("name", CASED)
def test_cpu_compiled_program_matches_reference(name):
    """The jit seam: the primitive as a one-equation jaxpr, compiled for the CPU (fused
    Numba loops for elementwise primitives), against the reference kernel. One dtype
    and one example each, as every new signature costs a Numba compile (the slow test
    below runs them all)."""
    sweep(name, CASES[name].dtypes[0], _check_compiled, scale=0.01)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype"), BY_DTYPE)
def test_cpu_compiled_program_matches_reference_all_dtypes(name, dtype):
    sweep(name, dtype, _check_compiled, scale=0.25)


# ---------------------------------------------------------------- first derivatives


@pytest.mark.parametrize("name", FD_REV)
def test_vjp_matches_finite_differences(name):
    def check(d, prim, args, params):
        prep = prepare(d, prim, args, params)
        if prep is None:
            return
        f, xs, vs, cts = prep
        _, vjp_fn = fgrad.vjp(f, *arrays(xs))
        grads = vjp_fn(ct_arg(prim, cts))
        for g, x in zip(grads, xs):
            assert (tuple(g.shape), g.dtype) == (x.shape, x.dtype), describe(prim, args, params)
        got, s1 = inner(grads, vs)
        fd = central_difference(prim, f, xs, vs)
        want, s2 = inner(float_outputs(cts, cts), float_outputs(fd, cts))
        ctx = describe(prim, args, params)
        assert_close(got, want, s1 + s2, RTOL, "<vjp(ct), v> vs finite differences", ctx)

    sweep(name, F64, check, for_grad=True)


@pytest.mark.parametrize("name", FD_FWD)
def test_jvp_matches_finite_differences(name):
    def check(d, prim, args, params):
        prep = prepare(d, prim, args, params)
        if prep is None:
            return
        f, xs, vs, cts = prep
        out, t_out = fgrad.jvp(f, arrays(xs), arrays(vs))
        ctx = describe(prim, args, params)
        for o, want in zip(np_list(as_list(prim, out)), evaluate(prim, f, xs)):
            np.testing.assert_array_equal(o, want, err_msg=f"jvp primal output; {ctx}")
        fds = float_outputs(central_difference(prim, f, xs, vs), cts)
        for t, fd in zip(float_outputs(np_list(as_list(prim, t_out)), cts), fds):
            assert t.shape == fd.shape, ctx
            atol = RTOL * max(1.0, float(np.max(np.abs(fd), initial=0.0)))
            np.testing.assert_allclose(t, fd, rtol=RTOL, atol=atol, err_msg=f"jvp; {ctx}")

    sweep(name, F64, check, for_grad=True)


@pytest.mark.parametrize("name", BOTH)
def test_vjp_and_jvp_agree(name):
    def check(d, prim, args, params):
        prep = prepare(d, prim, args, params)
        if prep is None:
            return
        f, xs, vs, cts = prep
        _, vjp_fn = fgrad.vjp(f, *arrays(xs))
        _, t_out = fgrad.jvp(f, arrays(xs), arrays(vs))
        lhs, s1 = inner(vjp_fn(ct_arg(prim, cts)), vs)
        rhs, s2 = inner(float_outputs(cts, cts), float_outputs(as_list(prim, t_out), cts))
        ctx = describe(prim, args, params)
        assert_close(lhs, rhs, s1 + s2, EXACT, "<vjp(ct), t> vs <ct, jvp(t)>", ctx)

    sweep(name, F64, check, for_grad=True)


@pytest.mark.parametrize("name", ONE_MODE)
def test_undefined_mode_is_a_clear_error(name):
    """``while`` has no reverse mode, ``custom_vjp_call`` no forward mode (as in JAX)."""

    def check(d, prim, args, params):
        prep = prepare(d, prim, args, params)
        if prep is None:
            return
        f, xs, vs, cts = prep
        with pytest.raises(TypeError, match="(?i)reverse|forward|jvp|vjp"):
            if CASES[name].forward:
                fgrad.vjp(f, *arrays(xs))[1](ct_arg(prim, cts))
            else:
                fgrad.jvp(f, arrays(xs), arrays(vs))

    sweep(name, F64, check, for_grad=True, scale=0.25)


# ---------------------------------------------------------------- second derivatives


@pytest.mark.parametrize("name", SECOND)
def test_second_derivatives_match_finite_differences(name):
    """Differentiate the first derivative again, all four ways, against its FDs.

    ``h(x) = <w, vjp(f, x)(ct)>`` and ``g(x) = <ct, jvp(f, x; t)>`` are scalars built
    from the first-order rules; ``grad`` and ``jvp`` of each along ``v`` must match
    central differences of ``h`` and ``g`` themselves.
    """

    def check(d, prim, args, params):
        prep = prepare(d, prim, args, params)
        if prep is None:
            return
        f, xs, vs, cts = prep
        ws = arrays([d.rng.normal(size=x.shape) for x in xs])
        ts = arrays([d.rng.normal(size=x.shape) for x in xs])
        ct = ct_arg(prim, cts)
        ct_list = arrays(cts)

        def h(*zs):
            grads = fgrad.vjp(f, *zs)[1](ct)
            return lax_total([lax_inner(w, g) for w, g in zip(ws, grads)])

        def g(*zs):
            t_out = float_outputs(as_list(prim, fgrad.jvp(f, zs, ts)[1]), cts)
            return lax_total([lax_inner(c, t) for c, t in zip(float_outputs(ct_list, cts), t_out)])

        argnums = tuple(range(len(xs)))
        ctx = describe(prim, args, params)
        fwd_ok, rev_ok = CASES[name].forward, CASES[name].reverse
        for name_, fn, defined in (("vjp", h, rev_ok), ("jvp", g, fwd_ok)):
            if not defined:
                continue
            plus = float(fn(*arrays([x + EPS * v for x, v in zip(xs, vs)])))
            minus = float(fn(*arrays([x - EPS * v for x, v in zip(xs, vs)])))
            want = (plus - minus) / (2 * EPS)
            scale = abs(want) + 1e-3 * (abs(plus) + abs(minus))
            if rev_ok:  # reverse over reverse / over forward
                rev, s1 = inner(fgrad.grad(fn, argnums=argnums)(*arrays(xs)), vs)
                assert_close(rev, want, scale + s1, RTOL, f"grad of {name_} vs FD", ctx)
            if fwd_ok:  # forward over reverse / over forward
                fwd = float(fgrad.jvp(fn, arrays(xs), arrays(vs))[1])
                assert_close(fwd, want, scale, RTOL, f"jvp of {name_} vs FD", ctx)

    sweep(name, F64, check, for_grad=True, scale=0.5)


# ---------------------------------------------------------------- JAX cross-checks


@pytest.fixture(scope="module")
def jx():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    return jax, jnp


def _assert_like_jax(got, want, ctx):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} vs JAX {want.shape}; {ctx}"
    assert got.dtype.kind == want.dtype.kind, f"dtype {got.dtype} vs JAX {want.dtype}; {ctx}"
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=ctx)
    else:
        np.testing.assert_array_equal(got, want, err_msg=ctx)


@pytest.mark.parametrize(("name", "dtype"), JAXED)
def test_matches_jax(name, dtype, jx):
    """Forward values, and the gradient of ``sum(sin(f(x)))``, equal JAX's."""
    jax, jnp = jx
    case = CASES[name]

    def check(d, prim, args, params):
        ctx = describe(prim, args, params)
        got = as_list(prim, prim.bind(*arrays(args), **params))
        want = case.jax(*[jnp.asarray(a) for a in args], **params)
        want = list(want) if prim.multiple_results else [want]
        for g, w in zip(got, want, strict=True):
            _assert_like_jax(g, w, ctx)
        diff = [i for i, a in enumerate(args) if a.dtype.kind == "f"]
        floats = all(g.dtype.kind == "f" for g in got)
        if not (prim.differentiable and case.reverse and diff and floats):
            return

        def with_diff(values, xs):
            full = list(values)
            for i, x in zip(diff, xs):
                full[i] = x
            return full

        def loss(*xs):
            outs = as_list(prim, prim.bind(*with_diff(arrays(args), xs), **params))
            return lax_total([lax.reduce_sum(lax.sin(o), tuple(range(o.ndim))) for o in outs])

        def jax_loss(*xs):
            out = case.jax(*with_diff([jnp.asarray(a) for a in args], xs), **params)
            outs = list(out) if prim.multiple_results else [out]
            return sum(jnp.sum(jnp.sin(o)) for o in outs)

        argnums = tuple(range(len(diff)))
        xs = [args[i] for i in diff]
        got_g = fgrad.grad(loss, argnums=argnums)(*arrays(xs))
        want_g = jax.grad(jax_loss, argnums=argnums)(*[jnp.asarray(x) for x in xs])
        for g, w in zip(got_g, want_g, strict=True):
            _assert_like_jax(g, w, f"grad of sum(sin(f)); {ctx}")

    sweep(name, dtype, check, for_grad=dtype == F64, scale=0.2)


# ---------------------------------------------------------------- conventions at kinks and ties
# Each compares fgrad with jax.grad (or jax.jvp) of the same function, at the kink.


def f64(x) -> core.Array:
    return core.Array(np.asarray(x, dtype=np.float64))


def fgrad_grad(fn, *xs, argnums=0):
    g = fgrad.grad(fn, argnums=argnums)(*[f64(x) for x in xs])
    return np.asarray(g) if isinstance(argnums, int) else tuple(np.asarray(v) for v in g)


def jax_grad(jax, fn, *xs, argnums=0):
    g = jax.grad(fn, argnums=argnums)(*[np.asarray(x, np.float64) for x in xs])
    return np.asarray(g) if isinstance(argnums, int) else tuple(np.asarray(v) for v in g)


def test_relu_as_maximum_at_zero_splits_the_gradient(jx):
    # max(x, 0) at x == 0 is a tie: 0.5 goes to x (JAX's max rule). jax.nn.relu is a
    # different function at 0 (custom JVP, derivative 0): see the nn test below.
    jax, jnp = jx
    x = np.array([-1.0, 0.0, 2.0])
    got = fgrad_grad(lambda x: lax.reduce_sum(lax.max(x, 0.0), (0,)), x)
    want = jax_grad(jax, lambda x: jnp.sum(jnp.maximum(x, 0.0)), x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, [0.0, 0.5, 1.0])
    _, t = fgrad.jvp(lambda x: lax.max(x, 0.0), (f64(0.0),), (f64(1.0),))
    assert float(t) == float(jax.jvp(lambda x: jnp.maximum(x, 0.0), (0.0,), (1.0,))[1]) == 0.5
    assert float(jax.grad(jax.nn.relu)(0.0)) == 0.0


def test_nn_relu_matches_jax_nn_relu_at_zero(jx):
    jax, _ = jx
    if importlib.util.find_spec("fgrad.nn") is None:
        pytest.skip("fgrad.nn is not written yet")
    import fgrad.nn

    if not hasattr(fgrad.nn, "relu"):
        pytest.skip("fgrad.nn.relu is not written yet")
    x = np.array([-1.0, 0.0, 2.0])
    got = fgrad_grad(lambda x: lax.reduce_sum(fgrad.nn.relu(x), (0,)), x)
    want = jax_grad(jax, lambda x: jax.numpy.sum(jax.nn.relu(x)), x)
    np.testing.assert_array_equal(got, want)  # [0, 0, 1]: jax.nn.relu'(0) == 0


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_of_equal_values_split_evenly(op, jx):
    jax, _ = jx
    fn, jfn = getattr(lax, op), getattr(jax.lax, op)
    x = np.array([1.5, -2.0, 3.0])
    y = np.array([1.5, 0.0, 3.0])  # ties at 0 and 2
    got = fgrad_grad(lambda a, b: lax.reduce_sum(fn(a, b), (0,)), x, y, argnums=(0, 1))
    want = jax_grad(jax, lambda a, b: jfn(a, b).sum(), x, y, argnums=(0, 1))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert got[0][0] == got[1][0] == 0.5
    _, t = fgrad.jvp(fn, (f64(x), f64(y)), (f64(np.ones(3)), f64(np.zeros(3))))
    _, jt = jax.jvp(jfn, (x, y), (np.ones(3), np.zeros(3)))
    np.testing.assert_array_equal(np.asarray(t), np.asarray(jt))


def test_abs_at_zero(jx):
    # JAX: d|x|/dx = select(x >= 0, 1, -1), so 1 at x == 0.
    jax, jnp = jx
    x = np.array([-1.0, 0.0, 2.0])
    got = fgrad_grad(lambda x: lax.reduce_sum(lax.abs(x), (0,)), x)
    np.testing.assert_array_equal(got, jax_grad(jax, lambda x: jnp.sum(jnp.abs(x)), x))
    _, t = fgrad.jvp(lax.abs, (f64(0.0),), (f64(2.0),))
    assert float(t) == float(jax.jvp(jnp.abs, (0.0,), (2.0,))[1])


def test_sign_at_zero(jx):
    jax, jnp = jx
    assert fgrad_grad(lax.sign, 0.0) == jax_grad(jax, jnp.sign, 0.0) == 0.0


def test_sqrt_at_zero_is_infinite(jx):
    jax, jnp = jx
    with np.errstate(divide="ignore"):
        got = fgrad_grad(lax.sqrt, 0.0)
    assert got == jax_grad(jax, jnp.sqrt, 0.0) == np.inf


@pytest.mark.parametrize(
    ("x", "y"), [(0.0, 2.0), (0.0, 1.0), (0.0, 3.0), (0.0, 0.5), (2.0, 0.0), (0.0, -1.0)]
)
def test_pow_at_zero_base_or_exponent(x, y, jx):
    jax, _ = jx
    with np.errstate(divide="ignore", invalid="ignore"):
        got = fgrad_grad(lax.pow, x, y, argnums=(0, 1))
    want = jax_grad(jax, jax.lax.pow, x, y, argnums=(0, 1))
    np.testing.assert_array_equal(got[0], want[0])  # d/dx = y x^(y-1)
    np.testing.assert_array_equal(got[1], want[1])  # d/dy = log(x) x^y, 0 at x == 0


def test_pow_zero_to_the_zero():
    # d/dx x**y at x == y == 0: JAX's float-exponent rule gives y * x**(y-1) = 0 * inf
    # = NaN; fgrad takes the limit along y == 0 (x**0 == 1 is flat), i.e. 0, which is
    # JAX's own rule for integer exponents (jax.grad(lambda x: lax.pow(x, 0))(0.) == 0).
    got = fgrad_grad(lax.pow, 0.0, 0.0, argnums=(0, 1))
    assert got == (0.0, 0.0)


@pytest.mark.parametrize("fn", ["floor", "ceil", "round"])
def test_rounding_at_jumps_has_zero_derivative(fn, jx):
    jax, _ = jx
    x = np.array([1.0, 0.5, -1.5, 2.0])
    got = fgrad_grad(lambda x: lax.reduce_sum(getattr(lax, fn)(x), (0,)), x)
    want = jax_grad(jax, lambda x: getattr(jax.lax, fn)(x).sum(), x)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("y", [0, 1, 2, 3])
@pytest.mark.parametrize("x", [0.0, 2.0, -1.5])
def test_integer_pow_small_exponents(x, y, jx):
    jax, _ = jx
    got = fgrad_grad(lambda x: lax.integer_pow(x, y), x)
    assert got == jax_grad(jax, lambda x: jax.lax.integer_pow(x, y), x)


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
@pytest.mark.parametrize("axes", [(1,), (0, 1)])
def test_reduce_max_min_ties_split_evenly(op, axes, jx):
    jax, jnp = jx
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    if op == "reduce_min":
        x = -x
    fn = getattr(lax, op)
    jfn = jnp.max if op == "reduce_max" else jnp.min
    w = np.array([1.0, 2.0]) if axes == (1,) else np.float64(1.5)
    got = fgrad_grad(lambda x: lax_inner(fn(x, axes), f64(w)), x)
    want = jax_grad(jax, lambda x: jnp.sum(jfn(x, axis=axes) * w), x)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    t = np.arange(6.0).reshape(2, 3)
    _, got_t = fgrad.jvp(lambda x: fn(x, axes), (f64(x),), (f64(t),))
    _, want_t = jax.jvp(lambda x: jfn(x, axis=axes), (x,), (t,))
    np.testing.assert_allclose(np.asarray(got_t), np.asarray(want_t), rtol=1e-15)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [0, 1])
def test_argmax_argmin_ties_pick_the_first_index(op, axis, jx):
    jax, _ = jx
    x = np.array([[1.0, 3.0, 3.0, 0.0], [3.0, 0.0, 3.0, 0.0], [3.0, 3.0, 0.0, 0.0]])
    got = np.asarray(getattr(lax, op)(f64(x), axis))
    want = np.asarray(getattr(jax.lax, op)(x, axis, np.int32))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, getattr(np, op)(x, axis))


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("axis", [0, 1])
def test_argsort_is_stable(descending, axis, jx):
    _, jnp = jx
    x = np.array([[1.0, 0.0, 1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]])
    x = x if axis == 1 else x.T.copy()
    got = np.asarray(lax.argsort(f64(x), axis, descending))
    want = np.asarray(jnp.argsort(x, axis=axis, stable=True, descending=descending))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("descending", [False, True])
def test_sort_gradient_follows_the_stable_permutation(descending, jx):
    jax, jnp = jx
    x = np.array([1.0, 0.0, 1.0, 0.0, 2.0, 1.0])
    w = np.arange(1.0, 7.0)
    got = fgrad_grad(lambda x: fnp.sum(fnp.sort(x, descending=descending) * f64(w)), x)
    want = jax_grad(jax, lambda x: jnp.sum(jnp.sort(x, descending=descending) * w), x)
    np.testing.assert_array_equal(got, want)


def test_clip_at_its_bounds(jx):
    # clip(x, lo, hi) = min(max(x, lo), hi): at x == lo or hi the tie splits 0.5 / 0.5.
    jax, jnp = jx
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    got = fgrad_grad(lambda x: fnp.sum(fnp.clip(x, 0.0, 1.0)), x)
    want = jax_grad(jax, lambda x: jnp.sum(jnp.clip(x, 0.0, 1.0)), x)
    np.testing.assert_array_equal(got, want)


def test_select_with_equal_branches(jx):
    jax, _ = jx
    p = np.array([True, False, True])
    x = np.array([1.0, 2.0, 3.0])
    got = fgrad_grad(lambda x: lax.reduce_sum(lax.select(p, x, x), (0,)), x)
    want = jax_grad(jax, lambda x: jax.lax.select(p, x, x).sum(), x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, np.ones(3))
    got = fgrad_grad(lambda x, y: lax.reduce_sum(lax.select(p, x, y), (0,)), x, x, argnums=(0, 1))
    want = jax_grad(jax, lambda x, y: jax.lax.select(p, x, y).sum(), x, x, argnums=(0, 1))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_scatter_max_min_ties_split_evenly(mode, jx):
    # x.at[i].max(u) where x[i] == u (or two updates tie): the gradient is shared.
    jax, jnp = jx
    x = np.array([1.0, 2.0, 3.0])
    idx = np.array([1, 1, 2], dtype=np.int32)
    u = np.array([2.0, 2.0, 0.0 if mode == "max" else 5.0])
    w = np.array([1.0, 10.0, 100.0])

    def f(x, u):
        return lax_inner(lax.indexing.scatter(x, core.Array(idx), u, mode), f64(w))

    def jf(x, u):
        ref = x.at[idx]
        return jnp.sum((ref.max(u) if mode == "max" else ref.min(u)) * w)

    got = fgrad_grad(f, x, u, argnums=(0, 1))
    want = jax_grad(jax, jf, x, u, argnums=(0, 1))
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g, w_, rtol=1e-15)


def test_reduce_prod_with_zeros(jx):
    jax, jnp = jx
    for x in ([2.0, 0.0, 3.0], [0.0, 2.0, 0.0], [[1.0, 0.0], [2.0, 4.0]]):
        x = np.array(x)
        got = fgrad_grad(lambda x: lax.reduce_prod(x, tuple(range(x.ndim))), x)
        np.testing.assert_array_equal(got, jax_grad(jax, jnp.prod, x))


def test_max_pool_ties_go_to_the_first_maximum(jx):
    # JAX's reduce_window max VJP (select_and_scatter_add with ge) gives each window's
    # whole cotangent to its first maximal element, not an even split.
    jax, jnp = jx
    if "reduce_window_max" not in PRIMS:
        pytest.skip("reduce_window_max is not registered yet")
    x = np.array([[1.0, 3.0, 3.0], [3.0, 2.0, 3.0], [0.0, 3.0, 1.0]])
    params = dict(window_dimensions=(2, 2), window_strides=(1, 1), padding=((0, 0), (0, 0)))
    w = np.array([[1.0, 10.0], [100.0, 1000.0]])
    prim = PRIMS["reduce_window_max"]
    got = fgrad_grad(lambda x: lax_inner(prim.bind(x, **params), f64(w)), x)

    def jf(x):
        y = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (2, 2), (1, 1), "VALID")
        return jnp.sum(y * w)

    np.testing.assert_array_equal(got, jax_grad(jax, jf, x))


def test_convert_element_type_gradients(jx):
    jax, jnp = jx
    x = np.array([1.25, -2.5])

    def f(x):  # float64 -> float32 -> float64, and a detour through int32
        y = lax.convert_element_type(lax.convert_element_type(x, np.float32), np.float64)
        i = lax.convert_element_type(lax.convert_element_type(x, np.int32), np.float64)
        return lax.reduce_sum(lax.add(lax.mul(y, y), i), (0,))

    def jf(x):
        y = jax.lax.convert_element_type(jax.lax.convert_element_type(x, jnp.float32), x.dtype)
        i = jax.lax.convert_element_type(jax.lax.convert_element_type(x, jnp.int32), x.dtype)
        return jnp.sum(y * y + i)

    np.testing.assert_array_equal(fgrad_grad(f, x), jax_grad(jax, jf, x))


def test_stop_gradient_blocks_both_modes(jx):
    jax, _ = jx
    f = lambda x: lax.mul(x, lax.stop_gradient(x))  # noqa: E731
    assert fgrad_grad(f, 3.0) == jax_grad(jax, lambda x: x * jax.lax.stop_gradient(x), 3.0)
    _, t = fgrad.jvp(f, (f64(3.0),), (f64(1.0),))
    assert float(t) == 3.0
