"""fgrad.optim against optax (the dev extra's oracle), in float64.

Every alias (with its options), the building blocks, the wrappers and a clipped,
scheduled chain run 50 steps on the same small pytree and gradients in both
libraries; the parameter trajectories must agree. State layouts (NamedTuple names,
fields, leaf shapes and dtypes) must match optax's too, and the schedules must
agree at many steps. jax runs with x64 enabled (tests/conftest.py).
"""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax  # the dev extra's oracle: a missing install fails loudly instead of skipping
import pytest

import fgrad.numpy as fnp
from fgrad import optim, tree

STEPS = 50
RNG = np.random.default_rng(1234)
PARAMS = {"dense": {"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=(2,))}, "s": RNG.normal()}
GRADS = [
    {
        "dense": {"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=(2,))},
        "s": 3.0 * RNG.normal(),
    }
    for _ in range(STEPS)
]
MASK = {"dense": {"w": True, "b": False}, "s": True}
LABELS = {"dense": {"w": "adam", "b": "sgd"}, "s": "sgd"}


def _np(t):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), t)


def f64(t):
    return tree.tree_map(lambda x: fnp.asarray(np.asarray(x, np.float64)), t)


def j64(t):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)


def run_fgrad(opt, grads=GRADS, params=PARAMS):
    p = f64(params)
    state = opt.init(p)
    out = []
    for g in grads:
        g = f64(g)
        u, state = opt.update(g, state, p)
        p = optim.apply_updates(p, u)
        out.append(_np(p))
    return out, state


def run_optax(opt, grads=GRADS, params=PARAMS, jit=False):
    """optax's trajectory; ``jit`` for transformations built on lax.cond (slow eagerly)."""
    p = j64(params)
    state = opt.init(p)
    update = jax.jit(opt.update) if jit else opt.update
    out = []
    for g in grads:
        g = j64(g)
        u, state = update(g, state, p)
        p = optax.apply_updates(p, u)
        out.append(_np(p))
    return out, state


def assert_trajectories_close(a, b, rtol=1e-10, atol=1e-12):
    for i, (pa, pb) in enumerate(zip(a, b, strict=True)):
        la, lb = jax.tree.leaves(pa), jax.tree.leaves(pb)
        for x, y in zip(la, lb, strict=True):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"step {i + 1}")


def layout(state):
    """NamedTuple names, fields, containers, leaf shapes and dtypes of a state."""
    if isinstance(state, tuple) and hasattr(type(state), "_fields"):
        return (type(state).__name__, tuple((f, layout(getattr(state, f))) for f in state._fields))
    if isinstance(state, tuple | list):
        return (type(state).__name__, tuple(layout(x) for x in state))
    if isinstance(state, dict):
        kind = "OrderedDict" if isinstance(state, collections.OrderedDict) else "dict"
        return (kind, tuple((k, layout(state[k])) for k in sorted(state, key=str)))
    x = np.asarray(state)
    return ("leaf", x.shape, str(x.dtype))


def both(name, *args, **kwargs):
    return getattr(optim, name)(*args, **kwargs), getattr(optax, name)(*args, **kwargs)


# id -> (fgrad optimizer, optax optimizer)
ALIASES = {
    "sgd": lambda: both("sgd", 0.05),
    "sgd_momentum": lambda: both("sgd", 0.05, momentum=0.9),
    "sgd_nesterov": lambda: both("sgd", 0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda: both("adagrad", 0.1),
    "adagrad_options": lambda: both("adagrad", 0.1, initial_accumulator_value=0.0, eps=1e-3),
    "rmsprop": lambda: both("rmsprop", 0.01),
    "rmsprop_centered": lambda: both("rmsprop", 0.01, centered=True),
    "rmsprop_momentum_nesterov": lambda: both("rmsprop", 0.01, momentum=0.9, nesterov=True),
    "rmsprop_all_options": lambda: both(
        "rmsprop",
        0.01,
        decay=0.8,
        eps=1e-4,
        initial_scale=0.1,
        eps_in_sqrt=False,
        centered=True,
        momentum=0.5,
        bias_correction=True,
    ),
    "adadelta": lambda: both("adadelta", 0.5),
    "adadelta_weight_decay_mask": lambda: both(
        "adadelta", 0.5, rho=0.8, eps=1e-4, weight_decay=0.1, weight_decay_mask=MASK
    ),
    "adamax": lambda: both("adamax", 0.01),
    "adamax_options": lambda: both("adamax", 0.01, b1=0.5, b2=0.9, eps=1e-3),
    "adam": lambda: both("adam", 0.01),
    "adam_options": lambda: both("adam", 0.01, b1=0.5, b2=0.8, eps=1e-3, eps_root=1e-5),
    "adam_nesterov": lambda: both("adam", 0.01, nesterov=True),
    "nadam": lambda: both("nadam", 0.01),
    "adamw": lambda: both("adamw", 0.01),
    "adamw_mask": lambda: both("adamw", 0.01, weight_decay=0.1, mask=MASK),
    "adamw_mask_fn": lambda: both(
        "adamw", 0.01, weight_decay=0.1, mask=lambda p: {**MASK, "s": False}
    ),
    "lamb": lambda: both("lamb", 0.01),
    "lamb_weight_decay_mask": lambda: both("lamb", 0.01, weight_decay=0.1, mask=MASK),
}


@pytest.mark.parametrize("name", list(ALIASES))
def test_alias_matches_optax(name):
    ours, theirs = ALIASES[name]()
    a, state_a = run_fgrad(ours)
    b, state_b = run_optax(theirs)
    assert_trajectories_close(a, b)
    assert layout(state_a) == layout(state_b)


def test_every_alias_is_compared():
    aliases = {"sgd", "adagrad", "rmsprop", "adadelta", "adamax", "adam", "nadam", "adamw", "lamb"}
    covered = {name.split("_")[0] for name in ALIASES}
    assert aliases <= covered


def test_clipped_scheduled_chain_matches_optax():
    """clip_by_global_norm + adamw with a warm-up cosine schedule, as in DESIGN.md.

    optax evaluates schedules of the int32 count in float32 even with x64 on, fgrad
    in float64, hence the float32-level tolerance.
    """
    ours = optim.chain(
        optim.clip_by_global_norm(1.0),
        optim.adamw(optim.warmup_cosine_decay_schedule(0.0, 0.05, 10, 50, 1e-3), weight_decay=1e-2),
    )
    theirs = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 50, 1e-3), weight_decay=1e-2),
    )
    a, state_a = run_fgrad(ours)
    b, state_b = run_optax(theirs, jit=True)
    assert_trajectories_close(a, b, rtol=1e-6, atol=1e-8)
    assert layout(state_a) == layout(state_b)


def test_adadelta_without_learning_rate_descends():
    """Documented deviation: optax.adadelta(None) returns +direction (ascent); fgrad uses -1."""
    a, _ = run_fgrad(optim.adadelta())
    b, _ = run_fgrad(optim.adadelta(1.0))
    assert_trajectories_close(a, b, rtol=0, atol=0)
    grads = [{"dense": {"w": np.ones((3, 2)), "b": np.ones(2)}, "s": 1.0}]
    (p1,), _ = run_fgrad(optim.adadelta(), grads)
    assert np.all(p1["dense"]["w"] < PARAMS["dense"]["w"])


# ---------------------------------------------------------------- building blocks


def _sched(count):
    return 0.1 * 0.9**count


BLOCKS = {
    "scale": lambda: both("scale", -0.1),
    "scale_by_schedule": lambda: both("scale_by_schedule", _sched),
    "scale_by_learning_rate": lambda: both("scale_by_learning_rate", 0.1),
    "scale_by_learning_rate_no_flip": lambda: both("scale_by_learning_rate", -0.1, flip_sign=False),
    "trace": lambda: (
        optim.chain(optim.trace(0.9), optim.scale(-0.01)),
        optax.chain(optax.trace(0.9), optax.scale(-0.01)),
    ),
    "scale_by_adam": lambda: _neg(both("scale_by_adam", 0.8, 0.9, 1e-3)),
    "scale_by_adamax": lambda: _neg(both("scale_by_adamax", 0.8, 0.9, 1e-3)),
    "scale_by_rss": lambda: _neg(both("scale_by_rss", 0.2, 1e-5)),
    "scale_by_rms_bias": lambda: _neg(both("scale_by_rms", 0.8, 1e-3, bias_correction=True)),
    "scale_by_stddev": lambda: _neg(both("scale_by_stddev", 0.8, 1e-3, initial_scale=1.0)),
    "scale_by_adadelta": lambda: _neg(both("scale_by_adadelta", 0.8, 1e-4)),
    "scale_by_trust_ratio": lambda: _neg(both("scale_by_trust_ratio", 0.01, 0.5, 1e-3)),
    "add_decayed_weights_schedule_mask": lambda: _neg(
        both("add_decayed_weights", _sched, mask=MASK)
    ),
    "clip": lambda: _neg(both("clip", 0.5)),
    "clip_by_global_norm": lambda: _neg(both("clip_by_global_norm", 2.0)),
    "apply_every": lambda: _neg(both("apply_every", 3)),
    "identity": lambda: _neg(both("identity")),
    "set_to_zero": lambda: both("set_to_zero"),
}


def _neg(pair):
    """Chain a small negative scale so the blocks also drive a stable trajectory."""
    a, b = pair
    return optim.chain(a, optim.scale(-0.01)), optax.chain(b, optax.scale(-0.01))


@pytest.mark.parametrize("name", list(BLOCKS))
def test_building_block_matches_optax(name):
    ours, theirs = BLOCKS[name]()
    a, state_a = run_fgrad(ours)
    b, state_b = run_optax(theirs, jit="schedule" in name)
    assert_trajectories_close(a, b)
    assert layout(state_a) == layout(state_b)


def test_nadam_block_is_adam_with_nesterov():
    a, _ = run_fgrad(optim.chain(optim.scale_by_nadam(), optim.scale(-0.01)))
    b, _ = run_optax(optax.chain(optax.scale_by_adam(nesterov=True), optax.scale(-0.01)))
    assert_trajectories_close(a, b)


# ---------------------------------------------------------------- wrappers and combinators


def _grads_with_nans():
    grads = [jax.tree.map(np.array, g) for g in GRADS]
    for i in (3, 4, 10, 20, 21, 22, 23):
        grads[i]["dense"]["w"][0, 0] = np.nan if i % 2 else np.inf
    return grads


def test_masked_matches_optax():
    a, sa = run_fgrad(optim.masked(optim.adam(0.01), MASK))
    b, sb = run_optax(optax.masked(optax.adam(0.01), MASK))
    assert_trajectories_close(a, b)
    assert layout(sa) == layout(sb)


def test_masked_prefix_mask_matches_optax():
    mask = {"dense": False, "s": True}
    a, _ = run_fgrad(optim.chain(optim.masked(optim.scale(100.0), mask), optim.sgd(0.01)))
    b, _ = run_optax(optax.chain(optax.masked(optax.scale(100.0), mask), optax.sgd(0.01)))
    assert_trajectories_close(a, b)


def test_multi_transform_matches_optax():
    ours = optim.multi_transform({"adam": optim.adam(0.01), "sgd": optim.sgd(0.1)}, LABELS)
    theirs = optax.multi_transform({"adam": optax.adam(0.01), "sgd": optax.sgd(0.1)}, LABELS)
    a, sa = run_fgrad(ours)
    b, sb = run_optax(theirs)
    assert_trajectories_close(a, b)
    assert layout(sa) == layout(sb)


def test_named_chain_matches_optax():
    ours = optim.named_chain(("clip", optim.clip_by_global_norm(1.0)), ("opt", optim.adam(0.01)))
    theirs = optax.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("opt", optax.adam(0.01)))
    a, sa = run_fgrad(ours)
    b, sb = run_optax(theirs)
    assert_trajectories_close(a, b)
    assert layout(sa) == layout(sb)


def test_apply_if_finite_matches_optax():
    grads = _grads_with_nans()
    a, sa = run_fgrad(optim.apply_if_finite(optim.adam(0.01), 2), grads)
    b, sb = run_optax(optax.apply_if_finite(optax.adam(0.01), 2), grads, jit=True)
    # Four bad steps in a row exceed max_consecutive_errors=2: the last ones apply NaNs.
    for x, y in zip(a[:22], b[:22], strict=True):
        assert_trajectories_close([x], [y])
    assert int(sa.total_notfinite) == int(sb.total_notfinite) == 7
    assert layout(sa) == layout(sb)


def test_multisteps_matches_optax():
    ours = optim.MultiSteps(optim.adam(0.01), every_k_schedule=3)
    theirs = optax.MultiSteps(optax.adam(0.01), every_k_schedule=3)
    a, sa = run_fgrad(ours)
    b, sb = run_optax(theirs, jit=True)
    # Both accumulate in float32 by default.
    assert_trajectories_close(a, b, rtol=1e-6, atol=1e-8)
    assert layout(sa) == layout(sb)


def test_multisteps_skipping_matches_optax():
    grads = _grads_with_nans()
    ours = optim.MultiSteps(
        optim.sgd(0.1, momentum=0.5),
        every_k_schedule=lambda step: 2 + step % 2,
        use_grad_mean=False,
        should_skip_update_fn=optim.skip_not_finite,
        accumulator_dtype=np.float64,
    )
    theirs = optax.MultiSteps(
        optax.sgd(0.1, momentum=0.5),
        every_k_schedule=lambda step: 2 + step % 2,
        use_grad_mean=False,
        should_skip_update_fn=optax.skip_not_finite,
        accumulator_dtype=jnp.float64,
    )
    a, sa = run_fgrad(ours, grads)
    b, sb = run_optax(theirs, grads, jit=True)
    assert_trajectories_close(a, b)
    assert int(sa.gradient_step) == int(sb.gradient_step)


def test_lookahead_matches_optax():
    ours = optim.lookahead(optim.adam(0.01), sync_period=5, slow_step_size=0.5, reset_state=True)
    theirs = optax.lookahead(optax.adam(0.01), sync_period=5, slow_step_size=0.5, reset_state=True)
    pf = optim.LookaheadParams.init_synced(f64(PARAMS))
    po = optax.LookaheadParams.init_synced(j64(PARAMS))
    sf, so = ours.init(pf), theirs.init(po)
    for g in GRADS:
        uf, sf = ours.update(f64(g), sf, pf)
        uo, so = theirs.update(j64(g), so, po)
        pf, po = optim.apply_updates(pf, uf), optax.apply_updates(po, uo)
    assert_trajectories_close([_np(pf)], [_np(po)])


def test_inject_hyperparams_matches_optax():
    """Injected adam with a scheduled rate; b1 changed halfway through in both."""
    sched_f = optim.exponential_decay(0.02, 10, 0.5)
    sched_o = optax.exponential_decay(0.02, 10, 0.5)
    ours = optim.inject_hyperparams(optim.adam)(learning_rate=sched_f, b1=0.8)
    theirs = optax.inject_hyperparams(optax.adam)(learning_rate=sched_o, b1=0.8)
    a, sa = run_fgrad(ours, GRADS[:25])
    b, sb = run_optax(theirs, GRADS[:25])
    assert_trajectories_close(a, b, rtol=1e-6, atol=1e-8)
    # Carry on from the same point with b1 = 0.5.
    sa = optim.set_hyperparam(sa, "b1", 0.5)
    sb.hyperparams["b1"] = jnp.asarray(0.5, jnp.float64)
    pf, po = f64(a[-1]), j64(a[-1])
    for g in GRADS[25:]:
        uf, sa = ours.update(f64(g), sa, pf)
        uo, sb = theirs.update(j64(g), sb, po)
        pf, po = optim.apply_updates(pf, uf), optax.apply_updates(po, uo)
    assert_trajectories_close([_np(pf)], [_np(po)], rtol=1e-6, atol=1e-8)
    assert float(optim.get_hyperparam(sa, "b1")) == 0.5
    np.testing.assert_allclose(
        float(optim.get_hyperparam(sa, "learning_rate")),
        float(sb.hyperparams["learning_rate"]),
        rtol=1e-6,
    )


def test_inject_hyperparams_state_layout_matches_optax():
    ours = optim.inject_hyperparams(optim.sgd)(learning_rate=0.1, momentum=0.9)
    theirs = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    a, sa = run_fgrad(ours)
    b, sb = run_optax(theirs)
    assert_trajectories_close(a, b)
    assert layout(sa) == layout(sb)


# ---------------------------------------------------------------- schedules

COUNTS = list(range(0, 400, 3)) + [1000, 5000]

SCHEDULES = {
    "constant": ("constant_schedule", (0.3,), {}),
    "linear": ("linear_schedule", (1.0, 0.1, 100), {}),
    "linear_begin": ("linear_schedule", (0.1, 1.0, 50), {"transition_begin": 20}),
    "polynomial": ("polynomial_schedule", (1.0, 0.01, 2.0, 150), {"transition_begin": 10}),
    "polynomial_zero_steps": ("polynomial_schedule", (1.0, 0.01, 2.0, 0), {}),
    "exponential": ("exponential_decay", (1.0, 30, 0.5), {}),
    "exponential_staircase": ("exponential_decay", (1.0, 30, 0.5), {"staircase": True}),
    "exponential_begin_end": (
        "exponential_decay",
        (1.0, 20, 0.7),
        {"transition_begin": 15, "end_value": 0.2},
    ),
    "exponential_growth_end": ("exponential_decay", (0.1, 20, 1.5), {"end_value": 2.0}),
    "cosine": ("cosine_decay_schedule", (1.0, 200), {}),
    "cosine_alpha_exponent": ("cosine_decay_schedule", (2.0, 200), {"alpha": 0.1, "exponent": 2.0}),
    "warmup_cosine": ("warmup_cosine_decay_schedule", (0.0, 1.0, 30, 300), {"end_value": 0.05}),
    "warmup_constant": ("warmup_constant_schedule", (0.0, 0.5, 40), {}),
    "warmup_exponential": (
        "warmup_exponential_decay_schedule",
        (0.0, 1.0, 20, 30, 0.5),
        {"staircase": True, "end_value": 0.1},
    ),
    "piecewise_constant": (
        "piecewise_constant_schedule",
        (0.5,),
        {"boundaries_and_scales": {50: 0.1, 150: 0.5, 151: 2.0, 300: 0.0}},
    ),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_optax(name):
    fn, args, kwargs = SCHEDULES[name]
    ours, theirs = getattr(optim, fn)(*args, **kwargs), getattr(optax, fn)(*args, **kwargs)
    for n in COUNTS:
        count = np.int32(n)
        a = float(ours(fnp.asarray(count)))
        b = float(theirs(jnp.asarray(count)))
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=f"count {n}")
    # Python ints work too.
    np.testing.assert_allclose(float(ours(7)), float(theirs(7)), rtol=2e-6, atol=1e-7)


def test_join_schedules_matches_optax():
    parts_f = [optim.constant_schedule(1.0), optim.linear_schedule(1.0, 0.0, 50)]
    parts_o = [optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, 50)]
    parts_f.append(optim.cosine_decay_schedule(0.5, 100))
    parts_o.append(optax.cosine_decay_schedule(0.5, 100))
    ours = optim.join_schedules(parts_f, [20, 100])
    theirs = optax.join_schedules(parts_o, [20, 100])
    for n in COUNTS:
        a, b = float(ours(fnp.asarray(np.int32(n)))), float(theirs(jnp.asarray(np.int32(n))))
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=f"count {n}")


def test_scheduled_optimizer_state_counts_like_optax():
    sched = functools.partial(optim.linear_schedule, 0.1, 0.0, 30)()
    _, state = run_fgrad(optim.sgd(sched))
    _, ostate = run_optax(optax.sgd(optax.linear_schedule(0.1, 0.0, 30)))
    assert int(optim.tree_get(state, "count")) == int(ostate[1].count) == STEPS
