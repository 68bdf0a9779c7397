"""fgrad columns: the four models in ``fgrad.numpy``/``fgrad.lax``, eager and under ``jit``.

The optimizer is ``fgrad.optim`` (``sgd``/``adam``) when that package provides them;
until then the same updates are written here in fgrad ops (``_sgd``/``_adam``, optax's
formulas). ``OPTIMIZER_SOURCE`` records which one ran.
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from benchmarks.workloads import ADAM, LSTM_HIDDEN, LSTM_STEPS, SGD_LR, lstm_uses_scan
from fgrad import lax

# ------------------------------------------------------------------ activations


def _nn():
    try:
        from fgrad import nn  # the nn issue; written with fnp until it lands
    except ImportError:
        return None
    return nn if hasattr(nn, "relu") and hasattr(nn, "sigmoid") else None


_NN = _nn()


def relu(x):
    return _NN.relu(x) if _NN is not None else fnp.maximum(x, 0.0)


def sigmoid(x):
    return _NN.sigmoid(x) if _NN is not None else lax.logistic(x)


# ------------------------------------------------------------------ models


def _softmax_ce(logits, y):
    return fnp.mean(fnp.logsumexp(logits, axis=1) - fnp.sum(logits * y, axis=1))


def xor_loss(p, x, y):
    h = fnp.tanh(x @ p["l1_w"] + p["l1_b"])
    out = sigmoid(h @ p["l2_w"] + p["l2_b"])
    return fnp.mean((out - y) ** 2)


def mlp_loss(p, x, y):
    h = relu(x @ p["l1_w"] + p["l1_b"])
    h = relu(h @ p["l2_w"] + p["l2_b"])
    return _softmax_ce(h @ p["l3_w"] + p["l3_b"], y)


def _conv(x, w, b):
    y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return relu(y + b)


def _maxpool2(x):
    window = (1, 2, 2, 1)
    if hasattr(lax, "reduce_window_max"):
        return lax.reduce_window_max(x, window, window, "VALID")
    from fgrad.lax.windows import reduce_window_max

    return reduce_window_max(x, window, window, "VALID")


def cnn_loss(p, x, y):
    h = _conv(x, p["c1_w"], p["c1_b"])
    h = _maxpool2(_conv(h, p["c2_w"], p["c2_b"]))
    h = h.reshape(h.shape[0], -1)
    h = relu(h @ p["d1_w"] + p["d1_b"])
    return _softmax_ce(h @ p["d2_w"] + p["d2_b"], y)


def _lstm_cell(p, h, c, xw_t):
    hid = LSTM_HIDDEN
    z = xw_t + h @ p["wh"] + p["b"]
    i = sigmoid(z[:, :hid])
    f = sigmoid(z[:, hid : 2 * hid])
    g = fnp.tanh(z[:, 2 * hid : 3 * hid])
    o = sigmoid(z[:, 3 * hid :])
    c = f * c + i * g
    return o * fnp.tanh(c), c


def lstm_loss(p, x, y):
    """Unrolled over the 32 steps, or through ``lax.scan`` with ``run --lstm-scan``."""
    n, hid = x.shape[0], LSTM_HIDDEN
    xw = (x.reshape(n * LSTM_STEPS, -1) @ p["wx"]).reshape(n, LSTM_STEPS, 4 * hid)
    h = fnp.zeros((n, hid), fnp.float32)
    c = fnp.zeros((n, hid), fnp.float32)
    if lstm_uses_scan():

        def body(carry, xw_t):
            return _lstm_cell(p, *carry, xw_t), None

        (h, c), _ = lax.scan(body, (h, c), fnp.swapaxes(xw, 0, 1))
    else:
        for t in range(LSTM_STEPS):
            h, c = _lstm_cell(p, h, c, xw[:, t])
    pred = h @ p["p_w"] + p["p_b"]
    return fnp.mean((pred - y) ** 2)


LOSSES = {"xor": xor_loss, "mlp": mlp_loss, "cnn": cnn_loss, "lstm": lstm_loss}

# ------------------------------------------------------------------ optimizers


def _optim():
    try:
        from fgrad import optim
    except ImportError:
        return None
    if all(hasattr(optim, n) for n in ("adam", "sgd", "apply_updates")):
        return optim
    return None


_OPTIM = _optim()
OPTIMIZER_SOURCE = "fgrad.optim" if _OPTIM is not None else "hand-written in fgrad ops"


def _sgd():
    def init(params):
        return ()

    def update(params, grads, state):
        return fgrad.tree.map(lambda p, g: p - SGD_LR * g, params, grads), state

    return init, update


def _adam():
    lr, b1, b2, eps = ADAM["lr"], ADAM["b1"], ADAM["b2"], ADAM["eps"]

    def init(params):
        zeros = fgrad.tree.map(fnp.zeros_like, params)
        return (fnp.zeros((), fnp.float32), zeros, fgrad.tree.map(fnp.zeros_like, params))

    def update(params, grads, state):
        count, mu, nu = state
        count = count + 1.0
        mu = fgrad.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, mu, grads)
        nu = fgrad.tree.map(lambda v, g: b2 * v + (1.0 - b2) * (g * g), nu, grads)
        bc1 = 1.0 - fnp.power(fnp.float32(b1), count)
        bc2 = 1.0 - fnp.power(fnp.float32(b2), count)
        params = fgrad.tree.map(
            lambda p, m, v: p - lr * (m / bc1) / (fnp.sqrt(v / bc2) + eps), params, mu, nu
        )
        return params, (count, mu, nu)

    return init, update


def _from_optim(kind: str):
    opt = (
        _OPTIM.sgd(SGD_LR)
        if kind == "sgd"
        else _OPTIM.adam(ADAM["lr"], b1=ADAM["b1"], b2=ADAM["b2"], eps=ADAM["eps"])
    )

    def update(params, grads, state):
        updates, state = opt.update(grads, state, params)
        return _OPTIM.apply_updates(params, updates), state

    return opt.init, update


def optimizer(kind: str):
    """``(init(params) -> state, update(params, grads, state) -> (params, state))``."""
    if _OPTIM is not None:  # switch point: fgrad.optim once it provides sgd/adam
        return _from_optim(kind)
    return _sgd() if kind == "sgd" else _adam()


# ------------------------------------------------------------------ builder


def build(workload, params0: dict, data, mode: str):
    """Return ``(init, step, x, y, to_float, sync, jitted)`` for ``mode`` "eager" or "jit"."""
    loss_fn = LOSSES[workload.name]
    opt_init, opt_update = optimizer(workload.optimizer)
    vg = fgrad.value_and_grad(loss_fn)

    def step(params, opt_state, x, y):
        loss, grads = vg(params, x, y)
        params, opt_state = opt_update(params, grads, opt_state)
        return params, opt_state, loss

    jitted = fgrad.jit(step) if mode == "jit" else None

    def init():
        params = {k: fnp.asarray(v) for k, v in params0.items()}
        return params, opt_init(params)

    x, y = (fnp.asarray(a) for a in data)
    return {
        "init": init,
        "step": jitted if jitted is not None else step,
        "x": x,
        "y": y,
        "to_float": lambda loss: float(np.asarray(loss)),
        "sync": lambda out: None,
        "jitted": jitted,
    }
