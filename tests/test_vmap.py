"""vmap: every primitive's batching rule against stacking, composition, Jacobians, errors.

The registry sweep draws each primitive's operands from ``tests/primitive_cases.py``
(the same table as the derivative and backend sweeps) and checks, over hypothesis-drawn
shapes, batch sizes, ``in_axes`` and ``out_axes``, that ``vmap(f)(xs)`` equals stacking
``f(x)`` over the examples, and that ``make_jaxpr(vmap(f))`` does not grow with the
batch size (the rule is a whole-array rewrite, not a loop).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from primitive_cases import CASES, Draw, load_tool

import fgrad
import fgrad.numpy as fnp
from fgrad import lax

TOOL = load_tool()  # tools/gen_primitive_table.py knows every module declaring primitives
LOAD_ERRORS = TOOL.load_primitives()
PRIMITIVES = TOOL.fgrad_primitives()


# ---------------------------------------------------------------- registry sweep


class _Replay:
    """Hypothesis ``data`` that records its draws once, then replays them.

    Replaying a case generator with a fresh value RNG gives another example with the
    same shapes and params but new values: the examples of one batch.
    """

    def __init__(self, data):
        self.data = data
        self.log: list = []
        self.pos: int | None = None

    def draw(self, strategy, label=None):
        if self.pos is None:
            value = self.data.draw(strategy, label=label)
            self.log.append(value)
            return value
        value = self.log[self.pos]
        self.pos += 1
        return value


def _draw_examples(case, data, dtype, size):
    """``size`` examples of one case: (list of arg lists, params)."""
    replay = _Replay(data)
    first = Draw(replay, dtype)
    args0, params = case.gen(first)
    examples = [[np.asarray(a) for a in args0]]
    for k in range(1, size):
        replay.pos = 0
        d = Draw(replay, dtype)
        d.rng = np.random.default_rng([k, len(examples), 12345])
        args, params_k = case.gen(d)
        # Params come from the replayed structure draws; example 0's are used for all
        # (sub-jaxprs are re-traced per example, so only their keys are compared).
        assert params_k.keys() == params.keys()
        args = [np.asarray(a) for a in args]
        assert [(a.shape, a.dtype) for a in args] == [(a.shape, a.dtype) for a in examples[0]]
        examples.append(args)
    return examples, params


def _valid_axes(rank: int) -> list:
    """in_axes choices for an operand of logical rank ``rank`` (batched rank + 1)."""
    return [None, 0, -1] + ([1] if rank >= 1 else []) + ([-2] if rank >= 1 else [])


def _assert_same(got, want, dtype, where: str):
    got = np.asarray(got)
    assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
    if np.issubdtype(want.dtype, np.floating):
        tol = 1e-5 if want.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True, err_msg=where)
    else:
        np.testing.assert_array_equal(got, want, err_msg=where)


def test_all_primitive_modules_import():
    assert not LOAD_ERRORS, f"modules declaring primitives failed to import: {LOAD_ERRORS}"


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_batching_rule_declared(name):
    prim = PRIMITIVES[name]
    assert prim.batch_rule is not None, (
        f"primitive {name} has no batching rule: declare one with {name}_p.def_batch(rule) "
        f"next to its other rules"
    )


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
@given(data=st.data())
def test_vmap_matches_stacking(name, data):
    assert name in CASES, f"primitive {name} has no entry in tests/primitive_cases.py"
    prim, case = PRIMITIVES[name], CASES[name]
    dtype = data.draw(st.sampled_from(case.dtypes), label="dtype")
    size = data.draw(st.integers(1, 3), label="batch size")
    examples, params = _draw_examples(case, data, dtype, size)
    first = examples[0]
    if not first:  # no operands (iota_2x32_shape): nothing to map, axis_size given
        in_axes = ()
    else:
        in_axes = [data.draw(st.sampled_from(_valid_axes(a.ndim)), label="in_axis") for a in first]
        if all(ax is None for ax in in_axes):
            in_axes[data.draw(st.integers(0, len(first) - 1), label="forced")] = 0
        in_axes = tuple(in_axes)
    out_axis = data.draw(st.sampled_from([0, -1]), label="out_axes")

    def f(*ops):
        return prim.bind(*ops, **params)

    def batched(n):
        ops = []
        for i, ax in enumerate(in_axes):
            if ax is None:
                ops.append(first[i])
            else:
                ops.append(np.stack([examples[k % size][i] for k in range(n)], axis=ax))
        return ops

    vf = fgrad.vmap(f, in_axes=in_axes, out_axes=out_axis, axis_size=size)
    got = vf(*batched(size))
    per_example = []
    for ex in examples:
        ops = [first[i] if ax is None else ex[i] for i, ax in enumerate(in_axes)]
        per_example.append(f(*ops))
    if prim.multiple_results:
        wants = [
            np.stack([np.asarray(o[j]) for o in per_example], axis=out_axis)
            for j in range(len(per_example[0]))
        ]
        assert len(got) == len(wants)
    else:
        got = [got]
        wants = [np.stack([np.asarray(o) for o in per_example], axis=out_axis)]
    for j, (g, w) in enumerate(zip(got, wants, strict=True)):
        _assert_same(g, w, dtype, f"{name} output {j}, in_axes={in_axes}, params={params}")

    # A real rule: the traced program is the same size at another batch size.
    if in_axes:
        sizes = {}
        for n in (size, size + 4):
            vf_n = fgrad.vmap(f, in_axes=in_axes, out_axes=out_axis)
            sizes[n] = len(fgrad.make_jaxpr(vf_n)(*batched(n)).eqns)
        assert sizes[size] == sizes[size + 4], f"{name}: equations grow with the batch: {sizes}"


# ---------------------------------------------------------------- in_axes / out_axes


def test_in_axes_pytree_prefix_none_and_negative():
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(4, 2)), "b": rng.normal(size=(5, 2))}
    xs = rng.normal(size=(4, 5))  # mapped along its last axis

    def f(p, x):
        return fnp.dot(x, p["w"]) + p["b"][0]

    got = fgrad.vmap(f, in_axes=({"w": None, "b": 0}, -1))(params, xs)
    want = np.stack([xs[:, k] @ params["w"] + params["b"][k, 0] for k in range(5)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


def test_out_axes_and_kwargs():
    xs = np.arange(12.0).reshape(3, 4)
    out = fgrad.vmap(lambda x, *, s: (x * s, x.sum()), out_axes=(1, None if False else 0))(
        xs, s=np.array([1.0, 2.0, 3.0])
    )
    np.testing.assert_allclose(np.asarray(out[0]), (xs * np.array([[1.0], [2.0], [3.0]])).T)
    np.testing.assert_allclose(np.asarray(out[1]), xs.sum(1))
    # An output that does not depend on the mapped axis is broadcast (or kept, with None).
    const = fgrad.vmap(lambda x: fnp.ones(2), axis_size=3)(xs)
    assert const.shape == (3, 2)
    shared = fgrad.vmap(lambda x, y: (x + 1.0, y * 2.0), in_axes=(0, None), out_axes=(0, None))
    _, y2 = shared(xs, np.ones(4))
    assert y2.shape == (4,)


def test_axis_size_without_mapped_arguments():
    out = fgrad.vmap(lambda x: x * 2.0, in_axes=None, axis_size=4)(np.ones(2))
    assert out.shape == (4, 2)


# ---------------------------------------------------------------- composition


def _mlp_loss(params, x, y):
    h = fnp.tanh(fnp.dot(x, params["w1"]) + params["b1"])
    pred = fnp.dot(h, params["w2"])
    return fnp.mean((pred - y) ** 2)


def _mlp_data(n=5):
    rng = np.random.default_rng(2)
    params = {
        "w1": rng.normal(size=(3, 4)),
        "b1": rng.normal(size=(4,)),
        "w2": rng.normal(size=(4, 2)),
    }
    return params, rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def test_per_example_gradients_equal_a_loop():
    params, xs, ys = _mlp_data()
    per_ex = fgrad.vmap(fgrad.grad(_mlp_loss), in_axes=(None, 0, 0))(params, xs, ys)
    for k in range(len(xs)):
        g = fgrad.grad(_mlp_loss)(params, xs[k], ys[k])
        for name in params:
            np.testing.assert_allclose(np.asarray(per_ex[name][k]), np.asarray(g[name]), rtol=1e-12)
    # The same through jit, both ways round.
    jitted = fgrad.jit(fgrad.vmap(fgrad.grad(_mlp_loss), in_axes=(None, 0, 0)))(params, xs, ys)
    inner = fgrad.vmap(fgrad.jit(fgrad.grad(_mlp_loss)), in_axes=(None, 0, 0))(params, xs, ys)
    for name in params:
        np.testing.assert_allclose(np.asarray(jitted[name]), np.asarray(per_ex[name]), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(inner[name]), np.asarray(per_ex[name]), rtol=1e-12)


def test_per_example_gradients_match_jax():
    import jax
    import jax.numpy as jnp

    def jloss(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] - y) ** 2)

    params, xs, ys = _mlp_data()
    want = jax.vmap(jax.grad(jloss), in_axes=(None, 0, 0))(params, xs, ys)
    got = fgrad.vmap(fgrad.grad(_mlp_loss), in_axes=(None, 0, 0))(params, xs, ys)
    for name in params:
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-10)


def test_nested_vmap():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))

    def dist(x, y):
        return fnp.sqrt(fnp.sum((x - y) ** 2))

    pairwise = fgrad.vmap(fgrad.vmap(dist, in_axes=(None, 0)), in_axes=(0, None))(a, b)
    want = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(np.asarray(pairwise), want, rtol=1e-12)
    # Mapping over different axes at each level.
    m = rng.normal(size=(2, 3, 4))
    got = fgrad.vmap(fgrad.vmap(lambda v: fnp.cumsum(v) * v[0], in_axes=0), in_axes=2)(m)
    want = np.stack(
        [np.stack([np.cumsum(m[i, :, k]) * m[i, 0, k] for i in range(2)]) for k in range(4)]
    )
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


def test_vmap_of_jit_and_jit_of_vmap():
    rng = np.random.default_rng(4)
    xs, w = rng.normal(size=(6, 3)), rng.normal(size=(3, 2))

    def f(x, w):
        return fnp.tanh(fnp.dot(x, w)).sum() + x[1]

    want = np.stack([np.tanh(x @ w).sum() + x[1] for x in xs])
    for g in (fgrad.vmap(fgrad.jit(f), in_axes=(0, None)), fgrad.jit(fgrad.vmap(f, (0, None)))):
        np.testing.assert_allclose(np.asarray(g(xs, w)), want, rtol=1e-12)


def test_vmap_of_indexing_and_updates():
    """fnp-level code with per-example indices: gather, .at[].set and dynamic_slice."""
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(4, 6))
    idx = np.array([0, 5, -1, 2], dtype=np.int32)

    got = fgrad.vmap(lambda x, i: x[i])(xs, idx)
    np.testing.assert_allclose(np.asarray(got), xs[np.arange(4), idx])
    got = fgrad.vmap(lambda x, i: x.at[i].set(0.0))(xs, idx)
    want = xs.copy()
    want[np.arange(4), idx] = 0.0
    np.testing.assert_allclose(np.asarray(got), want)
    got = fgrad.vmap(lambda x, i: lax.dynamic_slice(x, (i,), (3,)))(xs, idx)
    starts = np.clip(np.where(idx < 0, idx + 6, idx), 0, 3)  # negative starts wrap, as JAX
    np.testing.assert_allclose(
        np.asarray(got), np.stack([x[s : s + 3] for x, s in zip(xs, starts, strict=True)])
    )


# ---------------------------------------------------------------- no loops in disguise


def _count(f, *args):
    return len(fgrad.make_jaxpr(f)(*args).eqns)


def test_equation_count_independent_of_batch_size():
    params, _, _ = _mlp_data()
    per_ex = fgrad.vmap(fgrad.grad(_mlp_loss), in_axes=(None, 0, 0))
    counts = [_count(per_ex, params, np.ones((n, 3)), np.ones((n, 2))) for n in (3, 7)]
    assert counts[0] == counts[1], counts

    def f(x):
        return fnp.sum(fnp.sin(x) * x[::-1]) + fnp.max(x)

    counts = [_count(fgrad.vmap(f), np.ones((n, 5))) for n in (3, 7)]
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("jac", [fgrad.jacfwd, fgrad.jacrev, fgrad.hessian])
def test_jacobian_equation_count_independent_of_size(jac):
    def f(x):
        return fnp.sum(fnp.tanh(x) * x) if jac is fgrad.hessian else fnp.tanh(x) * x.sum()

    counts = [_count(jac(f), np.ones(n)) for n in (3, 7)]
    assert counts[0] == counts[1], counts


# ---------------------------------------------------------------- Jacobians against JAX


def _jac_cases():
    import jax.numpy as jnp

    return [
        # (fgrad fn, jax fn, args, argnums)
        (
            lambda x: fnp.sin(x) * x.sum(),
            lambda x: jnp.sin(x) * x.sum(),
            (np.linspace(-1, 1, 4),),
            0,
        ),
        (
            lambda x, y: fnp.dot(x, y) ** 2,
            lambda x, y: jnp.dot(x, y) ** 2,
            (np.arange(6.0).reshape(2, 3) / 5, np.arange(3.0) - 1),
            (0, 1),
        ),
        (
            lambda p: {"a": fnp.tanh(p["w"]).sum(0), "b": p["v"] * p["w"][0]},
            lambda p: {"a": jnp.tanh(p["w"]).sum(0), "b": p["v"] * p["w"][0]},
            ({"w": np.arange(6.0).reshape(3, 2) / 4, "v": np.array([0.5, -1.0])},),
            0,
        ),
    ]


@pytest.mark.parametrize("mode", ["jacfwd", "jacrev"])
def test_jacobians_match_jax(mode):
    import jax

    for f, jf, args, argnums in _jac_cases():
        got = getattr(fgrad, mode)(f, argnums=argnums)(*args)
        want = getattr(jax, mode)(jf, argnums=argnums)(*args)
        got_l, want_l = fgrad.tree.tree_leaves(got), jax.tree_util.tree_leaves(want)
        assert len(got_l) == len(want_l)
        for g, w in zip(got_l, want_l, strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10, atol=1e-12)


def test_hessian_matches_jax():
    import jax
    import jax.numpy as jnp

    x = np.array([0.3, -1.2, 0.7])
    got = fgrad.hessian(lambda x: fnp.log(fnp.sum(fnp.exp(x))) * fnp.sum(x**2))(x)
    want = jax.hessian(lambda x: jnp.log(jnp.sum(jnp.exp(x))) * jnp.sum(x**2))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10)
    # Two arguments and an aux output.
    got, aux = fgrad.hessian(lambda a, b: (fnp.sum(a * b) ** 2, a.sum()), (0, 1), has_aux=True)(
        x, x + 1
    )
    want = jax.hessian(lambda a, b: (jnp.sum(a * b) ** 2, a.sum()), (0, 1), has_aux=True)(x, x + 1)
    for g, w in zip(fgrad.tree.tree_leaves(got), jax.tree_util.tree_leaves(want[0]), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(aux), x.sum())


def test_jacobian_with_aux():
    x = np.array([1.0, 2.0])
    for jac in (fgrad.jacfwd, fgrad.jacrev):
        j, aux = jac(lambda x: (x**2, x.sum()), has_aux=True)(x)
        np.testing.assert_allclose(np.asarray(j), np.diag(2 * x))
        np.testing.assert_allclose(np.asarray(aux), 3.0)


# ---------------------------------------------------------------- errors


def test_mismatched_batch_sizes_name_the_arguments():
    with pytest.raises(ValueError) as e:
        fgrad.vmap(lambda a, b: a + b)(np.ones(3), {"k": np.ones((2, 4))})
    msg = str(e.value)
    assert "args[0]: size 3" in msg and "args[1]['k']: size 2" in msg
    with pytest.raises(ValueError, match="axis_size=5"):
        fgrad.vmap(lambda a: a, axis_size=5)(np.ones(3))


def test_bad_in_axes_and_out_axes():
    with pytest.raises(ValueError, match="2 entries .* 1 positional"):
        fgrad.vmap(lambda a: a, in_axes=(0, 0))(np.ones(3))
    with pytest.raises(ValueError, match="out of range"):
        fgrad.vmap(lambda a: a, in_axes=1)(np.ones(3))
    with pytest.raises(ValueError, match="at least one mapped argument"):
        fgrad.vmap(lambda a: a, in_axes=None)(np.ones(3))
    with pytest.raises(ValueError, match="tree prefix"):
        fgrad.vmap(lambda p: p["a"], in_axes=({"b": 0},))({"a": np.ones(3)})
    with pytest.raises(ValueError, match="varies along the mapped axis"):
        fgrad.vmap(lambda a: a, out_axes=None)(np.ones(3))


def test_python_control_flow_on_batched_value_is_a_clear_error():
    with pytest.raises(fgrad.ConcretizationError, match="vmap"):
        fgrad.vmap(lambda a: a if a > 0 else -a)(np.ones(3))
