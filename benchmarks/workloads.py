"""The four workloads: sizes, hyperparameters, and their float32 parameters and data.

Parameters and data are drawn here, once, with NumPy from fixed seeds, and every
framework converts these same arrays; so all frameworks start from identical float32
parameters and train on an identical batch. Parameters are a flat dict of named arrays
in the layout fgrad and JAX use (dense kernels ``(in, out)``, conv kernels HWIO, images
NHWC); a framework with another layout converts them once, outside the timed loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

SEED = 0
#: Steps run from the initial parameters to compare the losses across frameworks.
CHECK_STEPS = 10
#: Adam hyperparameters (optax's defaults, lr 1e-3).
ADAM = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
SGD_LR = 0.1


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    optimizer: str  # "sgd" or "adam"
    batch: int


WORKLOADS: dict[str, Workload] = {
    "xor": Workload("xor", "MLP 2-8-1 tanh/sigmoid, MSE, batch 4, SGD lr 0.1", "sgd", 4),
    "mlp": Workload(
        "mlp", "MLP 784-512-512-10 ReLU, softmax cross-entropy, batch 128, Adam", "adam", 128
    ),
    "cnn": Workload(
        "cnn",
        "conv3x3 1->16 relu, conv3x3 16->32 relu (SAME), maxpool 2, dense 128 relu, "
        "dense 10, softmax CE, 28x28x1, batch 64, Adam",
        "adam",
        64,
    ),
    "lstm": Workload(
        "lstm",
        "LSTM input 32, hidden 128, 32 steps, batch 32, MSE on a 128->1 projection of "
        "the final hidden state, Adam",
        "adam",
        32,
    ),
}

LSTM_HIDDEN, LSTM_INPUT, LSTM_STEPS = 128, 32, 32
#: Set to "1" (``run --lstm-scan``) to run the fgrad and JAX LSTMs through ``lax.scan``
#: instead of unrolling the 32 steps; PyTorch and autograd always loop in Python.
LSTM_SCAN_ENV = "BENCH_LSTM_SCAN"


def lstm_uses_scan() -> bool:
    return os.environ.get(LSTM_SCAN_ENV) == "1"


def _glorot(rng: np.random.Generator, shape, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _dense(rng, n_in: int, n_out: int, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}w": _glorot(rng, (n_in, n_out), n_in, n_out),
        f"{prefix}b": np.zeros(n_out, np.float32),
    }


def init_params(name: str) -> dict[str, np.ndarray]:
    """The workload's initial float32 parameters (same for every framework)."""
    rng = np.random.default_rng(SEED)
    if name == "xor":
        return {**_dense(rng, 2, 8, "l1_"), **_dense(rng, 8, 1, "l2_")}
    if name == "mlp":
        return {
            **_dense(rng, 784, 512, "l1_"),
            **_dense(rng, 512, 512, "l2_"),
            **_dense(rng, 512, 10, "l3_"),
        }
    if name == "cnn":
        return {
            "c1_w": _glorot(rng, (3, 3, 1, 16), 9 * 1, 9 * 16),
            "c1_b": np.zeros(16, np.float32),
            "c2_w": _glorot(rng, (3, 3, 16, 32), 9 * 16, 9 * 32),
            "c2_b": np.zeros(32, np.float32),
            **_dense(rng, 14 * 14 * 32, 128, "d1_"),
            **_dense(rng, 128, 10, "d2_"),
        }
    if name == "lstm":
        h, i = LSTM_HIDDEN, LSTM_INPUT
        b = np.zeros(4 * h, np.float32)
        b[h : 2 * h] = 1.0  # forget-gate bias 1 (gate order i, f, g, o)
        return {
            "wx": _glorot(rng, (i, 4 * h), i, 4 * h),
            "wh": _glorot(rng, (h, 4 * h), h, 4 * h),
            "b": b,
            **_dense(rng, h, 1, "p_"),
        }
    raise KeyError(name)


def _one_hot(rng, n: int, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[rng.integers(0, k, size=n)]


def make_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The workload's fixed float32 batch ``(x, y)``; classification targets are one-hot."""
    rng = np.random.default_rng(SEED + 1)
    if name == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        y = np.array([[0], [1], [1], [0]], np.float32)
        return x, y
    if name == "mlp":
        return rng.standard_normal((128, 784), dtype=np.float32), _one_hot(rng, 128, 10)
    if name == "cnn":
        x = rng.random((64, 28, 28, 1), dtype=np.float32)
        return x, _one_hot(rng, 64, 10)
    if name == "lstm":
        x = rng.standard_normal((32, LSTM_STEPS, LSTM_INPUT), dtype=np.float32)
        return x, rng.standard_normal((32, 1), dtype=np.float32)
    raise KeyError(name)


def cnn_dense_rows_nchw(w: np.ndarray) -> np.ndarray:
    """Reorder the first dense kernel's rows from NHWC flattening to NCHW flattening."""
    return np.ascontiguousarray(
        w.reshape(14, 14, 32, -1).transpose(2, 0, 1, 3).reshape(14 * 14 * 32, -1)
    )
