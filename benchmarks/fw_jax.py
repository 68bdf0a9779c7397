"""JAX columns: the same models in ``jax.numpy``/``jax.lax``, eager and under ``jax.jit``.

The optimizer is optax (``sgd``/``adam``) when installed, else the same update in jnp.
"""

from __future__ import annotations

import numpy as np

from benchmarks.workloads import ADAM, LSTM_HIDDEN, LSTM_STEPS, SGD_LR, lstm_uses_scan


def build(workload, params0: dict, data, mode: str):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def relu(x):
        return jnp.maximum(x, 0.0)

    def softmax_ce(logits, y):
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.sum(logits * y, axis=1))

    def xor_loss(p, x, y):
        h = jnp.tanh(x @ p["l1_w"] + p["l1_b"])
        out = jax.nn.sigmoid(h @ p["l2_w"] + p["l2_b"])
        return jnp.mean((out - y) ** 2)

    def mlp_loss(p, x, y):
        h = relu(x @ p["l1_w"] + p["l1_b"])
        h = relu(h @ p["l2_w"] + p["l2_b"])
        return softmax_ce(h @ p["l3_w"] + p["l3_b"], y)

    def conv(x, w, b):
        y = lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return relu(y + b)

    def cnn_loss(p, x, y):
        h = conv(x, p["c1_w"], p["c1_b"])
        h = conv(h, p["c2_w"], p["c2_b"])
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = h.reshape(h.shape[0], -1)
        h = relu(h @ p["d1_w"] + p["d1_b"])
        return softmax_ce(h @ p["d2_w"] + p["d2_b"], y)

    def lstm_cell(p, h, c, xw_t):
        hid = LSTM_HIDDEN
        z = xw_t + h @ p["wh"] + p["b"]
        i = jax.nn.sigmoid(z[:, :hid])
        f = jax.nn.sigmoid(z[:, hid : 2 * hid])
        g = jnp.tanh(z[:, 2 * hid : 3 * hid])
        o = jax.nn.sigmoid(z[:, 3 * hid :])
        c = f * c + i * g
        return o * jnp.tanh(c), c

    def lstm_loss(p, x, y):
        n, hid = x.shape[0], LSTM_HIDDEN
        xw = (x.reshape(n * LSTM_STEPS, -1) @ p["wx"]).reshape(n, LSTM_STEPS, 4 * hid)
        h = jnp.zeros((n, hid), jnp.float32)
        c = jnp.zeros((n, hid), jnp.float32)
        if lstm_uses_scan():

            def body(carry, xw_t):
                return lstm_cell(p, *carry, xw_t), None

            (h, c), _ = lax.scan(body, (h, c), jnp.swapaxes(xw, 0, 1))
        else:  # unrolled, like the fgrad row
            for t in range(LSTM_STEPS):
                h, c = lstm_cell(p, h, c, xw[:, t])
        return jnp.mean((h @ p["p_w"] + p["p_b"] - y) ** 2)

    loss_fn = {"xor": xor_loss, "mlp": mlp_loss, "cnn": cnn_loss, "lstm": lstm_loss}[workload.name]
    opt = _optax(workload.optimizer)
    vg = jax.value_and_grad(loss_fn)

    def step(params, opt_state, x, y):
        loss, grads = vg(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
        return params, opt_state, loss

    jitted = jax.jit(step) if mode == "jit" else None

    def init():
        params = {k: jnp.asarray(v) for k, v in params0.items()}
        return params, opt.init(params)

    x, y = (jnp.asarray(a) for a in data)
    return {
        "init": init,
        "step": jitted if jitted is not None else step,
        "x": x,
        "y": y,
        "to_float": lambda loss: float(np.asarray(loss)),
        "sync": lambda out: jax.block_until_ready(out),
        "jitted": jitted,
    }


class _Opt:
    def __init__(self, init, update):
        self.init, self.update = init, update


def _optax(kind: str):
    try:
        import optax
    except ImportError:
        return _jnp_optimizer(kind)
    if kind == "sgd":
        return optax.sgd(SGD_LR)
    return optax.adam(ADAM["lr"], b1=ADAM["b1"], b2=ADAM["b2"], eps=ADAM["eps"])


def _jnp_optimizer(kind: str):
    import jax
    import jax.numpy as jnp

    tm = jax.tree_util.tree_map
    if kind == "sgd":
        return _Opt(lambda p: (), lambda g, s, p=None: (tm(lambda x: -SGD_LR * x, g), s))
    lr, b1, b2, eps = ADAM["lr"], ADAM["b1"], ADAM["b2"], ADAM["eps"]

    def init(params):
        return (jnp.zeros((), jnp.float32), tm(jnp.zeros_like, params), tm(jnp.zeros_like, params))

    def update(grads, state, params=None):
        count, mu, nu = state
        count = count + 1.0
        mu = tm(lambda m, g: b1 * m + (1 - b1) * g, mu, grads)
        nu = tm(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grads)
        bc1, bc2 = 1 - b1**count, 1 - b2**count
        upd = tm(lambda m, v: -lr * (m / bc1) / (jnp.sqrt(v / bc2) + eps), mu, nu)
        return upd, (count, mu, nu)

    return _Opt(init, update)


def optimizer_source() -> str:
    try:
        import optax
    except ImportError:
        return "hand-written in jnp (optax not installed)"
    return f"optax {optax.__version__}"
