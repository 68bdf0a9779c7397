"""A two-layer MLP learns XOR, the function no linear model can represent.

Two inputs -> Dense(8) -> tanh -> Dense(1) -> sigmoid, trained by full-batch gradient
descent on the binary cross-entropy of the four XOR cases, with fgrad.nn, fgrad.optim,
grad and jit. Compare examples/perceptron.py, where a single layer fails.

Run:  python examples/xor_mlp.py [--epochs 2000] [--lr 0.5] [--hidden 8]
Prints the learned truth table (all four rows right) and saves <out>/xor_mlp.png:
the loss curve and the learned decision regions.
"""

from __future__ import annotations

import numpy as np

import fgrad
from fgrad import nn, optim, random
from fgrad.examples import common

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([[0], [1], [1], [0]], dtype=np.float32)


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, epochs=2000, lr=0.5)
    p.add_argument("--hidden", type=int, default=8, help="hidden units")
    args = p.parse_args(argv)
    timer = common.Timer()

    # Normal(0, 1) weights: a wide enough start that the tanh units break symmetry fast.
    init = nn.initializers.normal(stddev=1.0)
    model = nn.Sequential([nn.Dense(args.hidden, w_init=init), nn.tanh, nn.Dense(1, w_init=init)])
    params, _ = model.init(random.key(args.seed), (4, 2))
    opt = optim.sgd(args.lr)
    opt_state = opt.init(params)

    def loss_fn(params, x, y):
        logits, _ = model.apply(params, {}, x)
        return nn.binary_cross_entropy(logits, y, from_logits=True)

    @fgrad.jit
    def train_step(params, opt_state, x, y):
        loss, grads = fgrad.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, loss

    @fgrad.jit
    def predict(params, x):
        return nn.sigmoid(model.apply(params, {}, x)[0])

    losses = []
    with common.Progress(args.epochs, "xor_mlp") as bar:
        for _ in range(args.epochs):  # one epoch = one step on all four cases
            params, opt_state, loss = train_step(params, opt_state, X, Y)
            losses.append(float(loss))
            bar.update(loss=losses[-1])

    probs = np.asarray(predict(params, X)).ravel()
    predictions = (probs > 0.5).astype(int)
    print("x1 x2 | p(y=1)  prediction  target")
    for (a, b), prob, pred, t in zip(X.astype(int), probs, predictions, Y.ravel().astype(int)):
        print(f" {a}  {b} | {prob:.3f}   {pred}           {t}")
    accuracy = float(np.mean(predictions == Y.ravel()))
    print(f"truth table {'right' if accuracy == 1.0 else 'WRONG'}: accuracy {accuracy:.2f}")
    metrics = {
        "accuracy": accuracy,
        "truth_table": predictions.tolist(),
        "loss": losses[-1],
        "seconds": timer(),
    }

    plt = common.pyplot(args)
    if plt is not None:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
        ax1.semilogy(losses)
        ax1.set_xlabel("step")
        ax1.set_ylabel("cross-entropy")
        ax1.set_title("training loss")
        grid = np.linspace(-0.5, 1.5, 101, dtype=np.float32)
        gx, gy = np.meshgrid(grid, grid)
        surface = np.asarray(predict(params, np.stack([gx.ravel(), gy.ravel()], axis=1)))
        ax2.contourf(gx, gy, surface.reshape(gx.shape), levels=20, cmap="coolwarm", alpha=0.8)
        ax2.scatter(X[:, 0], X[:, 1], c=Y.ravel(), cmap="coolwarm", edgecolors="k", s=120)
        ax2.set_title("p(y=1 | x1, x2)")
        ax2.set_xlabel("x1")
        ax2.set_ylabel("x2")
        metrics["plot"] = common.save_figure(fig, args.out, "xor_mlp")
    return metrics


if __name__ == "__main__":
    main()
