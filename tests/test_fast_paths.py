"""Pins the eager and jit-call fast paths against the general paths, NumPy and JAX.

The fast paths under test: traced-once eager VJP rules with unused cotangents pruned
(``ad._cached_rule``), the shape-rule cache and the bind fast path for concrete arrays
(``core._execute``, ``Primitive.bind``), the generated per-structure flatten/unflatten
of jitted calls (``jit._make_fast_flatten``), the branch-free ``select_n``
(``lax.elementwise._bitwise_select``) and the promotion shortcuts of ``fgrad.numpy``.
"""

import collections
import inspect
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import ad, core, lax
from fgrad.lax import elementwise

# The jit tests change signatures and structures on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::fgrad.RetraceWarning")

# ================================================================ helpers


def _line_of(marker: str) -> str:
    """``file:line`` of the line of this file that carries ``# L:marker``."""
    lines = inspect.getsource(inspect.getmodule(_line_of)).splitlines()
    (n,) = [i + 1 for i, s in enumerate(lines) if s.rstrip().endswith(f"# L:{marker}")]
    return f"{__file__}:{n}"


def _np(x):
    return np.asarray(x)


def _close(got, expected, rtol=1e-10, atol=1e-12):
    got_leaves = fgrad.tree.leaves(got)
    exp_leaves = jax.tree_util.tree_leaves(expected)
    assert len(got_leaves) == len(exp_leaves)
    for g, e in zip(got_leaves, exp_leaves):
        e = np.asarray(e)
        assert _np(g).shape == e.shape
        np.testing.assert_allclose(_np(g), e, rtol=rtol, atol=atol)


def _mlp_params(rng, sizes=(3, 5, 2), dtype=np.float64):
    p = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        p[f"w{i}"] = rng.normal(size=(m, n)).astype(dtype)
        p[f"b{i}"] = rng.normal(size=(n,)).astype(dtype)
    return p


def _mlp_loss(np_mod):
    """The same MLP loss over fgrad.numpy or jax.numpy."""

    def loss(p, x, y):
        h = np_mod.tanh(x @ p["w0"] + p["b0"])
        logits = h @ p["w1"] + p["b1"]
        logp = logits - np_mod.log(np_mod.sum(np_mod.exp(logits), axis=1, keepdims=True))
        return -np_mod.mean(np_mod.sum(logp * y, axis=1)) + 0.1 * np_mod.sum(x * x)

    return loss


def _to_f(tree):
    return fgrad.tree.map(fnp.asarray, tree)


def _to_j(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


class _CountingBackend:
    """Counts the eager kernels the CPU backend runs, by primitive name."""

    def __init__(self, monkeypatch):
        import fgrad.backends.cpu as cpu

        self.counts: collections.Counter = collections.Counter()
        real = cpu.run

        def run(prim, vals, params):
            self.counts[prim.name] += 1
            return real(prim, vals, params)

        monkeypatch.setattr(cpu, "run", run)


# ================================================================ 1. cached, pruned VJP rules


@pytest.mark.parametrize("argnums", [0, 1, (0, 1), (0, 2)])
def test_mlp_grads_match_jax_on_cache_hits_and_new_signatures(argnums):
    loss_f, loss_j = _mlp_loss(fnp), _mlp_loss(jnp)
    rng = np.random.default_rng(0)
    # Repeated signature (cache hit), then a new batch size, then a new dtype, then
    # the first signature again.
    for batch, dtype in [(8, np.float64), (8, np.float64), (5, np.float64), (8, np.float32)] * 2:
        p = _mlp_params(rng, dtype=dtype)
        x = rng.normal(size=(batch, 3)).astype(dtype)
        y = np.eye(2, dtype=dtype)[rng.integers(0, 2, batch)]
        got = fgrad.grad(loss_f, argnums=argnums)(_to_f(p), fnp.asarray(x), fnp.asarray(y))
        want = jax.grad(loss_j, argnums=argnums)(_to_j(p), jnp.asarray(x), jnp.asarray(y))
        tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else {}
        _close(got, want, **tol)
        for leaf in fgrad.tree.leaves(got):
            assert leaf.dtype == dtype


def test_rule_cache_is_filled_once_per_signature():
    loss = _mlp_loss(fnp)
    rng = np.random.default_rng(1)
    p = _to_f(_mlp_params(rng))
    x = fnp.asarray(rng.normal(size=(4, 3)))
    y = fnp.asarray(np.eye(2)[[0, 1, 1, 0]])
    ad._RULE_CACHE.clear()
    g1 = fgrad.grad(loss)(p, x, y)
    n = len(ad._RULE_CACHE)
    assert n > 0  # the rules of fgrad.lax are cached
    g2 = fgrad.grad(loss)(p, x, y)
    assert len(ad._RULE_CACHE) == n  # same signature: every rule hits
    _close(g2, jax.tree_util.tree_map(np.asarray, g1), rtol=0, atol=0)
    fgrad.grad(loss)(p, fnp.concatenate([x, x]), fnp.concatenate([y, y]))
    assert len(ad._RULE_CACHE) > n  # a new batch size: new signatures
    # Other cotangents wanted (x differentiated too): other entries.
    m = len(ad._RULE_CACHE)
    fgrad.grad(loss, argnums=(0, 1))(p, x, y)
    assert len(ad._RULE_CACHE) > m


def _reduce_and_transpose_fns(np_mod):
    return {
        "sum0": lambda x: np_mod.sum(np_mod.sin(x) * np_mod.arange(4.0), axis=0),
        "sum1": lambda x: np_mod.sum(np_mod.sin(x) * np_mod.arange(4.0), axis=1),
        "perm102": lambda c: np_mod.transpose(c, (1, 0, 2)) * np_mod.arange(27.0).reshape(3, 3, 3),
        "perm021": lambda c: np_mod.transpose(c, (0, 2, 1)) * np_mod.arange(27.0).reshape(3, 3, 3),
        "perm201": lambda c: np_mod.transpose(c, (2, 0, 1)) * np_mod.arange(27.0).reshape(3, 3, 3),
        "cumsum0": lambda x: np_mod.cumsum(x * x, axis=0) * np_mod.arange(4.0),
        "cumsum1": lambda x: np_mod.cumsum(x * x, axis=1) * np_mod.arange(4.0),
        "max0": lambda x: np_mod.max(x, axis=0) * np_mod.arange(4.0),
        "max1": lambda x: np_mod.max(x, axis=1) * np_mod.arange(4.0),
    }


def test_rules_with_different_params_do_not_share_cache_entries():
    # Square operands: the signatures of these rules differ only in their params
    # (axes, permutations), so a cache keyed without them would mix them up.
    fns_f, fns_j = _reduce_and_transpose_fns(fnp), _reduce_and_transpose_fns(jnp)
    rng = np.random.default_rng(2)
    sq = rng.normal(size=(4, 4))
    cube = rng.normal(size=(3, 3, 3))
    cts: dict = {}
    for _ in range(2):  # the second round runs from the cache
        for name in fns_f:
            x = cube if name.startswith("perm") else sq
            out, f_vjp = fgrad.vjp(fns_f[name], fnp.asarray(x))
            ct = cts.setdefault(name, rng.normal(size=out.shape))
            (g,) = f_vjp(fnp.asarray(ct))
            out_j, j_vjp = jax.vjp(fns_j[name], jnp.asarray(x))
            (gj,) = j_vjp(jnp.asarray(ct))
            _close(out, out_j)
            _close(g, gj, rtol=1e-12)


def test_grad_with_axes_in_one_function_matches_jax():
    def f(np_mod):
        def loss(x):
            a = np_mod.sum(x, axis=0)
            b = np_mod.sum(x, axis=1)
            c = np_mod.transpose(x) @ x
            return (
                np_mod.sum(a * np_mod.arange(5.0)) + np_mod.sum(b**3) + np_mod.sum(np_mod.tanh(c))
            )

        return loss

    x = np.random.default_rng(3).normal(size=(5, 5))
    for _ in range(2):
        _close(fgrad.grad(f(fnp))(fnp.asarray(x)), jax.grad(f(jnp))(jnp.asarray(x)))


def test_param_only_argnums_skips_the_input_gradient_matmul(monkeypatch):
    loss_f, loss_j = _mlp_loss(fnp), _mlp_loss(jnp)
    rng = np.random.default_rng(4)
    p = _mlp_params(rng)
    x = rng.normal(size=(8, 3))
    y = np.eye(2)[rng.integers(0, 2, 8)]
    counter = _CountingBackend(monkeypatch)
    for argnums, expected in [(0, 5), (0, 5), ((0, 1), 6), (0, 5), ((0, 1), 6)]:
        counter.counts.clear()
        got = fgrad.grad(loss_f, argnums=argnums)(_to_f(p), fnp.asarray(x), fnp.asarray(y))
        # Forward: x @ w0 and h @ w1. Backward: d/dw1, d/dh, d/dw0; the cotangent of
        # x (a third backward matmul) only when x is differentiated.
        assert counter.counts["dot_general"] == expected, (argnums, counter.counts)
        want = jax.grad(loss_j, argnums=argnums)(_to_j(p), jnp.asarray(x), jnp.asarray(y))
        _close(got, want)


def test_vjp_of_all_inputs_still_gives_every_cotangent():
    def f(np_mod):
        return lambda a, b: (np_mod.sin(a) @ b, np_mod.sum(a * a) / np_mod.sum(b))

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)) + 3.0
    cts = (rng.normal(size=(3, 2)), np.asarray(0.7))
    for _ in range(2):
        _, fv = fgrad.vjp(f(fnp), fnp.asarray(a), fnp.asarray(b))
        _, jv = jax.vjp(f(jnp), jnp.asarray(a), jnp.asarray(b))
        got = fv((fnp.asarray(cts[0]), fnp.asarray(cts[1])))
        _close(got, jv((jnp.asarray(cts[0]), jnp.asarray(cts[1]))))


def _two_operand_fns(np_mod, lax_mod):
    """f(a: (4, 6), b: (6, 4)) -> scalar, over many VJP rules (both operands active)."""
    idx = np.asarray([3, 0, 0, 2])
    return {
        "matmul": lambda a, b: np_mod.sum(np_mod.tanh(a @ b) * (b.T @ a.T)),
        "einsum": lambda a, b: np_mod.sum(np_mod.einsum("ij,jk->ik", a, b) ** 2),
        "elementwise": lambda a, b: np_mod.sum(
            np_mod.exp(np_mod.sin(a)) / (1.0 + b.T**2) - np_mod.sqrt(1.0 + a * a) * b.T
        ),
        "max_min": lambda a, b: np_mod.sum(np_mod.maximum(a, b.T) * np_mod.minimum(a, 0.3)),
        "where": lambda a, b: np_mod.sum(np_mod.where(a > b.T, a * b.T, a - b.T) ** 2),
        "reduce": lambda a, b: (
            np_mod.sum(np_mod.max(a, axis=1) * np_mod.prod(b, axis=0))
            + np_mod.sum(np_mod.mean(a, axis=0) * np_mod.min(b, axis=1))
        ),
        "shapes": lambda a, b: (
            np_mod.sum(
                np_mod.concatenate([a.reshape(2, 12), np_mod.transpose(b).reshape(2, 12)], axis=0)
                * np_mod.arange(48.0).reshape(4, 12)
            )
            + np_mod.sum(np_mod.expand_dims(a[1:, ::2], 0) ** 3)
        ),
        "index": lambda a, b: np_mod.sum(a[idx] * b.T[idx[::-1]]) + np_mod.sum(a[:, idx] ** 2),
        "pad_slice": lambda a, b: (
            np_mod.sum(lax_mod.pad(a, 0.5, [(1, 2, 1), (0, -1, 0)]) ** 2)
            + np_mod.sum(lax_mod.dynamic_slice(b, (1, 2), (3, 2)) * 3.0)
        ),
        "cumsum_logsumexp": lambda a, b: (
            np_mod.sum(np_mod.cumsum(a, axis=1) * b.T)
            + np_mod.sum(np_mod.log(np_mod.sum(np_mod.exp(b), axis=0)))
        ),
        "conv": lambda a, b: np_mod.sum(
            lax_mod.conv_general_dilated(
                a.reshape(1, 1, 4, 6), b[:3, :3].reshape(1, 1, 3, 3), (1, 1), "SAME"
            )
            ** 2
        ),
        "window_max": lambda a, b: np_mod.sum(
            lax_mod.reduce_window(a * b.T, -np_mod.inf, lax_mod.max, (2, 2), (1, 2), "VALID") ** 2
        ),
        "window_sum": lambda a, b: np_mod.sum(
            lax_mod.reduce_window(a, 0.0, lax_mod.add, (3, 2), (1, 1), "SAME") * b.T
        ),
    }


@pytest.mark.parametrize("name", sorted(_two_operand_fns(fnp, lax)))
def test_pruned_rules_match_jax_for_each_operand(name):
    f_f = _two_operand_fns(fnp, lax)[name]
    f_j = _two_operand_fns(jnp, jax.lax)[name]
    rng = np.random.default_rng(17)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(6, 4))
    for argnums in [0, 1, (0, 1), 0, 1]:  # the repeats run from the rule cache
        got = fgrad.grad(f_f, argnums=argnums)(fnp.asarray(a), fnp.asarray(b))
        want = jax.grad(f_j, argnums=argnums)(jnp.asarray(a), jnp.asarray(b))
        _close(got, want, rtol=1e-9, atol=1e-10)


def _hess_fn(np_mod):
    def f(x):
        y = np_mod.tanh(x @ np_mod.transpose(x.reshape(2, 3)))  # x: (2, 3)
        return np_mod.sum(y * y) + np_mod.sum(np_mod.sum(x, axis=0) ** 3) / 7.0

    return lambda v: f(v.reshape(2, 3))


def test_hessian_and_grad_of_grad_after_the_cache_is_warm():
    x = np.random.default_rng(6).normal(size=(6,))
    f_f, f_j = _hess_fn(fnp), _hess_fn(jnp)
    # Warm the rule cache with concrete calls of the same signatures first.
    for _ in range(2):
        _close(fgrad.grad(f_f)(fnp.asarray(x)), jax.grad(f_j)(jnp.asarray(x)))
    _close(fgrad.hessian(f_f)(fnp.asarray(x)), jax.hessian(f_j)(jnp.asarray(x)), rtol=1e-9)
    # grad of grad (reverse over reverse: the inner rules see tracers).
    g2 = fgrad.grad(lambda v: fnp.sum(fgrad.grad(f_f)(v) ** 2))(fnp.asarray(x))
    j2 = jax.grad(lambda v: jnp.sum(jax.grad(f_j)(v) ** 2))(jnp.asarray(x))
    _close(g2, j2, rtol=1e-9)
    # and under jit (abstract tracers), then eagerly again.
    _close(fgrad.jit(fgrad.grad(f_f))(fnp.asarray(x)), jax.grad(f_j)(jnp.asarray(x)), rtol=1e-9)
    _close(fgrad.grad(f_f)(fnp.asarray(x)), jax.grad(f_j)(jnp.asarray(x)))


def test_batched_and_forward_mode_derivatives_after_the_cache_is_warm():
    f_f, f_j = _hess_fn(fnp), _hess_fn(jnp)
    xs = np.random.default_rng(15).normal(size=(4, 6))
    for _ in range(2):  # the first call warms the cache for the second
        _close(fgrad.grad(f_f)(fnp.asarray(xs[0])), jax.grad(f_j)(jnp.asarray(xs[0])))
    _close(fgrad.vmap(fgrad.grad(f_f))(fnp.asarray(xs)), jax.vmap(jax.grad(f_j))(jnp.asarray(xs)))
    _close(fgrad.jacrev(fgrad.grad(f_f))(fnp.asarray(xs[1])), jax.hessian(f_j)(jnp.asarray(xs[1])))
    _close(fgrad.jacfwd(fgrad.grad(f_f))(fnp.asarray(xs[2])), jax.hessian(f_j)(jnp.asarray(xs[2])))


def test_eager_grad_of_a_constant_inside_jit():
    # The inner grad runs on concrete values (cached rules) while jit is tracing.
    c = np.random.default_rng(7).normal(size=(4,))

    def fj(x):
        return fgrad.grad(lambda v: fnp.sum(fnp.sin(v) ** 2))(fnp.asarray(c)) * x

    got = fgrad.jit(fj)(fnp.ones(4, np.float64))
    want = jax.grad(lambda v: jnp.sum(jnp.sin(v) ** 2))(jnp.asarray(c))
    _close(got, want)


def test_rule_cache_is_bounded(monkeypatch):
    # A full cache (4096 entries) is emptied before the next entry goes in.
    monkeypatch.setattr(ad, "_RULE_CACHE", {("dummy", i): None for i in range(4096)})
    loss_f, loss_j = _mlp_loss(fnp), _mlp_loss(jnp)
    rng = np.random.default_rng(8)
    p, x = _mlp_params(rng), rng.normal(size=(4, 3))
    y = np.eye(2)[[0, 1, 0, 1]]
    got = fgrad.grad(loss_f)(_to_f(p), fnp.asarray(x), fnp.asarray(y))
    _close(got, jax.grad(loss_j)(_to_j(p), jnp.asarray(x), jnp.asarray(y)))
    assert 0 < len(ad._RULE_CACHE) < 4096
    assert not any(k[0] == "dummy" for k in ad._RULE_CACHE)


def test_grad_dtype_checks_keep_their_messages():
    with pytest.raises(TypeError, match=r"argument 0\['b'\] has dtype int32"):
        fgrad.grad(lambda d: fnp.sum(d["a"]))({"a": fnp.ones(2), "b": fnp.asarray([1, 2])})
    with pytest.raises(TypeError, match="argument 1 has dtype bool"):
        fgrad.grad(lambda a, b: fnp.sum(a), argnums=(0, 1))(fnp.ones(2), fnp.asarray([True]))
    with pytest.raises(TypeError, match="argument 0 has dtype int"):
        fgrad.grad(lambda a: a * 2.0)(3)
    assert float(fgrad.grad(lambda a: a * 2.0)(3.0)) == 2.0
    g = fgrad.grad(lambda d: d["a"] * d["b"])({"a": 2.0, "b": fnp.asarray(5.0)})
    assert float(g["a"]) == 5.0 and float(g["b"]) == 2.0


# ================================================================ 2. shape-rule cache


_probe_p = core.Primitive("test_fast_paths_param_probe")


@_probe_p.def_shape
def _probe_shape(x, *, fill):
    # The output dtype depends on the *type* of the param: 2, 2.0 and True are equal
    # (and hash alike) but give int64, float64 and bool.
    return core.ShapedArray(x.shape, np.asarray(fill).dtype)


_probe_p.def_impl(lambda x, *, fill: np.full(x.shape, fill))


def test_shape_rule_cache_tells_2_from_2_0_from_true():
    x = fnp.ones(3)
    for order in ([2, 2.0, True], [True, 2.0, 2], [2.0, 2, True]):
        _probe_p._eager_cache.clear()
        for fill in order * 2:
            out = _probe_p.bind(x, fill=fill)
            assert out.dtype == np.asarray(fill).dtype, (order, fill)
            np.testing.assert_array_equal(_np(out), np.full(3, fill))
        assert len(_probe_p._eager_cache) == 3


def test_real_primitives_with_equal_params_of_other_types():
    x = fnp.asarray(np.arange(6.0).reshape(2, 3))
    # convert_element_type: the dtype param as a type, a dtype, a string.
    for new in (np.float32, np.dtype(np.int16), "int8", np.float32, bool):
        out = lax.convert_element_type(x, new)
        assert out.dtype == np.dtype(new)
        np.testing.assert_array_equal(_np(out), np.arange(6.0).reshape(2, 3).astype(new))
    # reduce_sum over each axis of a square matrix (same signature, other params).
    sq = np.arange(16.0).reshape(4, 4) ** 2
    for axes in [(0,), (1,), (0, 1), (1,), (0,)]:
        np.testing.assert_array_equal(_np(lax.reduce_sum(fnp.asarray(sq), axes)), sq.sum(axes))


def test_shape_errors_are_not_cached_and_name_each_call_site():
    a, b = fnp.ones(3), fnp.ones(4)
    msgs = []
    for _ in range(2):
        with pytest.raises(core.FgradTypeError) as e1:
            lax.add(a, b)  # L:bad-add-1
        with pytest.raises(core.FgradTypeError) as e2:
            lax.add(a, b)  # L:bad-add-2
        msgs.append((str(e1.value), str(e2.value)))
    for m1, m2 in msgs:
        assert "incompatible shapes" in m1 and "f32[3], f32[4]" in m1
        assert m1.endswith(_line_of("bad-add-1")) and m2.endswith(_line_of("bad-add-2"))
    assert msgs[0] == msgs[1]
    # The failing signature left nothing behind; a good call of that primitive works.
    assert all(k != ((3,), a.dtype, (4,), b.dtype) for k in elementwise.add_p._eager_cache)
    np.testing.assert_array_equal(_np(lax.add(a, a)), np.full(3, 2.0))


def test_shape_rule_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(core, "_EAGER_CACHE_SIZE", 4)
    elementwise.sin_p._eager_cache.clear()
    for n in list(range(1, 11)) * 2:
        x = np.linspace(0.0, 1.0, n)
        np.testing.assert_allclose(_np(lax.sin(fnp.asarray(x))), np.sin(x))
        assert len(elementwise.sin_p._eager_cache) <= 4


def test_unhashable_params_are_not_cached():
    x = fnp.ones((2, 3))
    before = dict(lax.shapes.transpose_p._eager_cache)
    out = lax.shapes.transpose_p.bind(x, permutation=[1, 0])  # a list: unhashable
    assert out.shape == (3, 2)
    assert lax.shapes.transpose_p._eager_cache == before


# ================================================================ 3. bind fast path, leaks

_leaked: list = []


def _stash(x):
    y = x * 2.0  # L:stash-created
    _leaked.append(y)
    return fnp.sum(y)


@pytest.mark.parametrize(
    "use",
    [
        lambda t: t + 1.0,
        lambda t: 1.0 - t,
        lambda t: t * fnp.ones(3),
        lambda t: t * fnp.ones((2, 3)),  # same dtype, broadcast: the new promotion path
        lambda t: fnp.ones((2, 3), np.float64) + t,  # mixed dtypes: the general path
        lambda t: fnp.sin(t),
        lambda t: lax.add(t, fnp.ones(3)),
        lambda t: fnp.where(fnp.ones(3) > 0, t, 0.0),
    ],
)
@pytest.mark.parametrize("transform", ["grad", "jit", "vmap"])
def test_leaked_tracers_are_still_caught(use, transform):
    _leaked.clear()
    if transform == "grad":
        fgrad.grad(_stash)(fnp.ones(3))
    elif transform == "jit":
        fgrad.jit(_stash)(fnp.ones(3))
    else:
        fgrad.vmap(_stash)(fnp.ones((4, 3)))
    tracer = _leaked.pop()
    with pytest.raises(fgrad.UnexpectedTracerError) as e:
        use(tracer)
    assert _line_of("stash-created") in str(e.value)


def test_eager_ops_inside_jit_on_constants_are_computed_and_staged_correctly():
    c = fnp.asarray(np.arange(3.0))

    @fgrad.jit
    def f(x):
        k = fnp.exp(c) * 2.0  # concrete operands only: computed eagerly while tracing
        return x * k + fnp.sum(c)

    for _ in range(2):
        np.testing.assert_allclose(
            _np(f(fnp.ones(3, np.float64))), np.exp(np.arange(3.0)) * 2.0 + 3.0
        )
    assert f.trace_count == 1


# ================================================================ 4. jit call fast path

Pair = collections.namedtuple("Pair", "a b")
Other = collections.namedtuple("Other", "a b")
Empty = collections.namedtuple("Empty", "")


def _structure_fn(tree):
    """Type- and key-preserving: multiplies leaf i by i + 1 and adds a sum."""
    leaves, treedef = fgrad.tree.flatten(tree)
    total = sum(fnp.sum(leaf) for leaf in leaves) if leaves else 0.0
    new = [leaf * float(i + 1) + total for i, leaf in enumerate(leaves)]
    return fgrad.tree.unflatten(treedef, new)


def _assert_same_tree(got, want):
    """Same structure (exact container types and keys, in the order the generic
    ``tree.unflatten`` gives) and the same values."""
    leaves, treedef = fgrad.tree.flatten(want)
    _assert_same_tree_exact(got, fgrad.tree.unflatten(treedef, leaves))


def _assert_same_tree_exact(got, want):
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            _assert_same_tree_exact(got[k], want[k])
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same_tree_exact(g, w)
    elif want is None:
        assert got is None
    else:
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(_np(got), _np(want), rtol=1e-6)


def _arr(*values, dtype=np.float32):
    return fnp.asarray(np.asarray(values, dtype=dtype))


def test_alternating_structures_each_get_their_program():
    f = fgrad.jit(_structure_fn)
    trees = [
        {"a": _arr(1, 2), "b": _arr(3)},
        {"a": _arr(1, 2), "c": _arr(3)},  # same size, other key
        {"b": _arr(1, 2), "a": _arr(3)},  # other key -> leaf mapping
        [_arr(1, 2), _arr(3)],
        (_arr(1, 2), _arr(3)),
        Pair(_arr(1, 2), _arr(3)),
        Other(_arr(1, 2), _arr(3)),
        {"a": _arr(1, 2), "b": None},
        {"a": None, "b": _arr(1, 2)},
        [(_arr(1, 2),), {"x": [_arr(3), None]}],
        [[_arr(1, 2)], {"x": [_arr(3), None]}],
        Empty(),
        [],
    ]
    for _ in range(3):
        for t in trees:
            _assert_same_tree(f(t), _structure_fn(t))
    assert f.trace_count == len(trees)


def test_no_arguments_and_only_none_arguments():
    f = fgrad.jit(lambda: {"o": fnp.ones(2), "z": None})
    g = fgrad.jit(lambda n: fnp.ones(2) * 3.0)
    for _ in range(3):
        _assert_same_tree(f(), {"o": fnp.ones(2), "z": None})
        _assert_same_tree(g(None), fnp.ones(2) * 3.0)
    assert f.trace_count == 1 and g.trace_count == 1


def test_dict_insertion_order_does_not_matter():
    f = fgrad.jit(lambda d: d["a"] * 2.0 - d["b"])
    for d in [{"a": _arr(1.0), "b": _arr(5.0)}, {"b": _arr(5.0), "a": _arr(1.0)}] * 2:
        assert _np(f(d)).tolist() == [-3.0]
    assert f.trace_count == 1


def test_same_structure_with_other_containers_inside_takes_the_general_path():
    f = fgrad.jit(_structure_fn)
    a, b = _arr(1, 2), _arr(3)
    calls = [
        (a, b),
        (a, (b,)),  # a leaf became a tuple
        (a, b),
        ([a], b),
        (a, b),
        (a, None),
        (a, b),
        ({"k": a}, b),
        ({"k": a, "j": b}, b),
        (a, b),
        (a, 2.0),  # Python scalar where an Array was
        (a, b),
    ]
    for args in calls:
        _assert_same_tree(f(args), _structure_fn(args))


def test_python_scalars_and_numpy_arrays_are_dynamic_leaves():
    f = fgrad.jit(lambda x, s: x * s + 1.0)
    x = _arr(1, 2, 3)
    for s in [2.0, 3.0, -0.5, 2.0]:
        _assert_same_tree(f(x, s), x * s + 1.0)
    assert f.trace_count == 1
    # An Array of the scalar's dtype, then NumPy arrays in either position.
    _assert_same_tree(f(x, _arr(4.0)[0]), x * 4.0 + 1.0)
    np_x = np.asarray([1, 2, 3], np.float32)
    _assert_same_tree(f(np_x, 5.0), x * 5.0 + 1.0)
    _assert_same_tree(f(x, np.float32(5.0)), x * 5.0 + 1.0)
    assert f.trace_count == 1
    # An int leaf with an int array; a float leaf with an int array (NEP 50: float64).
    xi = fnp.asarray(np.array([1, 2, 3], np.int32))
    for s in [2, 3, 2.5, 4]:
        got, want = f(xi, s), xi * s + 1.0
        _assert_same_tree(got, want)


def test_shape_and_dtype_changes_retrace_and_old_signatures_still_hit():
    f = fgrad.jit(lambda x, y: {"s": x + y, "p": (x * y, fnp.sum(x))})
    sigs = [
        ((3,), np.float32),
        ((4,), np.float32),
        ((3,), np.float64),
        ((3,), np.int32),
        ((2, 3), np.float32),
    ]
    rng = np.random.default_rng(9)
    for _ in range(3):
        for shape, dtype in sigs:
            x = fnp.asarray((rng.normal(size=shape) * 10).astype(dtype))
            y = fnp.asarray((rng.normal(size=shape) * 10).astype(dtype))
            _assert_same_tree(f(x, y), f.fun(x, y))
        assert f.trace_count == len(sigs)


def test_lru_eviction_with_a_small_cache_and_the_fast_path():
    old = fgrad.config.jit_cache_size
    fgrad.config.update("jit_cache_size", 2)
    try:
        f = fgrad.jit(lambda x: x * 2.0 + fnp.sum(x))
        A, B, C = fnp.ones(2), fnp.ones(3), fnp.ones(4)
        expected_traces = []
        # A and B compile; A is hit (fast path: it becomes most recent); C evicts B,
        # not A; A still hits; B compiles again and evicts C; C compiles again.
        for x, traces in [(A, 1), (B, 2), (A, 2), (A, 2), (C, 3), (A, 3), (B, 4), (A, 4), (C, 5)]:
            _assert_same_tree(f(x), x * 2.0 + fnp.sum(x))
            expected_traces.append((f.trace_count, f.cache_size()))
            assert f.trace_count == traces, expected_traces
            assert f.cache_size() <= 2
        # A cycle longer than the cache recompiles every call, and stays correct.
        g = fgrad.jit(lambda x: x - 1.0)
        for _ in range(3):
            for x in (A, B, C):
                _assert_same_tree(g(x), x - 1.0)
        assert g.trace_count == 9 and g.cache_size() == 2
    finally:
        fgrad.config.update("jit_cache_size", old)


def test_clear_cache_forgets_fast_path_programs():
    calls = []

    def fun(x):
        calls.append(1)
        return x + 1.0

    f = fgrad.jit(fun)
    x = fnp.ones(3)
    f(x)
    f(x)
    assert len(calls) == 1
    f.clear_cache()
    assert f.cache_size() == 0
    _assert_same_tree(f(x), x + 1.0)
    assert len(calls) == 2 and f.cache_size() == 1
    f(x)
    assert len(calls) == 2


def test_static_arguments_and_keywords():
    f = fgrad.jit(lambda x, n, scale=1.0: x * n * scale, static_argnums=1)
    x = _arr(1, 2)
    for n in [2, 3, 2, 3]:
        _assert_same_tree(f(x, n), x * n)
    assert f.trace_count == 2
    _assert_same_tree(f(x, 2, scale=_arr(3.0)[0]), x * 6.0)
    _assert_same_tree(f(x, 2, _arr(3.0)[0]), x * 6.0)
    g = fgrad.jit(lambda x, y: x - y)
    for kw in [False, True, False, True]:
        got = g(x, y=_arr(5, 5)) if kw else g(x, _arr(5, 5))
        _assert_same_tree(got, x - _arr(5, 5))
    h = fgrad.jit(lambda x, *, mode: x * 2.0 if mode == "double" else x, static_argnames="mode")
    for mode in ["double", "same", "double"]:
        _assert_same_tree(h(x, mode=mode), x * 2.0 if mode == "double" else x)
    assert h.trace_count == 2


def test_nested_outputs_keep_their_exact_structure():
    def fun(x, y):
        return {
            "z": [x, (y, None), Pair(x * y, Empty())],
            "a": (),
            "m": {"k": [], 3: x - y},
            "n": None,
            "o": Other(a={"q": y}, b=[x]),
        }

    f = fgrad.jit(fun)
    for k in range(3):
        x, y = _arr(1, 2) + k, _arr(3, 4) * k
        got, want = f(x, y), fun(x, y)
        _assert_same_tree(got, want)
    # Empty containers in the output are fresh objects on every call.
    r1, r2 = f(x, y), f(x, y)
    assert r1["m"]["k"] is not r2["m"]["k"]


def test_outputs_of_earlier_calls_are_not_overwritten():
    f = fgrad.jit(lambda x: (fnp.tanh(x) * 3.0, x + 1.0))
    xs = [fnp.asarray(np.full(5, float(i), np.float32)) for i in range(4)]
    outs = [f(x) for x in xs]
    for x, (a, b) in zip(xs, outs):
        np.testing.assert_allclose(_np(a), np.tanh(_np(x)) * 3.0, rtol=1e-6)
        np.testing.assert_array_equal(_np(b), _np(x) + 1.0)


def test_default_backend_change_is_not_served_by_the_fast_path():
    f = fgrad.jit(lambda x: fnp.exp(x) - 1.0)
    x = _arr(0.5, 1.0)
    f(x)
    f(x)
    old = fgrad.config.default_backend
    try:
        fgrad.config.update("default_backend", "reference")
        _assert_same_tree(f(x), fnp.exp(x) - 1.0)
        assert f.trace_count == 2
    finally:
        fgrad.config.update("default_backend", old)
    f(x)
    assert f.trace_count == 2


def test_debug_nans_checked_on_fast_path_calls():
    f = fgrad.jit(lambda x: fnp.log(x))
    f(fnp.ones(3))
    f(fnp.ones(3))
    fgrad.config.update("debug_nans", True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(FloatingPointError, match="log"):
                f(-fnp.ones(3))
    finally:
        fgrad.config.update("debug_nans", False)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["dict_ab", "dict_ac", "list", "tuple", "pair", "none", "nested"]),
            st.sampled_from([(2,), (3,), ()]),
            st.sampled_from([np.float32, np.float64]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_random_call_sequences_match_eager(seq):
    f = fgrad.jit(_structure_fn, backend="reference")
    seen = set()
    for kind, shape, dtype in seq:
        a = fnp.asarray(np.full(shape, 1.5, dtype))
        b = fnp.asarray(np.full(shape, -2.0, dtype))
        tree = {
            "dict_ab": {"a": a, "b": b},
            "dict_ac": {"a": a, "c": b},
            "list": [a, b],
            "tuple": (a, b),
            "pair": Pair(a, b),
            "none": (a, None, b),
            "nested": [{"x": (a,)}, b],
        }[kind]
        _assert_same_tree(f(tree), _structure_fn(tree))
        seen.add((kind, shape, np.dtype(dtype)))
    assert f.trace_count == len(seen)


# ================================================================ 5. select_n


_SPECIALS = {
    np.float16: [0.0, -0.0, np.inf, -np.inf, np.nan, 6.1e-5, -1.0],
    np.float32: [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -3.4e38],
    np.float64: [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.7e308],
}
_DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int32,
    np.int64,
    np.uint8,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
]


def _random_values(rng, dtype, shape):
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    if dtype == np.bool_:
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    # Random bit patterns: every NaN payload and sign, subnormals, -0.0.
    raw = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
    vals = raw.view(dtype).reshape(shape).copy()
    if dtype.type in _SPECIALS:
        flat = vals.reshape(-1)
        sp = np.asarray(_SPECIALS[dtype.type], dtype)
        flat[: min(n, sp.size)] = sp[: min(n, sp.size)]
        # A quiet NaN with a payload and the sign bit set.
        bits = flat.view(f"u{dtype.itemsize}")
        if n > 8:
            bits[8] = bits.dtype.type((1 << (8 * dtype.itemsize - 1)) | ((1 << 12) - 1) << 1)
            bits[8] |= bits.dtype.type(np.asarray(np.nan, dtype).view(bits.dtype))
    return vals


def _bits(a):
    """The bytes of each element (exact, NaN payloads and signs included)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(*a.shape, a.dtype.itemsize)


@pytest.mark.parametrize("dtype", _DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(4095,), (4096,), (4097,), (8195,), (64, 65), (2, 64, 32)])
def test_select_n_is_bit_exact_with_np_where(dtype, shape):
    rng = np.random.default_rng([_DTYPES.index(dtype), math.prod(shape)])
    which = rng.integers(0, 2, shape).astype(bool)
    t, f = _random_values(rng, dtype, shape), _random_values(rng, dtype, shape)
    got = _np(lax.select_n(fnp.asarray(which), fnp.asarray(f), fnp.asarray(t)))
    want = np.where(which, t, f)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(_bits(got), _bits(want))
    # fnp.where and lax.select agree as well.
    got2 = _np(fnp.where(fnp.asarray(which), fnp.asarray(t), fnp.asarray(f)))
    np.testing.assert_array_equal(_bits(got2), _bits(want))


def test_select_n_on_views_broadcasts_and_scalar_predicates():
    rng = np.random.default_rng(10)
    base = _random_values(rng, np.float32, (80, 70))
    other = _random_values(rng, np.float32, (70, 80))
    which = rng.integers(0, 2, (70, 80)).astype(bool)
    # A transposed (non-contiguous) case from lax.transpose, and a stride-0 broadcast.
    t = lax.transpose(fnp.asarray(base), (1, 0))
    f = fnp.broadcast_to(fnp.asarray(np.float32(-0.0)), (70, 80))
    got = _np(lax.select_n(fnp.asarray(which), f, t))
    want = np.where(which, base.T, np.float32(-0.0))
    np.testing.assert_array_equal(_bits(got), _bits(want))
    # Broadcast predicate (stride 0) and a sliced (strided) case.
    w = fnp.broadcast_to(fnp.asarray(which[0]), (70, 80))
    s = fnp.asarray(np.repeat(other, 2, axis=1))[:, ::2]
    got = _np(lax.select_n(w, s, t))
    want = np.where(np.broadcast_to(which[0], (70, 80)), base.T, other)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    # Rank-0 predicates choose whole arrays.
    for p in (True, False):
        got = _np(lax.select_n(fnp.asarray(p), fnp.asarray(other), t))
        np.testing.assert_array_equal(_bits(got), _bits(base.T if p else other))
    # An integer selector over three cases uses np.choose.
    k = rng.integers(0, 3, (70, 80)).astype(np.int32)
    cases = [other, base.T, np.negative(other)]
    got = _np(lax.select_n(fnp.asarray(k), *map(fnp.asarray, cases)))
    np.testing.assert_array_equal(_bits(got), _bits(np.choose(k, cases)))
    with pytest.raises(core.FgradTypeError, match="selector shape"):
        lax.select_n(fnp.asarray(which[0]), fnp.asarray(other), fnp.asarray(other))


def test_select_n_result_is_a_fresh_array():
    rng = np.random.default_rng(11)
    t, f = rng.normal(size=5000), rng.normal(size=5000)
    which = t > 0
    out = lax.select_n(fnp.asarray(which), fnp.asarray(f), fnp.asarray(t))
    assert not np.shares_memory(_np(out), t) and not np.shares_memory(_np(out), f)
    np.testing.assert_array_equal(_np(out), np.where(which, t, f))


def test_large_relu_grad_matches_jax():
    x = np.random.default_rng(12).normal(size=(70, 80))

    def f(np_mod):
        return lambda v: np_mod.sum(np_mod.where(v > 0, v, 0.1 * v) ** 2)

    for _ in range(2):
        _close(fgrad.grad(f(fnp))(fnp.asarray(x)), jax.grad(f(jnp))(jnp.asarray(x)))
    _close(fgrad.jit(fgrad.grad(f(fnp)))(fnp.asarray(x)), jax.grad(f(jnp))(jnp.asarray(x)))


@given(
    st.sampled_from(_DTYPES),
    st.integers(4090, 4200),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.5, 1.0]),
)
def test_select_n_random_bits(dtype, n, seed, p_true):
    rng = np.random.default_rng(seed)
    which = rng.random(n) < p_true
    t, f = _random_values(rng, dtype, (n,)), _random_values(rng, dtype, (n,))
    got = _np(lax.select_n(fnp.asarray(which), fnp.asarray(f), fnp.asarray(t)))
    np.testing.assert_array_equal(_bits(got), _bits(np.where(which, t, f)))


# ================================================================ 6. promotion

_ARRAY_DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int32,
    np.int64,
    np.uint8,
    np.uint32,
    np.bool_,
]
_SCALARS = [
    2,
    2.0,
    -0.0,
    0.0,
    0,
    -1,
    1.5,
    127,
    255,
    300,
    -129,
    2**40,
    1e300,
    math.nan,
    -math.inf,
    True,
]
_OPS = {
    "add": (fnp.add, np.add, lambda a, b: a + b),
    "subtract": (fnp.subtract, np.subtract, lambda a, b: a - b),
    "multiply": (fnp.multiply, np.multiply, lambda a, b: a * b),
    "divide": (fnp.divide, np.divide, lambda a, b: a / b),
    "maximum": (fnp.maximum, np.maximum, None),
    "minimum": (fnp.minimum, np.minimum, None),
}


def _int_fits(s, dtype) -> bool:
    if type(s) is not int:
        return True
    info = np.iinfo(dtype)
    return info.min <= s <= info.max


def _same_as_numpy(fgrad_fn, np_fn, f_args, n_args):
    """fgrad_fn(*f_args) matches np_fn(*n_args): same dtype and bits, or both raise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            want = np.asarray(np_fn(*n_args))
        except (OverflowError, TypeError) as e:
            with pytest.raises(type(e)):
                fgrad_fn(*f_args)
            return
        got = fgrad_fn(*f_args)
    got = _np(got)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if want.dtype.kind == "f":  # the sign of zeros too
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("op", sorted(_OPS))
@pytest.mark.parametrize("dtype", _ARRAY_DTYPES, ids=lambda d: np.dtype(d).name)
def test_weak_python_scalars_on_either_side_follow_nep50(op, dtype):
    f_fn, n_fn, infix = _OPS[op]
    base = np.asarray([0, 1, 3, -2, 0], dtype=np.float64)
    x_np = base.astype(dtype) if dtype != np.bool_ else base.astype(bool)
    if np.dtype(dtype).kind == "f":
        x_np[-1] = -0.0
    x = fnp.asarray(x_np)
    for s in _SCALARS:
        if op == "subtract" and np.dtype(dtype) == np.bool_:
            continue  # NumPy refuses bool - bool; not a promotion question
        if op == "divide" and np.dtype(dtype).kind in "iu" and not _int_fits(s, dtype):
            # Known, older difference (not a fast path): NumPy's true_divide resolves
            # its float64 loop first; fgrad promotes first and raises OverflowError.
            continue
        _same_as_numpy(f_fn, n_fn, (x, s), (x_np, s))
        _same_as_numpy(f_fn, n_fn, (s, x), (s, x_np))
        if infix is not None:
            _same_as_numpy(infix, infix, (x, s), (x_np, s))
            _same_as_numpy(infix, infix, (s, x), (s, x_np))


def test_signed_zero_scalars_are_not_confused():
    x_np = np.asarray([0.0, -0.0, 1.0], np.float32)
    x = fnp.asarray(x_np)
    for _ in range(2):
        for s in (0.0, -0.0, 0.0, -0.0):
            for got, want in [
                (x * s, x_np * s),
                (s * x, s * x_np),
                (s + x, s + x_np),
                (x - s, x_np - s),
                (s - x, s - x_np),
            ]:
                assert _np(got).dtype == np.float32
                np.testing.assert_array_equal(np.signbit(_np(got)), np.signbit(want))
                np.testing.assert_array_equal(_np(got), want)
    # -0.0 + 0.0 is +0.0, -0.0 + -0.0 is -0.0.
    assert list(np.signbit(_np(-0.0 + x))) == [False, True, False]
    assert list(np.signbit(_np(0.0 + x))) == [False, False, False]


def test_documented_promotions():
    x32 = fnp.ones(3, np.float32)
    i32 = fnp.asarray(np.arange(3, dtype=np.int32))
    assert (2.0 * x32).dtype == np.float32 and (x32 * 2).dtype == np.float32
    assert (i32 * 2).dtype == np.int32 and (2 * i32).dtype == np.int32
    assert (i32 * 2.0).dtype == np.float64  # NEP 50: a float scalar widens an int array
    assert (i32 * x32).dtype == np.float64 and (x32 * i32).dtype == np.float64
    i8 = fnp.asarray(np.arange(3, dtype=np.int8))
    u8 = fnp.asarray(np.arange(3, dtype=np.uint8))
    assert (i8 + u8).dtype == np.int16
    with pytest.raises(OverflowError):
        u8 + (-1)
    with pytest.raises(OverflowError):
        -1 + u8


_SHAPE_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 1), (1, 4)),
    ((4,), (3, 4)),
    ((3, 4), (4,)),
    ((), (3, 4)),
    ((2, 1, 4), (3, 1)),
    ((1,), (5,)),
    ((5,), (1,)),
    ((0, 3), (1, 3)),
    ((2, 3, 1), (2, 1, 4)),
]


@pytest.mark.parametrize("sx, sy", _SHAPE_PAIRS)
def test_array_array_broadcasting_same_and_mixed_dtypes(sx, sy):
    rng = np.random.default_rng(13)
    pairs = [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int32, np.int32),
        (np.bool_, np.bool_),
        (np.int32, np.float32),
        (np.float16, np.float32),
        (np.int8, np.uint8),
        (np.bool_, np.int8),
        (np.float64, np.int64),
    ]
    for dx, dy in pairs:
        a = (rng.normal(size=sx) * 5).astype(dx)
        b = (rng.normal(size=sy) * 5).astype(dy)
        b = np.where(b == 0, np.ones_like(b), b)  # keep integer division defined
        for op, (f_fn, n_fn, _) in _OPS.items():
            if op == "subtract" and dx == dy == np.bool_:
                continue
            _same_as_numpy(f_fn, n_fn, (fnp.asarray(a), fnp.asarray(b)), (a, b))


def test_incompatible_shapes_still_raise_at_the_users_line():
    for dt in (np.float32, np.float64):
        a = fnp.ones((3, 2), np.float32)
        b = fnp.ones((4,), dt)
        with pytest.raises(core.FgradTypeError) as e:
            a + b  # L:bad-broadcast
        assert "incompatible shapes" in str(e.value)
        assert str(e.value).endswith(_line_of("bad-broadcast"))


def test_promotion_under_jit_and_grad_matches_eager_and_jax():
    def f(np_mod):
        def fun(w, b, x):
            # same-dtype broadcasting (w: (3, 1), b: (4,)), weak scalars on both sides
            h = 2.0 * (w * b) - 1 + x / 3
            return np_mod.sum(np_mod.maximum(h, 0.5) * np_mod.minimum(1.0, h)) + np_mod.sum(b * b)

        return fun

    rng = np.random.default_rng(14)
    w, b, x = rng.normal(size=(3, 1)), rng.normal(size=(4,)), rng.normal(size=(2, 3, 4))
    args_f = [fnp.asarray(v) for v in (w, b, x)]
    args_j = [jnp.asarray(v) for v in (w, b, x)]
    eager = f(fnp)(*args_f)
    jitted = fgrad.jit(f(fnp))(*args_f)
    assert eager.dtype == jitted.dtype == np.float64
    _close(jitted, f(jnp)(*args_j))
    _close(eager, f(jnp)(*args_j))
    for argnums in (0, 1, (0, 1, 2)):
        want = jax.grad(f(jnp), argnums=argnums)(*args_j)
        _close(fgrad.grad(f(fnp), argnums=argnums)(*args_f), want)
        _close(fgrad.jit(fgrad.grad(f(fnp), argnums=argnums))(*args_f), want)
    # float32 stays float32 under jit with weak scalars.
    x32 = fnp.ones((2, 3), np.float32)
    out = fgrad.jit(lambda v: 2.0 * v - 1 + fnp.ones(3, np.float32) / 3)(x32)
    assert out.dtype == np.float32


def test_same_dtype_broadcasting_under_vmap_and_jvp():
    def fun(a, b):
        return 2.0 * (a * b) - b + 1 / (1.0 + a * a)

    rng = np.random.default_rng(16)
    A, B = rng.normal(size=(5, 3, 1)), rng.normal(size=(5, 4))
    got = fgrad.vmap(fun)(fnp.asarray(A), fnp.asarray(B))
    np.testing.assert_allclose(_np(got), np.stack([fun(a, b) for a, b in zip(A, B)]), rtol=1e-12)
    got = fgrad.vmap(fun, in_axes=(0, None))(fnp.asarray(A), fnp.asarray(B[0]))
    np.testing.assert_allclose(_np(got), np.stack([fun(a, B[0]) for a in A]), rtol=1e-12)
    got = fgrad.vmap(fun, in_axes=(None, 0))(fnp.asarray(A[0]), fnp.asarray(B))
    np.testing.assert_allclose(_np(got), np.stack([fun(A[0], b) for b in B]), rtol=1e-12)
    # Rank-0 operands of the same dtype against batched arrays.
    s = rng.normal(size=(5,))
    got = fgrad.vmap(lambda c, b: c * b + c)(fnp.asarray(s), fnp.asarray(B))
    np.testing.assert_allclose(_np(got), s[:, None] * B + s[:, None], rtol=1e-12)
    primals = (jnp.asarray(A[0]), jnp.asarray(B[0]))
    tangents = (jnp.asarray(A[1]), jnp.asarray(B[1]))
    out, tan = fgrad.jvp(fun, [fnp.asarray(v) for v in primals], [fnp.asarray(v) for v in tangents])
    out_j, tan_j = jax.jvp(fun, primals, tangents)
    _close(out, out_j)
    _close(tan, tan_j)


_hyp_dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int32, np.uint8])
_dims = st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=3)


@given(_hyp_dtypes, _hyp_dtypes, _dims, _dims, st.sampled_from(sorted(_OPS)), st.integers(0, 99))
def test_random_binary_ops_match_numpy(dx, dy, sx, sy, op, seed):
    rng = np.random.default_rng(seed)
    a = (rng.normal(size=sx) * 4).astype(dx)
    b = (rng.normal(size=sy) * 4).astype(dy)
    b = np.where(b == 0, np.ones_like(b), b)
    f_fn, n_fn, _ = _OPS[op]
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        with pytest.raises(core.FgradTypeError):
            f_fn(fnp.asarray(a), fnp.asarray(b))
        return
    _same_as_numpy(f_fn, n_fn, (fnp.asarray(a), fnp.asarray(b)), (a, b))
