"""Layers: output shapes, plain-NumPy references, finite-difference gradients (float64),
train/eval behaviour, and errors that name the layer."""

import math

import jax
import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import nn, random
from fgrad import tree as tree_util

KEY = random.key(0)


# ---------------------------------------------------------------- helpers


def to64(tree):
    return tree_util.tree_map(
        lambda a: a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a, tree
    )


def normal(shape, seed=0, scale=1.0):
    return fnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)


def np_params(params):
    return tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)


def check_grads(f, args, argnums, *, eps=1e-5, rtol=2e-6, n_dirs=2):
    """Reverse-mode gradients of scalar ``f`` against central differences along random
    directions (float64): <grad f, v> == (f(a + eps v) - f(a - eps v)) / (2 eps)."""
    grads = fgrad.grad(f, argnums=argnums)(*args)
    for i, g in zip(argnums, grads, strict=True):  # params-shaped gradient pytrees
        assert tree_util.tree_structure(g) == tree_util.tree_structure(args[i])
    rng = np.random.default_rng(123)
    for _ in range(n_dirs):
        dirs = [
            tree_util.tree_map(lambda a: rng.standard_normal(np.shape(a)), args[i]) for i in argnums
        ]

        def at(sign, dirs=dirs):
            new = list(args)
            for i, d in zip(argnums, dirs, strict=True):
                new[i] = tree_util.tree_map(
                    lambda a, u: fnp.asarray(np.asarray(a) + sign * eps * u), args[i], d
                )
            return float(f(*new))

        fd = (at(1.0) - at(-1.0)) / (2 * eps)
        analytic = sum(
            float(np.vdot(np.asarray(g), v))
            for gi, d in zip(grads, dirs, strict=True)
            for g, v in zip(tree_util.tree_leaves(gi), tree_util.tree_leaves(d), strict=True)
        )
        assert analytic == pytest.approx(fd, rel=rtol, abs=1e-7)


def layer_grad_check(layer, input_shape, x, *, train=False, key=None, wrt_x=True):
    params, state = layer.init(KEY, input_shape)
    params, state = to64(params), to64(state)
    out = layer.apply(params, state, x, key=key, train=train)[0]
    weights = tree_util.tree_map(lambda o: normal(o.shape, seed=7), out)  # a fixed random readout

    def f(p, x):
        y = layer.apply(p, state, x, key=key, train=train)[0]
        terms = [
            fnp.sum(a * w)
            for a, w in zip(tree_util.tree_leaves(y), tree_util.tree_leaves(weights), strict=True)
        ]
        return sum(terms[1:], terms[0])

    check_grads(f, (params, x), (0, 1) if wrt_x else (0,))


# ---------------------------------------------------------------- NumPy references


def same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def np_conv(x, w, strides, pads, dilation=(1, 1), groups=1):
    """NHWC x HWIO cross-correlation with explicit pads, dilation and groups."""
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    n, h, wd, c = x.shape
    kh, kw, cg, f = w.shape
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    ho, wo = (h - eh) // strides[0] + 1, (wd - ew) // strides[1] + 1
    fg = f // groups
    out = np.zeros((n, ho, wo, f))
    for i in range(ho):
        for j in range(wo):
            patch = x[
                :,
                i * strides[0] : i * strides[0] + eh : dilation[0],
                j * strides[1] : j * strides[1] + ew : dilation[1],
            ]
            for g in range(groups):
                out[:, i, j, g * fg : (g + 1) * fg] = np.einsum(
                    "nhwc,hwcf->nf",
                    patch[..., g * cg : (g + 1) * cg],
                    w[..., g * fg : (g + 1) * fg],
                )
    return out


def np_pool(x, window, strides, pads, kind):
    """Max (padding never wins) or average (over real pixels only) pooling."""
    fill = -np.inf if kind == "max" else np.nan
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    ho = (x.shape[1] - window[0]) // strides[0] + 1
    wo = (x.shape[2] - window[1]) // strides[1] + 1
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = x[
                :,
                i * strides[0] : i * strides[0] + window[0],
                j * strides[1] : j * strides[1] + window[1],
            ]
            out[:, i, j] = patch.max((1, 2)) if kind == "max" else np.nanmean(patch, (1, 2))
    return out


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_lstm(p, x):
    b, t, _ = x.shape
    u = p["w_h"].shape[0]
    h, c, ys = np.zeros((b, u)), np.zeros((b, u)), []
    for s in range(t):
        z = x[:, s] @ p["w_x"] + h @ p["w_h"] + p["b"]
        i, f, g, o = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys, 1), (h, c)


def np_gru(p, x):
    b, t, _ = x.shape
    u = p["w_h"].shape[0]
    h, ys = np.zeros((b, u)), []
    for s in range(t):
        xz, xr, xn = np.split(x[:, s] @ p["w_x"] + p["b"], 3, -1)
        hz, hr, hn = np.split(h @ p["w_h"] + p["b_h"], 3, -1)
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        h = z * h + (1 - z) * np.tanh(xn + r * hn)
        ys.append(h)
    return np.stack(ys, 1)


def np_rnn(p, x):
    h, ys = np.zeros((x.shape[0], p["w_h"].shape[0])), []
    for s in range(x.shape[1]):
        h = np.tanh(x[:, s] @ p["w_x"] + h @ p["w_h"] + p["b"])
        ys.append(h)
    return np.stack(ys, 1)


def np_mha(p, q_in, k_in, v_in, mask=None):
    def proj(name, x):
        return np.einsum("btd,dhk->bhtk", x, p[name]["w"]) + p[name]["b"][None, :, None, :]

    q, k, v = proj("query", q_in), proj("key", k_in), proj("value", v_in)
    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask, logits, -1e30)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    heads = w @ v  # b h t v
    return np.einsum("bhtv,hvo->bto", heads, p["out"]["w"]) + p["out"]["b"]


def np_conv_transpose(x, w, strides, padding):
    """Scatter definition: input pixel (i, j) adds x[i, j] * w[a, b] at (i*s + a, j*s + b)."""
    n, h, wd, _ = x.shape
    kh, kw, _, f = w.shape
    sh, sw = strides
    full = np.zeros((n, (h - 1) * sh + kh, (wd - 1) * sw + kw, f))
    for i in range(h):
        for j in range(wd):
            full[:, i * sh : i * sh + kh, j * sw : j * sw + kw] += np.einsum(
                "nc,abcf->nabf", x[:, i, j], w
            )
    if padding == "VALID":
        size = (h * sh + max(kh - sh, 0), wd * sw + max(kw - sw, 0))
        lo = (0, 0)
    else:
        size = (h * sh, wd * sw)
        lo = (max(kh - sh, 0) // 2, max(kw - sw, 0) // 2)
    full = np.pad(full, ((0, 0), (0, sh), (0, sw), (0, 0)))  # room when the kernel < stride
    return full[:, lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1]]


# ---------------------------------------------------------------- Dense and friends


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5), (5,)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_matches_numpy(shape, use_bias):
    layer = nn.Dense(3, use_bias=use_bias)
    params, state = layer.init(KEY, shape)
    assert params["w"].shape == (5, 3) and params["w"].dtype == np.float32
    assert ("b" in params) == use_bias and state == {}
    x = normal(shape)
    y, _ = layer.apply(params, state, x)
    p = np_params(params)
    expected = np.asarray(x) @ p["w"] + (p["b"] if use_bias else 0)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)
    assert y.shape == layer.output_shape(shape) == (*shape[:-1], 3)


def test_dense_custom_initialisers_and_glorot_scale():
    layer = nn.Dense(300, w_init=nn.initializers.zeros, b_init=nn.initializers.ones)
    params, _ = layer.init(KEY, (1, 200))
    assert float(fnp.abs(params["w"]).sum()) == 0.0 and float(params["b"].mean()) == 1.0
    w = np.asarray(nn.Dense(300).init(KEY, (1, 200))[0]["w"])
    assert w.var() == pytest.approx(2 / 500, rel=0.05)  # Glorot: 2 / (fan_in + fan_out)


def test_flatten_and_embedding():
    assert nn.Flatten().output_shape((2, 3, 4, 5)) == (2, 60)
    y, _ = nn.Flatten().apply({}, {}, fnp.zeros((2, 3, 4)))
    assert y.shape == (2, 12)
    emb = nn.Embedding(10, 4)
    params, _ = emb.init(KEY, (2, 3))
    assert params["table"].shape == (10, 4)
    ids = np.array([[1, 2, 9], [0, 0, 3]])
    y, _ = emb.apply(params, {}, fnp.asarray(ids))
    assert y.shape == emb.output_shape((2, 3)) == (2, 3, 4)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(params["table"])[ids])
    with pytest.raises(TypeError, match="Embedding.*integer"):
        emb.apply(params, {}, fnp.zeros((2, 3)))
    # The gradient w.r.t. the table counts each lookup.
    g = fgrad.grad(lambda p: fnp.sum(emb.apply(p, {}, fnp.asarray(ids))[0]))(params)
    np.testing.assert_array_equal(
        np.asarray(g["table"])[:, 0], np.bincount(ids.ravel(), minlength=10)
    )


# ---------------------------------------------------------------- convolutions

CONV_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=(3, 2), strides=2, padding="SAME"),
    dict(kernel_size=3, strides=(2, 1), padding=1),
    dict(kernel_size=2, padding=((1, 0), (2, 1)), dilation=2),
    dict(kernel_size=3, padding="SAME", dilation=(1, 2), feature_group_count=2),
    dict(kernel_size=1, use_bias=False),
]


@pytest.mark.parametrize("cfg", CONV_CASES, ids=[str(c) for c in CONV_CASES])
def test_conv2d_matches_numpy(cfg):
    layer = nn.Conv2D(4, **cfg)
    shape = (2, 7, 6, 2)
    params, _ = layer.init(KEY, shape)
    groups = cfg.get("feature_group_count", 1)
    k = cfg["kernel_size"]
    k = (k, k) if isinstance(k, int) else k
    assert params["w"].shape == (*k, 2 // groups, 4)
    x = normal(shape)
    y, _ = layer.apply(params, {}, x)
    strides = cfg.get("strides", 1)
    strides = (strides, strides) if isinstance(strides, int) else strides
    dil = cfg.get("dilation", 1)
    dil = (dil, dil) if isinstance(dil, int) else dil
    pad = cfg.get("padding", "VALID")
    if pad == "VALID":
        pads = ((0, 0), (0, 0))
    elif pad == "SAME":
        pads = tuple(
            same_pads(n, (kk - 1) * d + 1, s)
            for n, kk, d, s in zip(shape[1:3], k, dil, strides, strict=True)
        )
    elif isinstance(pad, int):
        pads = ((pad, pad), (pad, pad))
    else:
        pads = pad
    p = np_params(params)
    expected = np_conv(np.asarray(x, np.float64), p["w"], strides, pads, dil, groups)
    if cfg.get("use_bias", True):
        expected = expected + p["b"]
    assert y.shape == layer.output_shape(shape) == expected.shape
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "cfg,out",
    [
        (dict(kernel_size=3), (2, 8, 5)),
        (dict(kernel_size=3, strides=2, padding="SAME"), (2, 5, 5)),
        (dict(kernel_size=(2,), dilation=3, padding=2), (2, 11, 5)),
    ],
)
def test_conv1d_shapes_and_values(cfg, out):
    layer = nn.Conv1D(5, **cfg)
    params, _ = layer.init(KEY, (2, 10, 3))
    x = normal((2, 10, 3))
    y, _ = layer.apply(params, {}, x)
    assert y.shape == layer.output_shape((2, 10, 3)) == out
    # A 1-D convolution is a 2-D one over a height-1 image.
    conv2 = nn.Conv2D(
        5,
        (1, *np.atleast_1d(cfg["kernel_size"])),
        strides=(1, cfg.get("strides", 1)),
        padding=cfg.get("padding", "VALID")
        if isinstance(cfg.get("padding", "VALID"), str)
        else ((0, 0), (cfg["padding"], cfg["padding"])),
        dilation=(1, cfg.get("dilation", 1)),
    )
    p2 = {"w": params["w"][None], "b": params["b"]}
    y2, _ = conv2.apply(p2, {}, x[:, None])
    np.testing.assert_allclose(np.asarray(y), np.asarray(y2)[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kernel,strides,padding,out_hw",
    [
        (3, 2, "VALID", (9, 11)),  # in * s + max(k - s, 0)
        (3, 2, "SAME", (8, 10)),  # in * s
        (2, 3, "VALID", (12, 15)),  # kernel smaller than the stride
        (4, 2, "SAME", (8, 10)),
        ((3, 2), (1, 2), "VALID", (6, 10)),
    ],
)
def test_conv_transpose_matches_scatter_definition_and_jax(kernel, strides, padding, out_hw):
    layer = nn.ConvTranspose2D(3, kernel, strides=strides, padding=padding)
    shape = (2, 4, 5, 2)
    params, _ = layer.init(KEY, shape)
    x = normal(shape)
    y, _ = layer.apply(params, {}, x)
    assert y.shape == layer.output_shape(shape) == (2, *out_hw, 3)
    p = np_params(params)
    s = (strides, strides) if isinstance(strides, int) else strides
    expected = np_conv_transpose(np.asarray(x, np.float64), p["w"], s, padding) + p["b"]
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-5)
    # jax.lax.conv_transpose with transpose_kernel=True (the gradient of a convolution)
    # reads its kernel as the forward conv's HWIO kernel, so in/out are swapped.
    ref = jax.lax.conv_transpose(
        np.asarray(x, np.float64),
        np.swapaxes(p["w"], 2, 3),
        s,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        transpose_kernel=True,
    )
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref) + p["b"], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- pooling

POOL_CASES = [
    (2, None, "VALID"),
    (3, 2, "VALID"),
    ((2, 3), (1, 2), "SAME"),
    (3, 2, "SAME"),
    (3, 1, 1),
    (2, 2, ((1, 0), (0, 1))),
]


@pytest.mark.parametrize("window,strides,padding", POOL_CASES, ids=[str(c) for c in POOL_CASES])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_numpy(window, strides, padding, kind):
    cls = nn.MaxPool2D if kind == "max" else nn.AvgPool2D
    layer = cls(window, strides=strides, padding=padding)
    shape = (2, 7, 6, 3)
    x = normal(shape)
    y, _ = layer.apply({}, {}, x)
    w = (window, window) if isinstance(window, int) else window
    s = w if strides is None else ((strides, strides) if isinstance(strides, int) else strides)
    if padding == "VALID":
        pads = ((0, 0), (0, 0))
    elif padding == "SAME":
        pads = tuple(same_pads(n, k, st) for n, k, st in zip(shape[1:3], w, s, strict=True))
    elif isinstance(padding, int):
        pads = ((padding, padding),) * 2
    else:
        pads = padding
    expected = np_pool(np.asarray(x, np.float64), w, s, pads, kind)
    assert y.shape == layer.output_shape(shape) == expected.shape
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)
    assert layer.init(KEY, shape) == ({}, {})


def test_maxpool_gradient_goes_to_the_maximum():
    x = fnp.asarray(np.array([1.0, 5.0, 3.0, 2.0, 0.0, 4.0, 7.0, 6.0]).reshape(1, 2, 4, 1))
    g = fgrad.grad(lambda v: fnp.sum(nn.MaxPool2D(2).apply({}, {}, v)[0]))(x)
    np.testing.assert_array_equal(np.asarray(g).reshape(2, 4), [[0, 1, 0, 0], [0, 0, 1, 0]])


# ---------------------------------------------------------------- dropout


def test_dropout_train_and_eval():
    rate = 0.3
    layer = nn.Dropout(rate)
    x = fnp.ones((200, 500))
    y, state = layer.apply({}, {}, x, key=random.key(1), train=True)
    y = np.asarray(y)
    assert state == {}
    dropped = np.mean(y == 0)
    assert abs(dropped - rate) < 4 * math.sqrt(rate * (1 - rate) / y.size)  # within 4 sigma
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-6)  # inverted scaling
    assert abs(y.mean() - 1.0) < 0.02  # expectation preserved
    # Evaluation (the default) is the identity, with or without a key.
    for kwargs in ({}, {"train": False}, {"key": random.key(1)}):
        np.testing.assert_array_equal(np.asarray(layer.apply({}, {}, x, **kwargs)[0]), 1.0)
    # Same key -> same mask; another key -> another mask.
    y2 = np.asarray(layer.apply({}, {}, x, key=random.key(1), train=True)[0])
    y3 = np.asarray(layer.apply({}, {}, x, key=random.key(2), train=True)[0])
    np.testing.assert_array_equal(y, y2)
    assert np.mean(y != y3) > 0.2
    assert np.asarray(nn.Dropout(0.0).apply({}, {}, x, key=KEY, train=True)[0]).min() == 1.0
    with pytest.raises(TypeError, match=r"Dropout\(rate=0.3\).*key"):
        layer.apply({}, {}, x, train=True)


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 3, 2)])
def test_batchnorm_train_and_eval_match_numpy(shape):
    bn = nn.BatchNorm(momentum=0.9, epsilon=1e-3)
    params, state = bn.init(KEY, shape)
    c = shape[-1]
    assert {k: v.shape for k, v in params.items()} == {"scale": (c,), "bias": (c,)}
    np.testing.assert_array_equal(np.asarray(state["mean"]), 0.0)
    np.testing.assert_array_equal(np.asarray(state["var"]), 1.0)
    params = {"scale": normal((c,), 1) + 1.0, "bias": normal((c,), 2)}
    state = {
        "mean": normal((c,), 3).astype(np.float32),
        "var": (normal((c,), 4) ** 2 + 0.5).astype(np.float32),
    }
    x = normal(shape, 5, scale=3.0) + 2.0
    xn, p, s = np.asarray(x), np_params(params), np_params(state)
    axes = tuple(range(len(shape) - 1))

    # Train: batch statistics, running averages updated.
    y, new_state = bn.apply(params, state, x, train=True)
    mean, var = xn.mean(axes), xn.var(axes)
    np.testing.assert_allclose(
        np.asarray(y),
        (xn - mean) / np.sqrt(var + 1e-3) * p["scale"] + p["bias"],
        rtol=1e-9,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        np.asarray(new_state["mean"]), 0.9 * s["mean"] + 0.1 * mean, rtol=1e-5
    )
    np.testing.assert_allclose(np.asarray(new_state["var"]), 0.9 * s["var"] + 0.1 * var, rtol=1e-5)
    assert new_state["mean"].dtype == np.float32  # state keeps its dtype

    # Eval: running statistics, state unchanged.
    y_eval, same_state = bn.apply(params, state, x)
    assert same_state is state
    np.testing.assert_allclose(
        np.asarray(y_eval),
        (xn - s["mean"]) / np.sqrt(s["var"] + 1e-3) * p["scale"] + p["bias"],
        rtol=1e-6,
        atol=1e-6,
    )
    assert not np.allclose(np.asarray(y_eval), np.asarray(y), atol=1e-2)


def test_batchnorm_running_stats_converge_and_eval_agrees():
    bn = nn.BatchNorm(momentum=0.5)
    params, state = bn.init(KEY, (64, 3))
    x = normal((64, 3), 9, scale=2.0) + 5.0
    for _ in range(40):
        y_train, state = bn.apply(params, state, x, train=True)
    np.testing.assert_allclose(np.asarray(state["mean"]), np.asarray(x).mean(0), rtol=1e-5)
    y_eval, _ = bn.apply(params, state, x)
    np.testing.assert_allclose(np.asarray(y_eval), np.asarray(y_train), atol=1e-4)


def test_layernorm_matches_numpy():
    ln = nn.LayerNorm()
    params, state = ln.init(KEY, (3, 4, 6))
    params = {"scale": normal((6,), 1), "bias": normal((6,), 2)}
    x = normal((3, 4, 6), 3, scale=4.0)
    y, _ = ln.apply(params, state, x)
    xn = np.asarray(x)
    m, v = xn.mean(-1, keepdims=True), xn.var(-1, keepdims=True)
    np.testing.assert_allclose(
        np.asarray(y),
        (xn - m) / np.sqrt(v + 1e-5) * np.asarray(params["scale"]) + np.asarray(params["bias"]),
        rtol=1e-9,
        atol=1e-9,
    )


# ---------------------------------------------------------------- recurrent


def test_lstm_matches_numpy_and_options():
    x = normal((3, 5, 4))
    lstm = nn.LSTM(6)
    params, state = lstm.init(KEY, (3, 5, 4))
    assert {k: v.shape for k, v in params.items()} == {"w_x": (4, 24), "w_h": (6, 24), "b": (24,)}
    np.testing.assert_array_equal(
        np.asarray(params["b"]), np.r_[np.zeros(6), np.ones(6), np.zeros(12)]
    )  # forget bias 1
    p = np_params(params)
    p["b"] = np.asarray(normal((24,), 11))
    params = {**params, "b": fnp.asarray(p["b"])}
    expected, (h, c) = np_lstm(p, np.asarray(x))
    y, _ = lstm.apply(params, state, x)
    assert y.shape == lstm.output_shape((3, 5, 4)) == (3, 5, 6)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-9, atol=1e-9)
    (y_last, (h2, c2)), _ = nn.LSTM(6, return_sequences=False, return_state=True).apply(
        params, state, x
    )
    np.testing.assert_allclose(np.asarray(y_last), expected[:, -1], atol=1e-9)
    np.testing.assert_allclose(np.asarray(h2), h, atol=1e-9)
    np.testing.assert_allclose(np.asarray(c2), c, atol=1e-9)
    assert nn.LSTM(6, return_sequences=False, return_state=True).output_shape((3, 5, 4)) == (
        (3, 6),
        ((3, 6), (3, 6)),
    )
    # Starting from the final carry continues the sequence.
    y_a, _ = nn.LSTM(6, return_state=True).apply(params, state, x[:, :2])
    y_b, _ = lstm.apply(params, state, x[:, 2:], initial_carry=y_a[1])
    np.testing.assert_allclose(np.asarray(y_b), expected[:, 2:], atol=1e-9)


def test_gru_and_simple_rnn_match_numpy():
    x = normal((2, 4, 3))
    gru = nn.GRU(5)
    params, _ = gru.init(KEY, (2, 4, 3))
    params = {k: normal(v.shape, i) * 0.5 for i, (k, v) in enumerate(params.items())}
    assert set(params) == {"w_x", "w_h", "b", "b_h"} and params["w_x"].shape == (3, 15)
    y, _ = gru.apply(params, {}, x)
    np.testing.assert_allclose(np.asarray(y), np_gru(np_params(params), np.asarray(x)), atol=1e-9)
    rnn = nn.SimpleRNN(5, return_sequences=False)
    params, _ = rnn.init(KEY, (2, 4, 3))
    assert params["w_h"].shape == (5, 5)
    q = np.asarray(params["w_h"])
    np.testing.assert_allclose(q.T @ q, np.eye(5), atol=1e-5)  # orthogonal recurrent init
    params = {**params, "b": normal((5,), 3)}
    y, _ = rnn.apply(params, {}, x)
    np.testing.assert_allclose(
        np.asarray(y), np_rnn(np_params(params), np.asarray(x))[:, -1], atol=1e-6
    )
    assert rnn.output_shape((2, 4, 3)) == (2, 5)
    assert nn.GRU(5, return_state=True).output_shape((2, 4, 3)) == ((2, 4, 5), (2, 5))


# ---------------------------------------------------------------- attention


def test_multi_head_attention_matches_numpy():
    mha = nn.MultiHeadAttention(num_heads=3, key_size=4, value_size=2, output_size=7)
    q_in, k_in, v_in = normal((2, 5, 6), 1), normal((2, 4, 3), 2), normal((2, 4, 8), 3)
    params, _ = mha.init(KEY, ((2, 5, 6), (2, 4, 3), (2, 4, 8)))
    assert params["query"]["w"].shape == (6, 3, 4) and params["value"]["w"].shape == (8, 3, 2)
    assert params["out"]["w"].shape == (3, 2, 7)
    params = tree_util.tree_map(lambda a: normal(a.shape, a.size) * 0.5, params)
    y, _ = mha.apply(params, {}, (q_in, k_in, v_in))
    p = np_params(params)
    expected = np_mha(p, np.asarray(q_in), np.asarray(k_in), np.asarray(v_in))
    assert y.shape == mha.output_shape(((2, 5, 6), (2, 4, 3), (2, 4, 8))) == (2, 5, 7)
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-9)
    # Masks: per batch (B, Tq, Tk) and per head; a fully masked row stays finite.
    mask = np.random.default_rng(0).uniform(size=(2, 5, 4)) > 0.3
    mask[0, 0] = False
    y, _ = mha.apply(params, {}, (q_in, k_in, v_in), mask=fnp.asarray(mask))
    ref = np_mha(p, np.asarray(q_in), np.asarray(k_in), np.asarray(v_in), mask[:, None])
    assert np.all(np.isfinite(np.asarray(y)))
    np.testing.assert_allclose(np.asarray(y)[:, 1:], ref[:, 1:], atol=1e-9)
    np.testing.assert_allclose(np.asarray(y)[1], ref[1], atol=1e-9)


def test_self_attention_causal_mask():
    mha = nn.MultiHeadAttention(2, 4)
    x = normal((1, 6, 8))
    params, _ = mha.init(KEY, (1, 6, 8))
    causal = fnp.asarray(np.tril(np.ones((6, 6), bool)))
    y, _ = mha.apply(params, {}, x, mask=causal)
    assert y.shape == (1, 6, 8)
    # Changing the future does not change the past.
    x2 = fnp.asarray(np.concatenate([np.asarray(x)[:, :3], np.zeros((1, 3, 8))], 1))
    y2, _ = mha.apply(params, {}, x2, mask=causal)
    np.testing.assert_allclose(np.asarray(y)[:, :3], np.asarray(y2)[:, :3], atol=1e-6)


# ---------------------------------------------------------------- gradients (float64)

GRAD_CASES = [
    ("Dense", nn.Dense(3), (2, 4), {}),
    ("Dense_rank3", nn.Dense(2, use_bias=False), (2, 3, 4), {}),
    ("Conv2D", nn.Conv2D(3, 3, strides=2, padding="SAME"), (2, 5, 5, 2), {}),
    (
        "Conv2D_dilated_groups",
        nn.Conv2D(4, 2, dilation=2, feature_group_count=2, padding=1),
        (1, 5, 4, 2),
        {},
    ),
    ("Conv1D", nn.Conv1D(3, 3, padding="SAME"), (2, 6, 2), {}),
    ("ConvTranspose2D", nn.ConvTranspose2D(2, 3, strides=2, padding="SAME"), (1, 3, 3, 2), {}),
    ("ConvTranspose2D_valid", nn.ConvTranspose2D(2, 2, strides=(1, 2)), (1, 3, 2, 2), {}),
    ("MaxPool2D", nn.MaxPool2D(2, strides=1, padding="SAME"), (2, 4, 4, 2), {}),
    ("AvgPool2D", nn.AvgPool2D(3, strides=2, padding="SAME"), (2, 5, 5, 2), {}),
    ("Flatten", nn.Flatten(), (2, 3, 2), {}),
    ("Dropout_train", nn.Dropout(0.5), (4, 5), {"train": True, "key": random.key(3)}),
    ("BatchNorm_train", nn.BatchNorm(), (6, 2, 3), {"train": True}),
    ("BatchNorm_eval", nn.BatchNorm(), (6, 3), {}),
    ("LayerNorm", nn.LayerNorm(), (3, 5), {}),
    ("SimpleRNN", nn.SimpleRNN(3), (2, 4, 2), {}),
    ("LSTM", nn.LSTM(3, return_state=True), (2, 4, 2), {}),
    ("GRU", nn.GRU(3, return_sequences=False), (2, 4, 2), {}),
    ("MultiHeadAttention", nn.MultiHeadAttention(2, 3), (2, 4, 5), {}),
]


@pytest.mark.parametrize("name,layer,shape,kw", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_layer_gradients_match_finite_differences(name, layer, shape, kw):
    x = normal(shape, 42)
    layer_grad_check(layer, shape, x, **kw)


def test_attention_gradients_with_qkv_tuple_and_mask():
    mha = nn.MultiHeadAttention(2, 2, output_size=3)
    shapes = ((1, 3, 4), (1, 2, 5), (1, 2, 5))
    params, _ = mha.init(KEY, shapes)
    params = to64(params)
    qkv = tuple(normal(s, i) for i, s in enumerate(shapes))
    mask = fnp.asarray(np.array([[[True, False], [True, True], [False, True]]]))
    check_grads(lambda p, x: fnp.sum(mha.apply(p, {}, x, mask=mask)[0] ** 2), (params, qkv), (0, 1))


def test_embedding_gradient_matches_finite_differences():
    emb = nn.Embedding(6, 3)
    params = to64(emb.init(KEY, (2, 4))[0])
    ids = fnp.asarray(np.array([[0, 5, 5, 2], [1, 2, 3, 3]]))
    check_grads(lambda p: fnp.sum(emb.apply(p, {}, ids)[0] ** 3), (params,), (0,))


# ---------------------------------------------------------------- errors and repr

ERROR_CASES = [
    (lambda: nn.Dense(0).init(KEY, (2, 3)), "Dense", "features"),
    (lambda: nn.Dense(3).init(KEY, ()), "Dense", "rank"),
    (lambda: nn.Conv2D(8, 3).init(KEY, (28, 28, 1)), "Conv2D", "rank 4"),
    (lambda: nn.Conv2D(8, 0).init(KEY, (1, 28, 28, 1)), "Conv2D", "kernel_size"),
    (lambda: nn.Conv2D(8, 3, padding="FULL").init(KEY, (1, 8, 8, 1)), "Conv2D", "padding"),
    (lambda: nn.Conv2D(8, 3, strides=(1, 2, 3)).init(KEY, (1, 8, 8, 1)), "Conv2D", "strides"),
    (lambda: nn.Conv2D(6, 3, feature_group_count=4).init(KEY, (1, 8, 8, 4)), "Conv2D", "divisible"),
    (lambda: nn.Conv2D(4, 3, feature_group_count=2).init(KEY, (1, 8, 8, 3)), "Conv2D", "divisible"),
    (lambda: nn.Conv2D(4, 5).init(KEY, (1, 3, 3, 1)), "Conv2D", "too small"),
    (lambda: nn.Conv1D(4, 3).init(KEY, (1, 8, 8, 1)), "Conv1D", "rank 3"),
    (
        lambda: nn.ConvTranspose2D(4, 3, padding=1).init(KEY, (1, 8, 8, 1)),
        "ConvTranspose2D",
        "padding",
    ),
    (lambda: nn.MaxPool2D(0).init(KEY, (1, 8, 8, 1)), "MaxPool2D", "window"),
    (lambda: nn.AvgPool2D(2).init(KEY, (8, 8)), "AvgPool2D", "rank 4"),
    (lambda: nn.Flatten().init(KEY, (5,)), "Flatten", "rank"),
    (lambda: nn.Dropout(1.0).init(KEY, (2, 3)), "Dropout", "rate"),
    (lambda: nn.Dropout(-0.1).apply({}, {}, fnp.ones(3), key=KEY, train=True), "Dropout", "rate"),
    (lambda: nn.BatchNorm(momentum=1.5).init(KEY, (2, 3)), "BatchNorm", "momentum"),
    (lambda: nn.BatchNorm().init(KEY, (3,)), "BatchNorm", "rank"),
    (lambda: nn.LayerNorm(epsilon=0.0).init(KEY, (2, 3)), "LayerNorm", "epsilon"),
    (lambda: nn.Embedding(0, 3).init(KEY, (2,)), "Embedding", "num_embeddings"),
    (lambda: nn.LSTM(0).init(KEY, (2, 3, 4)), "LSTM", "units"),
    (lambda: nn.GRU(4).init(KEY, (2, 3)), "GRU", "rank 3"),
    (lambda: nn.SimpleRNN(4.5).init(KEY, (2, 3, 1)), "SimpleRNN", "units"),
    (lambda: nn.MultiHeadAttention(0, 4).init(KEY, (2, 3, 4)), "MultiHeadAttention", "num_heads"),
    (
        lambda: nn.MultiHeadAttention(2, 4).init(KEY, ((2, 3, 4), (2, 5, 4), (2, 4, 4))),
        "MultiHeadAttention",
        "same length",
    ),
    (lambda: nn.Dense(3).init(KEY, "abc"), "Dense", "input_shape"),
]


@pytest.mark.parametrize(
    "make,layer_name,words", ERROR_CASES, ids=[f"{c[1]}-{c[2]}" for c in ERROR_CASES]
)
def test_errors_at_init_name_the_layer(make, layer_name, words):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    message = str(info.value)
    assert message.startswith(layer_name + "("), message
    assert words in message, message


def test_layers_are_immutable_hashable_and_readable():
    layer = nn.Conv2D(16, 3, padding="SAME")
    with pytest.raises(AttributeError):
        layer.features = 3
    assert layer == nn.Conv2D(16, 3, padding="SAME") and hash(layer) == hash(
        nn.Conv2D(16, 3, padding="SAME")
    )
    assert repr(layer) == "Conv2D(features=16, kernel_size=3, padding='SAME')"
    assert repr(nn.Dense(10)) == "Dense(features=10)"
    assert repr(nn.Dropout(0.5)) == "Dropout(rate=0.5)"
    assert repr(nn.BatchNorm()) == "BatchNorm()"
    assert repr(nn.LSTM(8, return_sequences=False)) == "LSTM(units=8, return_sequences=False)"
    assert "w_init=he_normal" in repr(
        nn.Dense(3, w_init=nn.initializers.he_normal())
    ) or "w_init=variance_scaling" in repr(nn.Dense(3, w_init=nn.initializers.he_normal()))
    assert repr(nn.SimpleRNN(2, activation=nn.relu)) == "SimpleRNN(units=2, activation=relu)"
