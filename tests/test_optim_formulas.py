"""Every transformation and alias of fgrad.optim against its formula in plain NumPy.

Each reference below is written from the paper's (or optax's documented) update rule,
independently of fgrad: a small stateful class over dicts of NumPy arrays. Hypothesis
draws the initial params and a few steps of gradients; the updates must agree at
every step (float64, so the tolerance is tight), and the params are advanced with
both sides' updates so param-dependent rules see the same trajectory.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fgrad.numpy as fnp
from fgrad import optim, tree

SHAPES = {"w": (2, 3), "b": (3,)}
STEPS = 4


def to_f(t):
    return tree.tree_map(lambda x: fnp.asarray(np.asarray(x, np.float64)), t)


def to_np(t):
    return tree.tree_map(lambda x: np.asarray(x, np.float64), t)


def leafwise(fn, *dicts):
    return {k: fn(*(d[k] for d in dicts)) for k in dicts[0]}


def _arrays(scale=5.0):
    def leaf(shape):
        return hnp.arrays(
            np.float64,
            shape,
            elements=st.floats(-scale, scale, allow_nan=False, allow_subnormal=False),
        )

    return st.fixed_dictionaries({k: leaf(s) for k, s in SHAPES.items()})


params_st = _arrays(3.0)
grads_st = st.lists(_arrays(5.0), min_size=STEPS, max_size=STEPS)


def run_both(opt, ref, params0, grads, rtol=1e-9, atol=1e-12):
    """Steps fgrad and the reference side by side; compares every update."""
    p = to_f(params0)
    state = opt.init(p)
    pr = {k: np.array(v) for k, v in params0.items()}
    ref.init(pr)
    for i, g in enumerate(grads):
        u, state = opt.update(to_f(g), state, p)
        ur = ref.step({k: np.array(v) for k, v in g.items()}, pr)
        u = to_np(u)
        for k in ur:
            np.testing.assert_allclose(u[k], ur[k], rtol=rtol, atol=atol, err_msg=f"{k} step {i}")
        p = optim.apply_updates(p, to_f(u))
        pr = {k: pr[k] + ur[k] for k in pr}
    return state


def zeros_like(d):
    return {k: np.zeros_like(v) for k, v in d.items()}


# ---------------------------------------------------------------- NumPy references


class Stateless:
    """A reference without state: ``u = fn(g, p)`` per leaf."""

    def __init__(self, fn):
        self.fn = fn

    def init(self, params):
        pass

    def step(self, g, p):
        return leafwise(self.fn, g, p)


class RefScheduled:
    """``u = sign * lr(t) * g`` with t = 0, 1, 2, ..."""

    def __init__(self, lr, sign=1.0):
        self.lr, self.sign = lr, sign

    def init(self, params):
        self.t = 0

    def step(self, g, p):
        s = self.sign * float(self.lr(self.t))
        self.t += 1
        return {k: s * v for k, v in g.items()}


class RefTrace:
    """Polyak momentum / Nesterov in optax's form: v <- g + mu v."""

    def __init__(self, mu, nesterov=False, lr=None):
        self.mu, self.nesterov, self.lr = mu, nesterov, lr

    def init(self, params):
        self.v = zeros_like(params)

    def step(self, g, p):
        self.v = {k: g[k] + self.mu * self.v[k] for k in g}
        u = {k: g[k] + self.mu * self.v[k] for k in g} if self.nesterov else dict(self.v)
        return u if self.lr is None else {k: -self.lr * x for k, x in u.items()}


class RefAdam:
    """Kingma & Ba 2015, Algorithm 1, with eps_root inside the root; Dozat 2016 for NAdam."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=False, lr=None):
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root
        self.nesterov, self.lr = nesterov, lr

    def init(self, params):
        self.m, self.v, self.t = zeros_like(params), zeros_like(params), 0

    def direction(self, g):
        b1, b2 = self.b1, self.b2
        self.t += 1
        t = self.t
        out = {}
        for k in g:
            self.m[k] = b1 * self.m[k] + (1 - b1) * g[k]
            self.v[k] = b2 * self.v[k] + (1 - b2) * g[k] ** 2
            if self.nesterov:
                m_hat = b1 * self.m[k] / (1 - b1 ** (t + 1)) + (1 - b1) * g[k] / (1 - b1**t)
            else:
                m_hat = self.m[k] / (1 - b1**t)
            v_hat = self.v[k] / (1 - b2**t)
            out[k] = m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
        return out

    def step(self, g, p):
        d = self.direction(g)
        return d if self.lr is None else {k: -self.lr * x for k, x in d.items()}


class RefAdamW(RefAdam):
    """Loshchilov & Hutter 2019: w <- w - lr (adam_direction + wd w), masked."""

    def __init__(self, lr, wd, mask=None, **kw):
        super().__init__(lr=lr, **kw)
        self.wd, self.mask = wd, mask or {}

    def step(self, g, p):
        d = self.direction(g)
        return {
            k: -self.lr * (d[k] + (self.wd * p[k] if self.mask.get(k, True) else 0.0)) for k in d
        }


class RefLamb(RefAdam):
    """You et al. 2019: r = adam_direction + wd w; w <- w - lr ||w|| / ||r|| r per leaf."""

    def __init__(self, lr, wd, **kw):
        super().__init__(lr=lr, **kw)
        self.wd = wd

    def step(self, g, p):
        d = self.direction(g)
        out = {}
        for k in d:
            r = d[k] + self.wd * p[k]
            pn, rn = np.linalg.norm(p[k]), np.linalg.norm(r)
            ratio = 1.0 if pn == 0 or rn == 0 else pn / rn
            out[k] = -self.lr * ratio * r
        return out


class RefAdamax:
    """Kingma & Ba 2015, Algorithm 2 (with optax's eps added to |g|)."""

    def __init__(self, b1, b2, eps, lr=None):
        self.b1, self.b2, self.eps, self.lr = b1, b2, eps, lr

    def init(self, params):
        self.m, self.u, self.t = zeros_like(params), zeros_like(params), 0

    def step(self, g, p):
        self.t += 1
        out = {}
        for k in g:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g[k]
            self.u[k] = np.maximum(np.abs(g[k]) + self.eps, self.b2 * self.u[k])
            out[k] = self.m[k] / ((1 - self.b1**self.t) * self.u[k])
        return out if self.lr is None else {k: -self.lr * x for k, x in out.items()}


class RefAdagrad:
    """Duchi et al. 2011: r <- r + g^2, u = g / sqrt(r + eps) (0 where r = 0)."""

    def __init__(self, r0, eps, lr=None):
        self.r0, self.eps, self.lr = r0, eps, lr

    def init(self, params):
        self.r = {k: np.full_like(v, self.r0) for k, v in params.items()}

    def step(self, g, p):
        out = {}
        for k in g:
            self.r[k] = self.r[k] + g[k] ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.where(self.r[k] > 0, 1 / np.sqrt(self.r[k] + self.eps), 0.0)
            out[k] = s * g[k]
        return out if self.lr is None else {k: -self.lr * x for k, x in out.items()}


class RefRms:
    """Tieleman & Hinton 2012 (and the centred form of Graves 2013)."""

    def __init__(
        self, decay, eps, v0=0.0, eps_in_sqrt=True, bias=False, centered=False, lr=None, mom=None
    ):
        self.decay, self.eps, self.v0 = decay, eps, v0
        self.eps_in_sqrt, self.bias, self.centered = eps_in_sqrt, bias, centered
        self.lr, self.mom = lr, mom

    def init(self, params):
        self.v = {k: np.full_like(x, self.v0) for k, x in params.items()}
        self.m = zeros_like(params)
        self.buf = zeros_like(params)
        self.t = 0

    def step(self, g, p):
        d = self.decay
        self.t += 1
        out = {}
        for k in g:
            self.v[k] = d * self.v[k] + (1 - d) * g[k] ** 2
            self.m[k] = d * self.m[k] + (1 - d) * g[k]
            v, m = self.v[k], self.m[k]
            if self.bias:
                v, m = v / (1 - d**self.t), m / (1 - d**self.t)
            if self.centered:
                v = v - m**2
            if self.eps_in_sqrt:
                out[k] = g[k] / np.sqrt(v + self.eps)
            else:
                out[k] = g[k] / (np.sqrt(v) + self.eps)
        if self.lr is not None:
            out = {k: -self.lr * x for k, x in out.items()}
        if self.mom is not None:
            self.buf = {k: out[k] + self.mom * self.buf[k] for k in out}
            out = dict(self.buf)
        return out


class RefAdadelta:
    """Zeiler 2012, Algorithm 1."""

    def __init__(self, rho, eps, lr=None, wd=0.0):
        self.rho, self.eps, self.lr, self.wd = rho, eps, lr, wd

    def init(self, params):
        self.eg, self.ex = zeros_like(params), zeros_like(params)

    def step(self, g, p):
        r, e = self.rho, self.eps
        out = {}
        for k in g:
            gk = g[k] + self.wd * p[k]
            self.eg[k] = r * self.eg[k] + (1 - r) * gk**2
            dx = np.sqrt(self.ex[k] + e) / np.sqrt(self.eg[k] + e) * gk
            self.ex[k] = r * self.ex[k] + (1 - r) * dx**2
            out[k] = dx
        return out if self.lr is None else {k: -self.lr * x for k, x in out.items()}


class RefTrustRatio(Stateless):
    def __init__(self, min_norm, coeff, eps):
        def fn(u, p):
            pn = max(np.linalg.norm(p), min_norm)
            un = max(np.linalg.norm(u), min_norm)
            ratio = 1.0 if pn == 0 or un == 0 else coeff * pn / (un + eps)
            return u * ratio

        super().__init__(fn)


class RefClipGlobal:
    def __init__(self, max_norm):
        self.max_norm = max_norm

    def init(self, params):
        pass

    def step(self, g, p):
        norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
        factor = 1.0 if norm <= self.max_norm else self.max_norm / norm
        return {k: x * factor for k, x in g.items()}


class RefApplyEvery:
    def __init__(self, k):
        self.k = k

    def init(self, params):
        self.acc, self.n = zeros_like(params), 0

    def step(self, g, p):
        self.acc = {k: self.acc[k] + g[k] for k in g}
        self.n += 1
        if self.n == self.k:
            out, self.acc, self.n = self.acc, zeros_like(g), 0
            return out
        return zeros_like(g)


class RefDecay:
    """u = g + c(t) * term(p) on the masked leaves."""

    def __init__(self, coeff, term, mask=None):
        self.coeff, self.term, self.mask = coeff, term, mask or {}

    def init(self, params):
        self.t = 0

    def step(self, g, p):
        c = self.coeff(self.t) if callable(self.coeff) else self.coeff
        self.t += 1
        return {k: g[k] + (c * self.term(p[k]) if self.mask.get(k, True) else 0.0) for k in g}


class RefMasked:
    def __init__(self, inner, mask):
        self.inner, self.mask = inner, mask

    def init(self, params):
        self.inner.init({k: v for k, v in params.items() if self.mask[k]})

    def step(self, g, p):
        sel = [k for k in g if self.mask[k]]
        u = self.inner.step({k: g[k] for k in sel}, {k: p[k] for k in sel})
        return {k: u[k] if self.mask[k] else g[k] for k in g}


def _sched(n):
    return 0.2 / (1.0 + n)


# id -> (fgrad transformation, NumPy reference)
CASES = {
    "scale": (lambda: optim.scale(0.3), lambda: Stateless(lambda g, p: 0.3 * g)),
    "identity": (optim.identity, lambda: Stateless(lambda g, p: g)),
    "set_to_zero": (optim.set_to_zero, lambda: Stateless(lambda g, p: 0 * g)),
    "scale_by_learning_rate": (
        lambda: optim.scale_by_learning_rate(0.1),
        lambda: Stateless(lambda g, p: -0.1 * g),
    ),
    "scale_by_learning_rate_schedule": (
        lambda: optim.scale_by_learning_rate(_sched),
        lambda: RefScheduled(_sched, -1.0),
    ),
    "scale_by_schedule": (
        lambda: optim.scale_by_schedule(lambda n: 0.5**n),
        lambda: RefScheduled(lambda n: 0.5**n),
    ),
    "trace": (lambda: optim.trace(0.7), lambda: RefTrace(0.7)),
    "trace_nesterov": (lambda: optim.trace(0.7, nesterov=True), lambda: RefTrace(0.7, True)),
    "scale_by_adam": (
        lambda: optim.scale_by_adam(0.8, 0.9, 1e-3, 1e-4),
        lambda: RefAdam(0.8, 0.9, 1e-3, 1e-4),
    ),
    "scale_by_adam_nesterov": (
        lambda: optim.scale_by_adam(0.8, 0.9, 1e-3, nesterov=True),
        lambda: RefAdam(0.8, 0.9, 1e-3, nesterov=True),
    ),
    "scale_by_nadam": (lambda: optim.scale_by_nadam(), lambda: RefAdam(nesterov=True)),
    "scale_by_adamax": (
        lambda: optim.scale_by_adamax(0.8, 0.95, 1e-3),
        lambda: RefAdamax(0.8, 0.95, 1e-3),
    ),
    "scale_by_rss": (lambda: optim.scale_by_rss(0.2, 1e-5), lambda: RefAdagrad(0.2, 1e-5)),
    "scale_by_rss_zero_start": (
        lambda: optim.scale_by_rss(0.0, 0.0),
        lambda: RefAdagrad(0.0, 0.0),
    ),
    "scale_by_rms": (
        lambda: optim.scale_by_rms(0.8, 1e-3, initial_scale=0.5),
        lambda: RefRms(0.8, 1e-3, v0=0.5),
    ),
    "scale_by_rms_eps_outside_bias": (
        lambda: optim.scale_by_rms(0.8, 1e-3, eps_in_sqrt=False, bias_correction=True),
        lambda: RefRms(0.8, 1e-3, eps_in_sqrt=False, bias=True),
    ),
    "scale_by_stddev": (
        lambda: optim.scale_by_stddev(0.8, 1e-3, initial_scale=1.0),
        lambda: RefRms(0.8, 1e-3, v0=1.0, centered=True),
    ),
    "scale_by_stddev_bias": (
        lambda: optim.scale_by_stddev(0.8, 1e-2, bias_correction=True),
        lambda: RefRms(0.8, 1e-2, bias=True, centered=True),
    ),
    "scale_by_adadelta": (
        lambda: optim.scale_by_adadelta(0.8, 1e-4),
        lambda: RefAdadelta(0.8, 1e-4),
    ),
    "scale_by_trust_ratio": (
        lambda: optim.scale_by_trust_ratio(0.01, 0.5, 1e-3),
        lambda: RefTrustRatio(0.01, 0.5, 1e-3),
    ),
    "add_decayed_weights": (
        lambda: optim.add_decayed_weights(0.1),
        lambda: RefDecay(0.1, lambda p: p),
    ),
    "add_decayed_weights_mask_schedule": (
        lambda: optim.add_decayed_weights(_sched, mask={"w": True, "b": False}),
        lambda: RefDecay(_sched, lambda p: p, {"b": False}),
    ),
    "add_l1_penalty": (lambda: optim.add_l1_penalty(0.05), lambda: RefDecay(0.05, np.sign)),
    "add_l1_penalty_mask": (
        lambda: optim.add_l1_penalty(0.05, mask=lambda t: {"w": False, "b": True}),
        lambda: RefDecay(0.05, np.sign, {"w": False}),
    ),
    "clip": (lambda: optim.clip(0.5), lambda: Stateless(lambda g, p: np.clip(g, -0.5, 0.5))),
    "clip_by_global_norm": (lambda: optim.clip_by_global_norm(4.0), lambda: RefClipGlobal(4.0)),
    "apply_every": (lambda: optim.apply_every(3), lambda: RefApplyEvery(3)),
    "masked": (
        lambda: optim.masked(optim.trace(0.5), {"w": True, "b": False}),
        lambda: RefMasked(RefTrace(0.5), {"w": True, "b": False}),
    ),
    "multi_transform": (
        lambda: optim.multi_transform(
            {"m": optim.trace(0.5), "s": optim.scale(2.0)}, {"w": "m", "b": "s"}
        ),
        lambda: _RefMulti(),
    ),
    "inject_hyperparams": (
        lambda: optim.inject_hyperparams(optim.scale_by_adam)(b1=0.8, b2=0.9),
        lambda: RefAdam(0.8, 0.9),
    ),
    "named_chain": (
        lambda: optim.named_chain(("clip", optim.clip(1.0)), ("lr", optim.scale(-0.1))),
        lambda: Stateless(lambda g, p: -0.1 * np.clip(g, -1.0, 1.0)),
    ),
}


class _RefMulti:
    def init(self, params):
        self.trace = RefTrace(0.5)
        self.trace.init({"w": params["w"]})

    def step(self, g, p):
        return {"w": self.trace.step({"w": g["w"]}, p)["w"], "b": 2.0 * g["b"]}


ALIASES = {
    "sgd": (lambda: optim.sgd(0.1), lambda: Stateless(lambda g, p: -0.1 * g)),
    "sgd_momentum": (lambda: optim.sgd(0.1, momentum=0.8), lambda: RefTrace(0.8, lr=0.1)),
    "sgd_nesterov": (
        lambda: optim.sgd(0.1, momentum=0.8, nesterov=True),
        lambda: RefTrace(0.8, True, lr=0.1),
    ),
    "adagrad": (lambda: optim.adagrad(0.3), lambda: RefAdagrad(0.1, 1e-7, lr=0.3)),
    "rmsprop": (lambda: optim.rmsprop(0.01), lambda: RefRms(0.9, 1e-8, lr=0.01)),
    "rmsprop_centered_momentum": (
        lambda: optim.rmsprop(0.01, decay=0.8, eps=1e-3, centered=True, momentum=0.5),
        lambda: RefRms(0.8, 1e-3, centered=True, lr=0.01, mom=0.5),
    ),
    "rmsprop_bias_eps_outside": (
        lambda: optim.rmsprop(0.01, bias_correction=True, eps_in_sqrt=False, initial_scale=0.1),
        lambda: RefRms(0.9, 1e-8, v0=0.1, bias=True, eps_in_sqrt=False, lr=0.01),
    ),
    "adadelta": (lambda: optim.adadelta(0.5), lambda: RefAdadelta(0.9, 1e-6, lr=0.5)),
    "adadelta_default_rate_decay": (
        lambda: optim.adadelta(weight_decay=0.1),
        lambda: RefAdadelta(0.9, 1e-6, lr=1.0, wd=0.1),
    ),
    "adamax": (lambda: optim.adamax(0.01), lambda: RefAdamax(0.9, 0.999, 1e-8, lr=0.01)),
    "adam": (lambda: optim.adam(0.01), lambda: RefAdam(lr=0.01)),
    "adam_eps_root": (
        lambda: optim.adam(0.01, b1=0.5, b2=0.7, eps=1e-4, eps_root=1e-6),
        lambda: RefAdam(0.5, 0.7, 1e-4, 1e-6, lr=0.01),
    ),
    "nadam": (lambda: optim.nadam(0.01), lambda: RefAdam(nesterov=True, lr=0.01)),
    "adamw": (lambda: optim.adamw(0.01), lambda: RefAdamW(0.01, 1e-4)),
    "adamw_mask": (
        lambda: optim.adamw(0.01, weight_decay=0.1, mask={"w": True, "b": False}),
        lambda: RefAdamW(0.01, 0.1, mask={"b": False}),
    ),
    "lamb": (lambda: optim.lamb(0.01, weight_decay=0.1), lambda: RefLamb(0.01, 0.1, eps=1e-6)),
}


@pytest.mark.parametrize("name", list(CASES))
@given(params=params_st, grads=grads_st)
def test_transform_matches_numpy_formula(name, params, grads):
    make, make_ref = CASES[name]
    run_both(make(), make_ref(), params, grads)


@pytest.mark.parametrize("name", list(ALIASES))
@given(params=params_st, grads=grads_st)
def test_alias_matches_numpy_formula(name, params, grads):
    make, make_ref = ALIASES[name]
    run_both(make(), make_ref(), params, grads)


@given(params=params_st, grads=grads_st, scale=st.sampled_from([1e-3, 1.0]))
def test_clip_by_global_norm_both_branches(params, grads, scale):
    grads = [{k: scale * v for k, v in g.items()} for g in grads]
    run_both(optim.clip_by_global_norm(1.0), RefClipGlobal(1.0), params, grads)


@given(
    params=params_st, grads=grads_st, bad=st.lists(st.booleans(), min_size=STEPS, max_size=STEPS)
)
def test_apply_if_finite_matches_reference(params, grads, bad):
    """Steps with a NaN are skipped (zero update, momentum untouched) and counted."""
    grads = [
        {
            "w": np.where(np.arange(6).reshape(2, 3) == 0, np.nan, g["w"]) if b else g["w"],
            "b": g["b"],
        }
        for g, b in zip(grads, bad, strict=True)
    ]

    class Ref:
        def init(self, params):
            self.inner = RefTrace(0.5, lr=0.1)
            self.inner.init(params)

        def step(self, g, p):
            if all(np.all(np.isfinite(x)) for x in g.values()):
                return self.inner.step(g, p)
            return zeros_like(g)

    opt = optim.apply_if_finite(optim.sgd(0.1, momentum=0.5), max_consecutive_errors=10)
    state = run_both(opt, Ref(), params, grads)
    assert int(state.total_notfinite) == sum(bad)
    assert bool(state.last_finite) == (not bad[-1])


@given(params=params_st, grads=st.lists(_arrays(5.0), min_size=6, max_size=6))
def test_multisteps_matches_reference(params, grads):
    """Mean of 3 mini-batch gradients, then one momentum step; zeros in between."""

    class Ref:
        def init(self, params):
            self.inner = RefTrace(0.5, lr=0.1)
            self.inner.init(params)
            self.acc, self.n = [], 0

        def step(self, g, p):
            self.acc.append(g)
            if len(self.acc) < 3:
                return zeros_like(g)
            mean = {k: sum(a[k] for a in self.acc) / 3 for k in g}
            self.acc = []
            return self.inner.step(mean, p)

    opt = optim.MultiSteps(
        optim.sgd(0.1, momentum=0.5), every_k_schedule=3, accumulator_dtype=np.float64
    )
    state = run_both(opt, Ref(), params, grads)
    assert int(state.gradient_step) == 2


@given(params=params_st, grads=st.lists(_arrays(5.0), min_size=6, max_size=6))
def test_lookahead_matches_reference(params, grads):
    """Zhang et al. 2019: k fast SGD steps, then slow <- slow + alpha (fast - slow)."""
    k, alpha, lr = 3, 0.5, 0.1
    opt = optim.lookahead(optim.sgd(lr), sync_period=k, slow_step_size=alpha)
    p = optim.LookaheadParams.init_synced(to_f(params))
    state = opt.init(p)
    fast = {n: np.array(v) for n, v in params.items()}
    slow = {n: np.array(v) for n, v in params.items()}
    for i, g in enumerate(grads):
        u, state = opt.update(to_f(g), state, p)
        p = optim.apply_updates(p, u)
        fast = {n: fast[n] - lr * g[n] for n in g}
        if (i + 1) % k == 0:
            slow = {n: slow[n] + alpha * (fast[n] - slow[n]) for n in g}
            fast = dict(slow)
        for n in g:
            np.testing.assert_allclose(np.asarray(p.fast[n]), fast[n], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(np.asarray(p.slow[n]), slow[n], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("name", list(ALIASES))
def test_float32_params_keep_dtypes(name):
    """Updates, new params and every state leaf keep their dtype step after step."""
    make, _ = ALIASES[name]
    opt = make()
    rng = np.random.default_rng(0)
    p = {k: fnp.asarray(rng.normal(size=s).astype(np.float32)) for k, s in SHAPES.items()}
    state = opt.init(p)
    dtypes = [x.dtype for x in tree.tree_leaves(state)]
    for _ in range(3):
        g = {k: fnp.asarray(rng.normal(size=s).astype(np.float32)) for k, s in SHAPES.items()}
        u, state = opt.update(g, state, p)
        p = optim.apply_updates(p, u)
        assert all(x.dtype == np.float32 for x in tree.tree_leaves(p))
        assert [x.dtype for x in tree.tree_leaves(state)] == dtypes
