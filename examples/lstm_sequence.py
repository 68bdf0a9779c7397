"""The adding problem: an LSTM learns it; an MLP on the same inputs cannot.

Each input is a sequence of --length steps with two features: a random value in
[0, 1) and a marker that is 1 at exactly two steps (one in each half) and 0 elsewhere.
The target is the sum of the two marked values (Hochreiter & Schmidhuber, 1997).
Predicting the mean, 1.0, scores an MSE of 1/6 = 0.167: that is the bar.

Both models see the same 1000 training sequences. The LSTM (32 units, then a Dense
output) applies one cell at every step, so it can learn the rule "add the value when
the marker is on" once and reuse it along the sequence: its error on fresh test
sequences falls far below the bar. The MLP (the flattened sequence -> 128 -> 128 -> 1)
must learn a separate weight for every position; it fits its training set but does
not generalise: its test error stays near the bar.

Run:  python examples/lstm_sequence.py [--epochs 50] [--length 30] [--train-size 1000]
Prints both models' test MSE against the 0.167 baseline and saves
<out>/lstm_sequence.png (train and test error per epoch).
"""

from __future__ import annotations

import numpy as np

import fgrad
from fgrad import data, nn, optim, random
from fgrad.examples import common

BASELINE_MSE = 1.0 / 6.0  # variance of the sum of two U(0, 1) values


def adding_problem(key, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences (n, length, 2) of (value, marker) and their targets (n,)."""
    k_values, k_first, k_second = random.split(key, 3)
    values = np.asarray(random.uniform(k_values, (n, length)))
    half = length // 2
    first = np.asarray(random.randint(k_first, (n,), 0, half))
    second = np.asarray(random.randint(k_second, (n,), half, length))
    markers = np.zeros((n, length), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    return x, (values * markers).sum(axis=1).astype(np.float32)


def train(name, model, splits, args, key) -> dict:
    init_key, order_key = random.split(key)
    x_train, y_train = splits["train"]
    params, _ = model.init(init_key, (1, *x_train.shape[1:]))
    opt = optim.adam(args.lr)
    opt_state = opt.init(params)

    def loss_fn(params, x, y):
        prediction, _ = model.apply(params, {}, x)
        return nn.mse(prediction[:, 0], y)

    @fgrad.jit
    def train_step(params, opt_state, xb, yb):
        loss, grads = fgrad.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, loss

    evaluate = fgrad.jit(loss_fn)
    history = {"train": [], "test": []}
    with common.Progress(args.epochs, name) as bar:
        for epoch in range(args.epochs):
            losses = []
            for xb, yb in data.batches(
                (x_train, y_train),
                args.batch_size,
                key=random.fold_in(order_key, epoch),
                drop_last=True,
            ):
                params, opt_state, loss = train_step(params, opt_state, xb, yb)
                losses.append(float(loss))
            history["train"].append(float(np.mean(losses)))  # mean over the epoch's batches
            history["test"].append(float(evaluate(params, *splits["test"])))
            bar.update(train_mse=history["train"][-1], test_mse=history["test"][-1])
    return history


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, epochs=50, batch_size=50, lr=1e-2)
    p.add_argument("--length", type=int, default=30, help="time steps per sequence")
    p.add_argument("--train-size", type=int, default=1000, help="training sequences")
    p.add_argument("--units", type=int, default=32, help="LSTM units")
    args = p.parse_args(argv)
    timer = common.Timer()
    k_train, k_test, k_lstm, k_mlp = random.split(random.key(args.seed), 4)
    splits = {
        "train": adding_problem(k_train, args.train_size, args.length),
        "test": adding_problem(k_test, 1000, args.length),
    }
    lstm = nn.Sequential([nn.LSTM(args.units, return_sequences=False), nn.Dense(1)])
    mlp = nn.Sequential([nn.Flatten(), nn.Dense(128), nn.relu, nn.Dense(128), nn.relu, nn.Dense(1)])
    with common.single_threaded_blas():
        h_lstm = train("LSTM", lstm, splits, args, k_lstm)
        h_mlp = train("MLP", mlp, splits, args, k_mlp)

    for name, h in (("LSTM", h_lstm), ("MLP", h_mlp)):
        verdict = "solved" if h["test"][-1] < 0.1 * BASELINE_MSE else "not solved"
        print(
            f"{name:>4}: test MSE {h['test'][-1]:.4f} (train {h['train'][-1]:.4f}), "
            f"baseline {BASELINE_MSE:.3f}: {verdict}"
        )
    metrics = {
        "lstm_test_mse": h_lstm["test"][-1],
        "lstm_train_mse": h_lstm["train"][-1],
        "mlp_test_mse": h_mlp["test"][-1],
        "mlp_train_mse": h_mlp["train"][-1],
        "baseline_mse": BASELINE_MSE,
        "seconds": timer(),
    }

    plt = common.pyplot(args)
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        epochs = np.arange(1, args.epochs + 1)
        for name, h, color in (("LSTM", h_lstm, "C0"), ("MLP", h_mlp, "C1")):
            ax.semilogy(epochs, h["test"], color=color, label=f"{name}, test")
            ax.semilogy(epochs, h["train"], "--", color=color, alpha=0.6, label=f"{name}, train")
        ax.axhline(BASELINE_MSE, color="gray", linestyle=":", label="predict 1.0 (baseline)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("MSE")
        ax.set_title(f"adding problem, {args.length} steps, {args.train_size} training sequences")
        ax.legend(fontsize=8)
        metrics["plot"] = common.save_figure(fig, args.out, "lstm_sequence")
    return metrics


if __name__ == "__main__":
    main()
