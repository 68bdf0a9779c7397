"""A two-layer MLP learns XOR with fgrad.numpy, grad and jit (no other library).

Run: python examples/xor_mlp.py [--steps 2000] [--lr 0.5] [--seed 0]
Prints the loss as it trains and the learned truth table.
"""

from __future__ import annotations

import argparse

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import lax


def init_params(seed: int, hidden: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "w1": fnp.asarray(rng.normal(0.0, 1.0, (2, hidden)).astype(np.float32)),
        "b1": fnp.zeros(hidden),
        "w2": fnp.asarray(rng.normal(0.0, 1.0, (hidden, 1)).astype(np.float32)),
        "b2": fnp.zeros(1),
    }


def predict(params, x):
    h = fnp.tanh(x @ params["w1"] + params["b1"])
    return lax.logistic(h @ params["w2"] + params["b2"])


def loss_fn(params, x, y):
    p = predict(params, x)
    # Binary cross-entropy on probabilities, clipped away from log(0).
    p = fnp.clip(p, 1e-7, 1.0 - 1e-7)
    return -fnp.mean(y * fnp.log(p) + (1.0 - y) * fnp.log(1.0 - p))


@fgrad.jit
def train_step(params, x, y, lr):
    loss, grads = fgrad.value_and_grad(loss_fn)(params, x, y)
    params = fgrad.tree.map(lambda p, g: p - lr * g, params, grads)
    return params, loss


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x = fnp.asarray([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=fnp.float32)
    y = fnp.asarray([[0], [1], [1], [0]], dtype=fnp.float32)
    params = init_params(args.seed)
    for step in range(args.steps + 1):
        params, loss = train_step(params, x, y, args.lr)
        if step % max(args.steps // 5, 1) == 0:
            print(f"step {step:5d}  loss {float(loss):.5f}")
    probs = np.asarray(predict(params, x)).ravel()
    print("x1 x2 | p(y=1)  prediction")
    correct = 0
    for (a, b), p, t in zip(np.asarray(x).astype(int), probs, np.asarray(y).ravel()):
        pred = int(p > 0.5)
        correct += pred == int(t)
        print(f" {a}  {b} | {p:.3f}   {pred}")
    accuracy = correct / 4
    print(f"accuracy {accuracy:.2f}")
    return accuracy


if __name__ == "__main__":
    main()
