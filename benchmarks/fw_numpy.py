"""Hand-written NumPy column (xor, mlp): forward, backward and update written out.

Float32 throughout; parameters and optimizer moments are updated in place, as a careful
NumPy programmer would. Only xor and mlp have this column (as the issue asks).
"""

from __future__ import annotations

import numpy as np

from benchmarks.workloads import ADAM, SGD_LR

WORKLOADS = ("xor", "mlp")


def _xor_step(p, state, x, y):
    w1, b1, w2, b2 = p["l1_w"], p["l1_b"], p["l2_w"], p["l2_b"]
    h = np.tanh(x @ w1 + b1)
    o = 1.0 / (1.0 + np.exp(-(h @ w2 + b2)))
    diff = o - y
    loss = np.mean(diff * diff)
    dz2 = (2.0 / diff.size) * diff * o * (1.0 - o)
    dz1 = (dz2 @ w2.T) * (1.0 - h * h)
    w2 -= SGD_LR * (h.T @ dz2)
    b2 -= SGD_LR * dz2.sum(0)
    w1 -= SGD_LR * (x.T @ dz1)
    b1 -= SGD_LR * dz1.sum(0)
    return p, state, loss


def _mlp_grads(p, x, y):
    z1 = x @ p["l1_w"] + p["l1_b"]
    h1 = np.maximum(z1, 0.0)
    z2 = h1 @ p["l2_w"] + p["l2_b"]
    h2 = np.maximum(z2, 0.0)
    logits = h2 @ p["l3_w"] + p["l3_b"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(s[:, 0]) - np.sum(shifted * y, axis=1))
    dl = (e / s - y) * (1.0 / x.shape[0])
    dz2 = (dl @ p["l3_w"].T) * (z2 > 0)
    dz1 = (dz2 @ p["l2_w"].T) * (z1 > 0)
    grads = {
        "l3_w": h2.T @ dl,
        "l3_b": dl.sum(0),
        "l2_w": h1.T @ dz2,
        "l2_b": dz2.sum(0),
        "l1_w": x.T @ dz1,
        "l1_b": dz1.sum(0),
    }
    return loss, grads


def _adam_update(p, grads, state):
    lr, b1, b2, eps = ADAM["lr"], ADAM["b1"], ADAM["b2"], ADAM["eps"]
    state["t"] += 1
    t = state["t"]
    step_size = lr / (1.0 - b1**t)
    inv_bc2 = 1.0 / (1.0 - b2**t)
    for k, g in grads.items():
        m, v = state["mu"][k], state["nu"][k]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        denom = np.sqrt(v * inv_bc2)
        denom += eps
        p[k] -= step_size * m / denom


def _mlp_step(p, state, x, y):
    loss, grads = _mlp_grads(p, x, y)
    _adam_update(p, grads, state)
    return p, state, loss


def build(workload, params0: dict, data, mode: str):
    name = workload.name
    if name not in WORKLOADS:
        raise NotImplementedError(f"no hand-written NumPy {name}")

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
        "step": _xor_step if name == "xor" else _mlp_step,
        "x": x,
        "y": y,
        "to_float": float,
        "sync": lambda out: None,
        "jitted": None,
    }
