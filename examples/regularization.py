"""L1 drives weights to exactly zero; L2 only shrinks them.

Softmax regression (64 pixels -> 10 classes) on the standardised digits, trained by
full-batch gradient descent four ways: no penalty, an L2 penalty lam * sum w^2, and an
L1 penalty lam * sum |w| handled two ways. The L2 gradient 2 lam w fades as w shrinks,
so weights get small but never reach zero. The L1 pull lam * sign(w) does not fade:
with the *proximal* step (ISTA: after the gradient step, soft-threshold each weight,
w <- sign(w) max(|w| - lr lam, 0)) every weight whose data gradient is weaker than lam
lands on exactly 0 and stays there, a sparse model. Plain subgradient descent on
|w| only jitters around zero (|w| ~ lr lam), so it reaches few exact zeros.

Run:  python examples/regularization.py [--steps 300] [--lr 0.5] [--l1 0.005] [--l2 0.005]
Prints, for each run, the count of exactly-zero weights (of 640), the mean |w| and the
test accuracy; saves <out>/regularization.png (each class's weights as an 8x8 image).
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import data, nn, random
from fgrad.examples import common


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, lr=0.5)
    p.add_argument("--steps", type=int, default=300, help="full-batch gradient steps")
    p.add_argument("--l1", type=float, default=0.005, help="L1 strength")
    p.add_argument("--l2", type=float, default=0.005, help="L2 strength")
    args = p.parse_args(argv)
    timer = common.Timer()
    data_key, init_key = random.split(random.key(args.seed))

    images, labels = data.load_digits()
    x = images.reshape(len(images), -1)
    (x_train, y_train), (x_test, y_test) = data.train_val_split(
        (x, labels), 0.2, key=data_key, stratify=labels
    )
    scaler = data.Standardizer.fit(x_train)
    x_train, x_test = scaler(x_train), scaler(x_test)
    lr = args.lr

    def loss_fn(params, l1, l2):
        logits = x_train @ params["w"] + params["b"]
        loss = nn.softmax_cross_entropy_with_integer_labels(logits, y_train)
        return loss + l1 * fnp.sum(fnp.abs(params["w"])) + l2 * fnp.sum(params["w"] ** 2)

    @fgrad.jit
    def step(params, l1, l2, prox):
        """One gradient step on loss + l1 |w| + l2 w^2, then soft-thresholding by
        lr * prox (the proximal step of prox * |w|; prox = 0 leaves w unchanged)."""
        loss, grads = fgrad.value_and_grad(loss_fn)(params, l1, l2)
        w = params["w"] - lr * grads["w"]
        w = fnp.sign(w) * fnp.maximum(fnp.abs(w) - lr * prox, 0.0)
        return {"w": w, "b": params["b"] - lr * grads["b"]}, loss

    runs = {  # (l1 in the loss's gradient, l2, l1 as a proximal step)
        "none": (0.0, 0.0, 0.0),
        "L2": (0.0, args.l2, 0.0),
        "L1 subgradient": (args.l1, 0.0, 0.0),
        "L1 proximal": (0.0, 0.0, args.l1),
    }
    init = {
        "w": nn.initializers.normal(stddev=0.01)(init_key, (64, 10)),
        "b": fnp.zeros(10),
    }
    results = {}
    with (
        common.single_threaded_blas(),
        common.Progress(len(runs) * args.steps, "regularization", unit="step") as bar,
    ):
        for name, (l1, l2, prox) in runs.items():
            params = init
            for _ in range(args.steps):
                params, loss = step(params, l1, l2, prox)
                bar.update(run=name, loss=float(loss))
            w = np.asarray(params["w"])
            logits = x_test @ w + np.asarray(params["b"])
            results[name] = {
                "w": w,
                "zeros": int(np.sum(w == 0.0)),
                "near_zero": int(np.sum(np.abs(w) < 1e-3)),
                "mean_abs": float(np.mean(np.abs(w))),
                "accuracy": float(np.mean(np.argmax(logits, axis=1) == y_test)),
            }

    print(f"{'penalty':<15} {'exact zeros':>11} {'|w|<1e-3':>9} {'mean |w|':>9} {'test acc':>9}")
    for name, r in results.items():
        print(
            f"{name:<15} {r['zeros']:>7} /{r['w'].size} {r['near_zero']:>9} "
            f"{r['mean_abs']:>9.4f} {r['accuracy']:>9.2%}"
        )
    metrics = {"seconds": timer()}
    for key, name in (
        ("none", "none"),
        ("l2", "L2"),
        ("l1_sub", "L1 subgradient"),
        ("l1", "L1 proximal"),
    ):
        metrics[f"zeros_{key}"] = results[name]["zeros"]
        metrics[f"mean_abs_{key}"] = results[name]["mean_abs"]
        metrics[f"accuracy_{key}"] = results[name]["accuracy"]

    plt = common.pyplot(args)
    if plt is not None:
        fig, axes = plt.subplots(len(results), 10, figsize=(11, 1.3 * len(results) + 0.4))
        cmap = plt.get_cmap("bwr").with_extremes(bad="gold")  # masked exact zeros: gold
        for row, (name, r) in zip(axes, results.items()):
            scale = np.abs(r["w"]).max()
            for digit, ax in enumerate(row):
                w = np.ma.masked_equal(r["w"][:, digit].reshape(8, 8), 0.0)
                ax.imshow(w, cmap=cmap, vmin=-scale, vmax=scale)
                ax.set_xticks([])
                ax.set_yticks([])
                if digit == 0:
                    ax.set_ylabel(f"{name}\n{r['zeros']} zeros", fontsize=8)
                if row is axes[0]:
                    ax.set_title(str(digit))
        fig.suptitle("weights of each class (red > 0, blue < 0, gold: exactly 0)")
        metrics["plot"] = common.save_figure(fig, args.out, "regularization")
    return metrics


if __name__ == "__main__":
    main()
