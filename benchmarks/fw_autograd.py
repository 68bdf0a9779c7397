"""autograd (HIPS) column: the same models in ``autograd.numpy``, Adam/SGD by hand.

autograd has no convolution without SciPy, so the 3x3 SAME convolution is written as
im2col (nine shifted slices concatenated) times the reshaped HWIO kernel, and max
pooling as a reshape and max; the function computed is the same.
"""

from __future__ import annotations

import numpy as np

from benchmarks.fw_numpy import _adam_update
from benchmarks.workloads import LSTM_HIDDEN, LSTM_STEPS, SGD_LR


def build(workload, params0: dict, data, mode: str):
    import autograd
    import autograd.numpy as anp

    def sigmoid(x):
        return 1.0 / (1.0 + anp.exp(-x))

    def relu(x):
        return anp.maximum(x, 0.0)

    def softmax_ce(logits, y):
        m = anp.max(logits, axis=1, keepdims=True)
        lse = m[:, 0] + anp.log(anp.sum(anp.exp(logits - m), axis=1))
        return anp.mean(lse - anp.sum(logits * y, axis=1))

    def xor_loss(p, x, y):
        h = anp.tanh(anp.dot(x, p["l1_w"]) + p["l1_b"])
        out = sigmoid(anp.dot(h, p["l2_w"]) + p["l2_b"])
        return anp.mean((out - y) ** 2)

    def mlp_loss(p, x, y):
        h = relu(anp.dot(x, p["l1_w"]) + p["l1_b"])
        h = relu(anp.dot(h, p["l2_w"]) + p["l2_b"])
        return softmax_ce(anp.dot(h, p["l3_w"]) + p["l3_b"], y)

    def conv3x3_same(x, w, b):
        n, hh, ww, cin = x.shape
        xp = anp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="constant")
        cols = anp.concatenate(
            [xp[:, i : i + hh, j : j + ww, :] for i in range(3) for j in range(3)], axis=3
        )
        out = anp.dot(anp.reshape(cols, (n * hh * ww, 9 * cin)), anp.reshape(w, (9 * cin, -1)))
        return relu(anp.reshape(out, (n, hh, ww, -1)) + b)

    def cnn_loss(p, x, y):
        h = conv3x3_same(x, p["c1_w"], p["c1_b"])
        h = conv3x3_same(h, p["c2_w"], p["c2_b"])
        n = h.shape[0]
        h = anp.max(anp.reshape(h, (n, 14, 2, 14, 2, 32)), axis=(2, 4))
        h = relu(anp.dot(anp.reshape(h, (n, -1)), p["d1_w"]) + p["d1_b"])
        return softmax_ce(anp.dot(h, p["d2_w"]) + p["d2_b"], y)

    def lstm_loss(p, x, y):
        n, hid = x.shape[0], LSTM_HIDDEN
        xw = anp.reshape(
            anp.dot(anp.reshape(x, (n * LSTM_STEPS, -1)), p["wx"]), (n, LSTM_STEPS, 4 * hid)
        )
        h = np.zeros((n, hid), np.float32)
        c = np.zeros((n, hid), np.float32)
        for t in range(LSTM_STEPS):
            z = xw[:, t] + anp.dot(h, p["wh"]) + p["b"]
            i = sigmoid(z[:, :hid])
            f = sigmoid(z[:, hid : 2 * hid])
            g = anp.tanh(z[:, 2 * hid : 3 * hid])
            o = sigmoid(z[:, 3 * hid :])
            c = f * c + i * g
            h = o * anp.tanh(c)
        return anp.mean((anp.dot(h, p["p_w"]) + p["p_b"] - y) ** 2)

    loss_fn = {"xor": xor_loss, "mlp": mlp_loss, "cnn": cnn_loss, "lstm": lstm_loss}[workload.name]
    vg = autograd.value_and_grad(loss_fn)

    def sgd_step(p, state, x, y):
        loss, grads = vg(p, x, y)
        for k, g in grads.items():
            p[k] -= SGD_LR * g
        return p, state, loss

    def adam_step(p, state, x, y):
        loss, grads = vg(p, x, y)
        _adam_update(p, grads, state)
        return p, state, loss

    def init():
        params = {k: v.copy() for k, v in params0.items()}
        state = {
            "t": 0,
            "mu": {k: np.zeros_like(v) for k, v in params.items()},
            "nu": {k: np.zeros_like(v) for k, v in params.items()},
        }
        return params, state

    x, y = data
    return {
        "init": init,
        "step": sgd_step if workload.optimizer == "sgd" else adam_step,
        "x": x,
        "y": y,
        "to_float": float,
        "sync": lambda out: None,
        "jitted": None,
    }
