"""Optimizer states as pytrees, name-based lookups, error messages, and jit.

States must flatten and unflatten losslessly (checkpointing), be reachable by name
(``named_chain``, ``tree_get``, ``get_hyperparam``/``set_hyperparam``), give clear
errors, and trace: a whole training step carrying the state runs under ``jit``,
compiling once.
"""

import re

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import optim, tree


def make_params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "dense": {
            "w": fnp.asarray(rng.normal(size=(3, 2)).astype(dtype)),
            "b": fnp.zeros(2, dtype),
        },
        "scale": fnp.asarray(np.asarray(1.5, dtype)),
    }


def make_grads(params, seed):
    rng = np.random.default_rng(seed)
    return tree.tree_map(lambda p: fnp.asarray(rng.normal(size=p.shape).astype(p.dtype)), params)


MASK = {"dense": {"w": True, "b": False}, "scale": True}

OPTIMIZERS = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd_nesterov": lambda: optim.sgd(0.1, momentum=0.9, nesterov=True),
    "adagrad": lambda: optim.adagrad(0.1),
    "rmsprop_centered": lambda: optim.rmsprop(0.01, centered=True, momentum=0.9),
    "rmsprop_bias": lambda: optim.rmsprop(0.01, bias_correction=True),
    "adadelta": lambda: optim.adadelta(1.0, weight_decay=0.1, weight_decay_mask=MASK),
    "adamax": lambda: optim.adamax(0.01),
    "adam": lambda: optim.adam(optim.warmup_cosine_decay_schedule(0.0, 0.1, 3, 20)),
    "nadam": lambda: optim.nadam(0.01),
    "adamw": lambda: optim.adamw(0.01, mask=MASK),
    "lamb": lambda: optim.lamb(0.01, weight_decay=0.1),
    "clipped_chain": lambda: optim.chain(
        optim.clip_by_global_norm(1.0),
        optim.clip(0.5),
        optim.add_l1_penalty(1e-3),
        optim.adam(optim.exponential_decay(0.1, 5, 0.5)),
    ),
    "named_chain": lambda: optim.named_chain(
        ("clip", optim.clip_by_global_norm(1.0)), ("opt", optim.sgd(0.1, momentum=0.9))
    ),
    "masked": lambda: optim.masked(optim.adam(0.1), MASK),
    "multi_transform": lambda: optim.multi_transform(
        {"a": optim.adam(0.01), "s": optim.sgd(0.1), "z": optim.set_to_zero()},
        {"dense": {"w": "a", "b": "z"}, "scale": "s"},
    ),
    "inject_hyperparams": lambda: optim.inject_hyperparams(optim.adamw)(
        learning_rate=optim.linear_schedule(0.1, 0.01, 10), weight_decay=1e-3
    ),
    "apply_if_finite": lambda: optim.apply_if_finite(optim.adam(0.01), 3),
    "apply_every": lambda: optim.chain(optim.apply_every(2), optim.sgd(0.1)),
    "multisteps": lambda: optim.MultiSteps(optim.adam(0.01), 2).gradient_transformation(),
    "trust_ratio": lambda: optim.chain(optim.scale_by_trust_ratio(), optim.sgd(0.1)),
}


def run(opt, params, steps, state=None, start=0):
    state = opt.init(params) if state is None else state
    for i in range(start, start + steps):
        u, state = opt.update(make_grads(params, i), state, params)
        params = optim.apply_updates(params, u)
    return params, state


def assert_trees_equal(a, b):
    assert tree.tree_structure(a) == tree.tree_structure(b)
    for x, y in zip(tree.tree_leaves(a), tree.tree_leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------- states are pytrees


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_flattens_and_unflattens_losslessly(name):
    """A checkpoint round trip (leaves to NumPy and back) resumes the same trajectory."""
    opt = OPTIMIZERS[name]()
    params, state = run(opt, make_params(), 3)
    leaves, treedef = tree.tree_flatten(state)
    assert all(hasattr(x, "dtype") for x in leaves), "every state leaf is an array"
    restored = tree.tree_unflatten(treedef, [fnp.asarray(np.array(x)) for x in leaves])
    assert_trees_equal(restored, state)
    assert type(restored) is type(state)
    p1, s1 = run(opt, params, 3, state, start=3)
    p2, s2 = run(opt, params, 3, restored, start=3)
    assert_trees_equal(p1, p2)
    assert_trees_equal(s1, s2)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_update_traces_with_abstract_values(name):
    """The whole step traces with make_jaxpr (abstract tracers: no Python branching on values)."""
    opt = OPTIMIZERS[name]()
    params = make_params(np.float32)
    state = opt.init(params)

    def step(params, state, grads):
        u, state = opt.update(grads, state, params)
        return optim.apply_updates(params, u), state

    jaxpr = fgrad.make_jaxpr(step)(params, state, make_grads(params, 0))
    assert "f64" not in str(jaxpr).split("let", 1)[0]  # float32 in, no float64 inputs


@pytest.mark.parametrize("name", ["adam", "clipped_chain", "inject_hyperparams", "multisteps"])
def test_jitted_training_step_compiles_once_and_matches_eager(name):
    opt = OPTIMIZERS[name]()
    rng = np.random.default_rng(0)
    x = fnp.asarray(rng.normal(size=(8, 3)).astype(np.float32))
    y = fnp.asarray(rng.normal(size=(8, 2)).astype(np.float32))

    def loss(p):
        return fnp.mean((p["scale"] * (x @ p["dense"]["w"]) + p["dense"]["b"] - y) ** 2)

    def step(params, state):
        value, grads = fgrad.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state, value

    backend = None if name == "adam" else "reference"  # one test through the compiler
    jitted = fgrad.jit(step, backend=backend)
    params = make_params(np.float32)
    pj, sj = params, opt.init(params)
    pe, se = params, opt.init(params)
    for _ in range(6):
        pj, sj, lj = jitted(pj, sj)
        pe, se, le = step(pe, se)
    assert jitted.trace_count == 1
    np.testing.assert_allclose(float(lj), float(le), rtol=1e-5)
    for a, b in zip(tree.tree_leaves(pj), tree.tree_leaves(pe), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert [a.dtype for a in tree.tree_leaves(sj)] == [b.dtype for b in tree.tree_leaves(se)]


def test_set_hyperparam_between_jitted_steps_does_not_retrace():
    opt = optim.inject_hyperparams(optim.sgd)(learning_rate=0.1)
    params = {"w": fnp.ones(3)}

    def step(params, state):
        u, state = opt.update({"w": fnp.ones(3)}, state, params)
        return optim.apply_updates(params, u), state

    jitted = fgrad.jit(step, backend="reference")
    state = opt.init(params)
    params, state = jitted(params, state)
    state = optim.set_hyperparam(state, "learning_rate", 0.5)
    params, state = jitted(params, state)
    assert jitted.trace_count == 1
    np.testing.assert_allclose(np.asarray(params["w"]), 1 - 0.1 - 0.5, rtol=1e-6)


# ---------------------------------------------------------------- name-based lookups


def test_named_chain_state_is_keyed_by_name():
    opt = optim.named_chain(("clip", optim.clip_by_global_norm(1.0)), ("adam", optim.adam(0.1)))
    params = make_params()
    _, state = run(opt, params, 2)
    assert list(state) == ["clip", "adam"]
    assert int(optim.tree_get(state["adam"], "count")) == 2
    assert tree.tree_structure(optim.tree_get(state, "mu")) == tree.tree_structure(params)
    with pytest.raises(ValueError, match=r"unique.*'a'"):
        optim.named_chain(("a", optim.sgd(0.1)), ("a", optim.sgd(0.1)))


def test_tree_get_finds_a_field_anywhere():
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.masked(optim.adam(0.1), MASK))
    params = make_params()
    _, state = run(opt, params, 2)
    mu = optim.tree_get(state, "mu")
    assert mu is state[1].inner_state[0].mu
    assert optim.tree_get(state, "ScaleByAdamState") is state[1].inner_state[0]
    assert optim.tree_get(state, "momentum", default="none") == "none"


def test_tree_get_missing_is_an_error_listing_names():
    state = optim.adam(0.1).init(make_params())
    with pytest.raises(KeyError, match=r"no entry named 'trace'.*'count'.*'mu'.*'nu'"):
        optim.tree_get(state, "trace")


def test_tree_get_ambiguous_is_an_error_listing_paths():
    opt = optim.chain(optim.adam(0.1), optim.scale_by_schedule(lambda n: 1.0))
    state = opt.init(make_params())
    with pytest.raises(KeyError, match=re.escape("found 2 times: at [0][0].count, [1].count")):
        optim.tree_get(state, "count")
    only_adam = optim.tree_get(state, "count", filtering=lambda path, v: len(path) == 3)
    assert only_adam is state[0][0].count
    paths = [tree.keystr(p) for p, _ in optim.tree_get_all_with_path(state, "count")]
    assert paths == ["[0][0].count", "[1].count"]


def test_tree_set_replaces_by_name_and_leaves_the_original():
    state = optim.sgd(0.1, momentum=0.9).init(make_params())
    zeros = optim.tree_get(state, "trace")
    ones = tree.tree_map(fnp.ones_like, zeros)
    new = optim.tree_set(state, trace=ones)
    assert optim.tree_get(new, "trace") is ones
    assert optim.tree_get(state, "trace") is zeros
    with pytest.raises(KeyError, match="no entry named"):
        optim.tree_set(state, nu=1.0)


def test_get_and_set_hyperparam_inside_a_chain():
    opt = optim.named_chain(
        ("clip", optim.clip_by_global_norm(1.0)),
        ("opt", optim.inject_hyperparams(optim.adam)(learning_rate=1e-3, b1=0.9)),
    )
    params = make_params(np.float32)
    state = opt.init(params)
    lr = optim.get_hyperparam(state, "learning_rate")
    assert lr.dtype == np.float32 and float(lr) == pytest.approx(1e-3)
    new = optim.set_hyperparam(state, "learning_rate", 0.5)
    assert float(optim.get_hyperparam(new, "learning_rate")) == 0.5
    assert optim.get_hyperparam(new, "learning_rate").dtype == np.float32
    assert float(optim.get_hyperparam(state, "learning_rate")) == pytest.approx(1e-3)
    # The new value is used: the first Adam step is about -lr * sign(g).
    g = make_grads(params, 0)
    u, _ = opt.update(g, new, params)
    np.testing.assert_allclose(
        np.asarray(u["dense"]["w"]), -0.5 * np.sign(np.asarray(g["dense"]["w"])), rtol=1e-4
    )


def test_hyperparam_errors():
    params = make_params()
    plain = optim.adam(0.1).init(params)
    with pytest.raises(KeyError, match="no injected hyperparameters.*inject_hyperparams"):
        optim.get_hyperparam(plain, "learning_rate")
    sched = optim.inject_hyperparams(optim.sgd)(learning_rate=optim.linear_schedule(1.0, 0.0, 5))
    state = sched.init(params)
    with pytest.raises(KeyError, match=r"no hyperparameter 'lr'; injected ones: \['learning_rate'"):
        optim.get_hyperparam(state, "lr")
    with pytest.raises(ValueError, match="follows a schedule"):
        optim.set_hyperparam(state, "learning_rate", 0.1)
    two = optim.chain(
        optim.inject_hyperparams(optim.sgd)(0.1), optim.inject_hyperparams(optim.sgd)(0.2)
    ).init(params)
    with pytest.raises(KeyError, match=r"ambiguous, injected at \[0\], \[1\]"):
        optim.get_hyperparam(two, "learning_rate")
    assert float(optim.get_hyperparam(two[1], "learning_rate")) == pytest.approx(0.2)
    const = optim.inject_hyperparams(optim.sgd)(0.1).init(params)
    with pytest.raises(ValueError, match="shape"):
        optim.set_hyperparam(const, "learning_rate", np.ones(2))
    with pytest.raises(ValueError, match="static_args"):
        optim.inject_hyperparams(optim.sgd, static_args=("nope",))


def test_scheduled_hyperparam_is_reported_per_step():
    opt = optim.inject_hyperparams(optim.sgd)(learning_rate=optim.linear_schedule(1.0, 0.0, 4))
    params = {"w": fnp.zeros(2)}
    state = opt.init(params)
    seen = [float(optim.get_hyperparam(state, "learning_rate"))]
    for _ in range(5):
        _, state = opt.update({"w": fnp.ones(2)}, state, params)
        seen.append(float(optim.get_hyperparam(state, "learning_rate")))
    assert seen == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


# ---------------------------------------------------------------- masked


def test_masked_mismatch_names_the_first_differing_key_path():
    params = make_params()
    bad = {"dense": {"w": True}, "scale": True}
    with pytest.raises(ValueError) as info:
        optim.masked(optim.sgd(0.1), bad).init(params)
    msg = str(info.value)
    assert msg.startswith("masked: the mask does not match the params")
    assert "differ at ['dense']" in msg and "keys missing from the mask ['b']" in msg
    with pytest.raises(ValueError, match=r"\['scale'\]"):
        optim.masked(optim.sgd(0.1), {"dense": True, "scale": {"x": True}}).init(params)
    opt = optim.masked(optim.sgd(0.1), MASK)
    state = opt.init(params)
    other = {"dense": {"w": params["dense"]["w"]}, "scale": params["scale"]}
    with pytest.raises(ValueError, match=r"updates.*\['dense'\]"):
        opt.update(other, state, other)


def test_masked_leaf_must_be_a_bool():
    params = make_params()
    with pytest.raises(TypeError, match=r"mask leaf at \['scale'\] must be a Python bool"):
        optim.masked(optim.sgd(0.1), {"dense": True, "scale": np.ones(2)}).init(params)


def test_masked_state_only_holds_selected_leaves():
    params = make_params()
    state = optim.masked(optim.adam(0.1), MASK).init(params)
    mu = optim.tree_get(state, "mu")
    assert isinstance(mu["dense"]["b"], optim.MaskedNode)
    assert len(tree.tree_leaves(mu)) == 2


def test_multi_transform_unknown_label():
    with pytest.raises(ValueError, match="labels.*'c'.*no transformation"):
        optim.multi_transform({"a": optim.sgd(0.1)}, {"w": "a", "b": "c"}).init(
            {"w": fnp.ones(1), "b": fnp.ones(1)}
        )


# ---------------------------------------------------------------- safety


def test_apply_if_finite_skips_and_counts():
    opt = optim.apply_if_finite(optim.sgd(0.1, momentum=0.5), max_consecutive_errors=2)
    params = {"w": fnp.ones(2)}
    state = opt.init(params)
    good, bad = {"w": fnp.ones(2)}, {"w": fnp.asarray([np.nan, 1.0])}
    seq = [good, bad, bad, good, bad, bad, bad]
    counts, totals, ups = [], [], []
    for g in seq:
        u, state = opt.update(g, state, params)
        counts.append(int(state.notfinite_count))
        totals.append(int(state.total_notfinite))
        ups.append(np.asarray(u["w"]))
    assert counts == [0, 1, 2, 0, 1, 2, 3]
    assert totals == [0, 1, 2, 2, 3, 4, 5]
    assert all(np.all(ups[i] == 0) for i in (1, 2, 4, 5))
    # The momentum was not polluted by the skipped steps ...
    np.testing.assert_allclose(ups[3], -0.1 * 1.5)
    # ... and the third bad step in a row (> max_consecutive_errors) goes through.
    assert np.isnan(ups[6][0])


def test_clip_by_global_norm_is_safe_at_zero():
    opt = optim.clip_by_global_norm(1.0)
    zeros = {"a": fnp.zeros(3), "b": fnp.zeros((2, 2))}
    u, _ = opt.update(zeros, opt.init(zeros))
    assert all(np.all(np.asarray(x) == 0) for x in tree.tree_leaves(u))

    def through_clip(g):  # differentiate through the clipping at g = 0
        out, _ = opt.update({"g": g}, optim.EmptyState())
        return fnp.sum(out["g"] * fnp.arange(3.0))

    d = fgrad.grad(through_clip)(fnp.zeros(3))
    np.testing.assert_array_equal(np.asarray(d), [0.0, 1.0, 2.0])
    d = fgrad.grad(through_clip)(fnp.asarray([3.0, 4.0, 0.0]))  # clipped branch
    assert np.all(np.isfinite(np.asarray(d)))


def test_trust_ratio_is_safe_at_zero():
    opt = optim.scale_by_trust_ratio()
    p = {"w": fnp.zeros(2), "v": fnp.ones(2)}
    g = {"w": fnp.ones(2), "v": fnp.zeros(2)}
    with np.errstate(all="raise"):
        u, _ = opt.update(g, opt.init(p), p)
    np.testing.assert_array_equal(np.asarray(u["w"]), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(u["v"]), [0.0, 0.0])


def test_transformations_needing_params_say_so():
    g = {"w": fnp.ones(2)}
    for opt in (optim.add_decayed_weights(0.1), optim.scale_by_trust_ratio()):
        with pytest.raises(ValueError, match="needs the current parameters"):
            opt.update(g, opt.init(g))
    opt = optim.add_decayed_weights(0.0)  # nothing to add: params not needed
    assert opt.update(g, opt.init(g))[0] is g


def test_chain_with_a_foreign_state_is_an_error():
    opt = optim.chain(optim.sgd(0.1), optim.clip(1.0))
    with pytest.raises(ValueError, match="expected a tuple of 2 states"):
        opt.update({"w": fnp.ones(1)}, (optim.EmptyState(),))


def test_lookahead_argument_errors():
    with pytest.raises(ValueError, match="sync_period"):
        optim.lookahead(optim.sgd(0.1), 0, 0.5)
    opt = optim.lookahead(optim.sgd(0.1), 2, 0.5)
    p = {"w": fnp.ones(1)}
    with pytest.raises(ValueError, match="LookaheadParams"):
        opt.update(p, opt.init(p), p)


def test_apply_updates_keeps_each_params_dtype():
    params = {"a": fnp.ones(2, np.float32), "b": fnp.ones(2, np.float64)}
    updates = {"a": fnp.asarray(np.full(2, 0.5)), "b": fnp.asarray(np.full(2, 0.5, np.float32))}
    new = optim.apply_updates(params, updates)
    assert new["a"].dtype == np.float32 and new["b"].dtype == np.float64
    np.testing.assert_array_equal(np.asarray(new["a"]), [1.5, 1.5])


def test_safe_increment_saturates():
    top = fnp.asarray(np.int32(np.iinfo(np.int32).max))
    assert int(optim.safe_increment(top)) == np.iinfo(np.int32).max
    assert optim.safe_increment(fnp.asarray(np.int32(4))).dtype == np.int32


def test_multisteps_has_updated_and_apply_every_cycle():
    ms = optim.MultiSteps(optim.sgd(1.0), every_k_schedule=3)
    params = {"w": fnp.zeros(1)}
    state = ms.init(params)
    flags = []
    for i in range(6):
        _, state = ms.update({"w": fnp.asarray([float(i)])}, state, params)
        flags.append(bool(ms.has_updated(state)))
    assert flags == [False, False, True, False, False, True]
    assert ms.inner_opt is not None
