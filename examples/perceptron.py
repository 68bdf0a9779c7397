"""Rosenblatt's perceptron learns a linearly separable set, but not XOR.

The perceptron rule (on a mistake, w <- w + lr * y * x and b <- b + lr * y, labels
+-1) visits the examples one at a time: here one epoch is a lax.scan over the shuffled
set, compiled with jit. On two separable clouds it stops making mistakes after a few
epochs (the perceptron convergence theorem). On XOR it never does: no line separates
the four points, so at best 3 of 4 are right. Logistic regression (gradient descent on
the cross-entropy) fails on XOR as well: its optimum is w = 0, p = 0.5 everywhere.

Run:  python examples/perceptron.py [--epochs 50] [--lr 1.0] [--points 200]
Prints the epochs to convergence and the accuracies (separable 100%; XOR at most 75%
for both linear models) and saves <out>/perceptron.png.
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import lax, nn, optim, random
from fgrad.examples import common

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([-1, 1, 1, -1], dtype=np.float32)  # labels +-1 for the perceptron


def separable_set(key, n: int, margin: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in a square labelled by the side of the line x2 = 0.5 x1 + 0.3 they
    fall on; points closer than ``margin`` to the line are redrawn, so a gap separates
    the classes (the convergence theorem bounds the mistakes by (R / margin)^2)."""
    direction = np.array([-0.5, 1.0]) / np.hypot(0.5, 1.0)
    points = []
    while len(points) < n:
        key, sub = random.split(key)
        x = np.asarray(random.uniform(sub, (n, 2), minval=-3.0, maxval=3.0))
        distance = (x - [0.0, 0.3]) @ direction
        points.extend(x[np.abs(distance) > margin])
    x = np.array(points[:n], dtype=np.float32)
    y = np.where((x - [0.0, 0.3]) @ direction > 0, 1.0, -1.0).astype(np.float32)
    return x, y


@fgrad.jit
def perceptron_epoch(w, b, x, y, lr):
    """One pass of the perceptron rule over (x, y) in order; counts the mistakes."""

    def visit(carry, example):
        w, b, mistakes = carry
        xi, yi = example[0], example[1][0]
        wrong = yi * (fnp.dot(w, xi) + b) <= 0.0  # misclassified (or on the line)
        step = fnp.where(wrong, lr * yi, 0.0)
        return (w + step * xi, b + step, mistakes + wrong.astype(fnp.int32)), None

    # y is (n, 1): each step sees a length-1 row (fgrad's compiled scan cannot yet
    # slice a 1-D input into scalars).
    (w, b, mistakes), _ = lax.scan(visit, (w, b, fnp.zeros((), fnp.int32)), (x, y[:, None]))
    return w, b, mistakes


def train_perceptron(x, y, epochs, lr, key):
    """Run the rule until an epoch makes no mistake (or ``epochs`` run out)."""
    w, b = fnp.zeros(2), fnp.zeros(())
    history = []
    with common.Progress(epochs, "perceptron") as bar:
        for epoch in range(epochs):
            order = np.asarray(random.permutation(random.fold_in(key, epoch), len(x)))
            w, b, mistakes = perceptron_epoch(w, b, x[order], y[order], lr)
            history.append(int(mistakes))
            bar.update(mistakes=history[-1])
            if history[-1] == 0:
                break
    accuracy = float(np.mean(np.sign(x @ np.asarray(w) + float(b)) == y))
    return np.asarray(w), float(b), history, accuracy


def logistic_regression_xor(steps: int, lr: float) -> tuple[float, np.ndarray, float]:
    """Full-batch gradient descent on the logistic loss for XOR (targets 0/1)."""
    params = {"w": fnp.asarray([0.3, -0.2]), "b": fnp.zeros(())}
    targets = (XOR_Y > 0).astype(np.float32)
    opt = optim.sgd(lr)
    opt_state = opt.init(params)

    def loss_fn(params):
        logits = XOR_X @ params["w"] + params["b"]
        return nn.binary_cross_entropy(logits, targets, from_logits=True)

    @fgrad.jit
    def step(params, opt_state):
        loss, grads = fgrad.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optim.apply_updates(params, updates), opt_state, loss

    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state)
    probs = np.asarray(nn.sigmoid(XOR_X @ params["w"] + params["b"]))
    accuracy = float(np.mean((probs > 0.5) == (targets > 0.5)))
    return accuracy, probs, float(loss)


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, epochs=50, lr=1.0)
    p.add_argument("--points", type=int, default=200, help="size of the separable set")
    args = p.parse_args(argv)
    timer = common.Timer()
    data_key, order_key = random.split(random.key(args.seed))

    x, y = separable_set(data_key, args.points)
    w, b, history, sep_acc = train_perceptron(x, y, args.epochs, args.lr, order_key)
    converged = history[-1] == 0
    print(
        f"separable set: {'converged' if converged else 'NOT converged'} after "
        f"{len(history)} epochs, accuracy {sep_acc:.0%}"
    )

    xw, xb, xor_history, xor_acc = train_perceptron(XOR_X, XOR_Y, args.epochs, args.lr, order_key)
    print(
        f"XOR, perceptron: still {xor_history[-1]} mistakes in epoch {len(xor_history)}, "
        f"accuracy {xor_acc:.0%} (a line gets at most 3 of 4 right)"
    )
    log_acc, log_probs, log_loss = logistic_regression_xor(steps=500, lr=1.0)
    print(
        f"XOR, logistic regression: p(y=1) = {np.round(log_probs, 3).tolist()}, loss "
        f"{log_loss:.4f} (log 2 = 0.6931): accuracy {log_acc:.0%}, no better than chance"
    )
    metrics = {
        "separable_accuracy": sep_acc,
        "separable_epochs": len(history),
        "separable_converged": converged,
        "xor_perceptron_accuracy": xor_acc,
        "xor_perceptron_mistakes_last_epoch": xor_history[-1],
        "xor_logistic_accuracy": log_acc,
        "xor_logistic_loss": log_loss,
        "seconds": timer(),
    }

    plt = common.pyplot(args)
    if plt is not None:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))

        def boundary(ax, w, b, lo, hi):
            xs = np.linspace(lo, hi, 2)
            if abs(w[1]) > 1e-9:
                ax.plot(xs, -(w[0] * xs + b) / w[1], "k--", label="w.x + b = 0")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)

        axes[0].scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=12)
        boundary(axes[0], w, b, -4, 4)
        axes[0].set_title(f"separable: {sep_acc:.0%} after {len(history)} epochs")
        axes[0].legend(loc="lower right")
        axes[1].scatter(XOR_X[:, 0], XOR_X[:, 1], c=XOR_Y, cmap="coolwarm", s=150, edgecolors="k")
        boundary(axes[1], xw, xb, -0.5, 1.5)
        axes[1].set_title(f"XOR: perceptron {xor_acc:.0%}, logistic {log_acc:.0%}")
        axes[2].plot(range(1, len(history) + 1), history, "o-", label="separable set")
        axes[2].plot(range(1, len(xor_history) + 1), xor_history, label="XOR (4 points)")
        axes[2].set_xlabel("epoch")
        axes[2].set_ylabel("mistakes in the epoch")
        axes[2].legend()
        axes[2].set_title("perceptron mistakes per epoch")
        metrics["plot"] = common.save_figure(fig, args.out, "perceptron")
    return metrics


if __name__ == "__main__":
    main()
