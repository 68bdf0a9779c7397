"""Sequential: naming, key splitting, state threading, grad/jit through apply, summary."""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import nn, random
from fgrad import tree as tree_util

KEY = random.key(0)


def cnn():
    return nn.Sequential(
        [
            nn.Conv2D(4, 3),
            nn.relu,
            nn.BatchNorm(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(8),
            nn.relu,
            nn.Dropout(0.5),
            nn.Dense(3),
        ]
    )


def test_names_params_and_state_structure():
    model = cnn()
    params, state = model.init(KEY, (2, 8, 8, 1))
    assert model.names[:3] == ("Conv2D_0", "relu_1", "BatchNorm_2")
    assert list(params) == ["Conv2D_0", "BatchNorm_2", "Dense_5", "Dense_8"]
    assert set(params["Conv2D_0"]) == {"w", "b"} and set(params["BatchNorm_2"]) == {"scale", "bias"}
    assert params["Dense_5"]["w"].shape == (3 * 3 * 4, 8)
    assert list(state) == ["BatchNorm_2"] and set(state["BatchNorm_2"]) == {"mean", "var"}
    assert model.output_shape((2, 8, 8, 1)) == (2, 3)
    # The layers' own init, with the per-position keys, gives the same params.
    k0 = random.split(KEY, len(model))[0]
    np.testing.assert_array_equal(
        np.asarray(params["Conv2D_0"]["w"]),
        np.asarray(nn.Conv2D(4, 3).init(k0, (2, 8, 8, 1))[0]["w"]),
    )


def test_apply_threads_state_and_keys():
    model = cnn()
    params, state = model.init(KEY, (4, 8, 8, 1))
    x = random.normal(random.key(1), (4, 8, 8, 1))
    y_eval, state_eval = model.apply(params, state, x)
    assert y_eval.shape == (4, 3)
    assert state_eval["BatchNorm_2"] is state["BatchNorm_2"]
    y1, s1 = model.apply(params, state, x, key=random.key(2), train=True)
    y2, _ = model.apply(params, state, x, key=random.key(2), train=True)
    y3, _ = model.apply(params, state, x, key=random.key(3), train=True)
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    assert not np.allclose(np.asarray(y1), np.asarray(y3))
    assert not np.allclose(np.asarray(s1["BatchNorm_2"]["mean"]), 0.0)
    with pytest.raises(TypeError, match="Dropout.*key"):
        model.apply(params, state, x, train=True)


def test_two_dropouts_get_different_keys():
    model = nn.Sequential([nn.Dropout(0.5), nn.Dropout(0.5)])
    x = fnp.ones((1, 2000))
    y, _ = model.apply({}, {}, x, key=KEY, train=True)
    # Independent masks: about a quarter survive (scaled by 4), not a half.
    assert abs(np.mean(np.asarray(y) != 0) - 0.25) < 0.05


def _loss(model, params, state, x, labels, key):
    logits, new_state = model.apply(params, state, x, key=key, train=True)
    return nn.softmax_cross_entropy(logits, labels), new_state


def test_grad_through_apply_is_params_shaped_eager_and_jit():
    model = cnn()
    params, state = model.init(KEY, (4, 8, 8, 1))
    x = random.normal(random.key(1), (4, 8, 8, 1))
    labels = fnp.asarray(np.array([0, 2, 1, 1]))

    def loss(p, s, k):
        return _loss(model, p, s, x, labels, k)

    grad_fn = fgrad.value_and_grad(loss, has_aux=True)
    (value, new_state), grads = grad_fn(params, state, random.key(5))
    assert tree_util.tree_structure(grads) == tree_util.tree_structure(params)
    for g, p in zip(tree_util.tree_leaves(grads), tree_util.tree_leaves(params), strict=True):
        assert g.shape == p.shape and g.dtype == p.dtype
        assert np.all(np.isfinite(np.asarray(g)))
    assert float(fnp.abs(grads["Dense_8"]["w"]).sum()) > 0
    (value_j, state_j), grads_j = fgrad.jit(grad_fn)(params, state, random.key(5))
    assert value_j.item() == pytest.approx(value.item(), rel=1e-5)
    for a, b in zip(tree_util.tree_leaves(grads_j), tree_util.tree_leaves(grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(state_j["BatchNorm_2"]["var"]),
        np.asarray(new_state["BatchNorm_2"]["var"]),
        rtol=1e-5,
    )


def test_mlp_training_reduces_loss():
    model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(2)])
    x = random.normal(random.key(1), (64, 2))
    labels = (x[:, 0] * x[:, 1] > 0).astype(np.int32)
    params, state = model.init(KEY, (64, 2))

    @fgrad.jit
    def step(p):
        def loss(p):
            return nn.softmax_cross_entropy(model.apply(p, state, x)[0], labels)

        value, g = fgrad.value_and_grad(loss)(p)
        return value, tree_util.tree_map(lambda a, b: a - 0.5 * b, p, g)

    first, _ = step(params)
    for _ in range(60):
        value, params = step(params)
    assert value.item() < 0.6 * first.item()


def test_nested_sequential_lambda_and_repr():
    inner = nn.Sequential([nn.Dense(4), nn.gelu])
    model = nn.Sequential(
        [inner, lambda x: x.reshape(x.shape[0], 2, 2), nn.LayerNorm(), nn.Flatten()]
    )
    params, state = model.init(KEY, (3, 5))
    assert list(params) == ["Sequential_0", "LayerNorm_2"]
    assert list(params["Sequential_0"]) == ["Dense_0"]
    assert model.output_shape((3, 5)) == (3, 4)
    y, _ = model.apply(params, state, fnp.ones((3, 5)))
    assert y.shape == (3, 4)
    assert repr(inner) == "Sequential([\n  Dense(features=4),\n  gelu,\n])"
    assert hash(model) == hash(model)


def test_errors_name_the_child():
    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Conv2D(3, 3)])
    with pytest.raises(ValueError, match=r"Conv2D_2.*Conv2D\(features=3, kernel_size=3\).*rank 4"):
        model.init(KEY, (2, 5))
    with pytest.raises(TypeError, match="neither a layer nor a function"):
        nn.Sequential([nn.Dense(3), 5]).init(KEY, (2, 5))


def test_summary_table():
    lines = []
    table = nn.summary(cnn(), (1, 8, 8, 1), print_fn=lines.append)
    assert lines == [table]
    assert "Conv2D_0 (Conv2D)" in table and "(1, 6, 6, 4)" in table
    assert "Dense_5 (Dense)" in table and "296" in table  # 36 * 8 + 8
    conv, bn, d1, d2 = 3 * 3 * 4 + 4, 4 + 4, 36 * 8 + 8, 8 * 3 + 3
    assert f"Total params: {conv + bn + d1 + d2 + 8:,}" in table
    assert f"Trainable params: {conv + bn + d1 + d2:,}" in table
    assert "Non-trainable params: 8 " in table
    single = nn.summary(nn.LSTM(4), (2, 3, 5), print_fn=None)
    assert "LSTM" in single and str((2, 3, 4)) in single and f"{5 * 16 + 4 * 16 + 16}" in single
