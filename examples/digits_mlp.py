"""A multilayer perceptron on the 8x8 digits, trained by minibatch gradient descent.

The digits bundled with scikit-learn are split 60/20/20 into train, validation and
test sets (stratified), standardised with the training set's statistics, and fed to
an MLP (64 -> 128 -> 64 -> 10, ReLU) trained on the softmax cross-entropy. Flags switch
on the course's tools one at a time: the optimizer (sgd, momentum, nesterov, adagrad,
rmsprop, adam), a learning-rate schedule, L1/L2 weight penalties, dropout, batch
normalisation, the initialisation scheme and early stopping on validation accuracy.
--compare trains one model per optimizer and plots their validation curves together.

Run:  python examples/digits_mlp.py [--optimizer adam] [--schedule cosine] [--l2 1e-4]
          [--dropout 0.2] [--batchnorm] [--init he_normal] [--early-stopping 5]
      python examples/digits_mlp.py --compare
Prints validation and test accuracy (about 97% with the defaults) and saves
<out>/digits_mlp.png (or digits_mlp_compare.png).
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import data, nn, optim, random
from fgrad.examples import common

# Learning rates that work for each optimizer on this problem (batch 32).
DEFAULT_LR = {
    "sgd": 0.1,
    "momentum": 0.02,
    "nesterov": 0.02,
    "adagrad": 0.05,
    "rmsprop": 1e-3,
    "adam": 1e-3,
}
SCHEDULES = ("constant", "exponential", "step", "cosine", "warmup-cosine")
INITS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "normal",
)


def load_splits(key) -> dict:
    """Train/validation/test arrays: flattened images, standardised on train."""
    images, labels = data.load_digits()
    x = images.reshape(len(images), -1)
    k1, k2 = random.split(key)
    (x_rest, y_rest), (x_test, y_test) = data.train_val_split(
        (x, labels), 0.2, key=k1, stratify=labels
    )
    (x_train, y_train), (x_val, y_val) = data.train_val_split(
        (x_rest, y_rest), 0.25, key=k2, stratify=y_rest
    )
    scaler = data.Standardizer.fit(x_train)  # statistics of the training set only
    return {
        "train": (scaler(x_train), y_train),
        "val": (scaler(x_val), y_val),
        "test": (scaler(x_test), y_test),
    }


def make_model(args) -> nn.Sequential:
    w_init = getattr(nn.initializers, args.init)()
    layers = []
    for width in args.hidden:
        layers.append(nn.Dense(width, w_init=w_init, use_bias=not args.batchnorm))
        if args.batchnorm:  # normalise the pre-activations (Ioffe & Szegedy, 2015)
            # momentum 0.9, not Keras' 0.99: a few hundred steps must suffice for the running
            # statistics used at evaluation to forget their initial values.
            layers.append(nn.BatchNorm(momentum=0.9))
        layers.append(nn.relu)
        if args.dropout > 0:
            layers.append(nn.Dropout(args.dropout))
    layers.append(nn.Dense(10))
    return nn.Sequential(layers)


def make_optimizer(args, total_steps: int) -> optim.GradientTransformation:
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    schedule = {
        "constant": lambda: lr,
        "exponential": lambda: optim.exponential_decay(lr, total_steps, decay_rate=0.1),
        "step": lambda: optim.piecewise_constant_schedule(
            lr, {total_steps // 2: 0.1, 3 * total_steps // 4: 0.1}
        ),
        "cosine": lambda: optim.cosine_decay_schedule(lr, total_steps),
        "warmup-cosine": lambda: optim.warmup_cosine_decay_schedule(
            0.0, lr, max(total_steps // 20, 1), total_steps
        ),
    }[args.schedule]()
    return {
        "sgd": lambda: optim.sgd(schedule),
        "momentum": lambda: optim.sgd(schedule, momentum=0.9),
        "nesterov": lambda: optim.sgd(schedule, momentum=0.9, nesterov=True),
        "adagrad": lambda: optim.adagrad(schedule),
        "rmsprop": lambda: optim.rmsprop(schedule),
        "adam": lambda: optim.adam(schedule),
    }[args.optimizer]()


def train(args, splits: dict, key, label: str = "digits_mlp") -> dict:
    """Train one model as ``args`` say; returns its history and final accuracies."""
    init_key, order_key, dropout_key = random.split(key, 3)
    x_train, y_train = splits["train"]
    steps_per_epoch = data.num_batches(len(x_train), args.batch_size, drop_last=True)
    model = make_model(args)
    params, state = model.init(init_key, (1, x_train.shape[1]))
    opt = make_optimizer(args, args.epochs * steps_per_epoch)
    opt_state = opt.init(params)

    def loss_fn(params, state, xb, yb, key):
        logits, state = model.apply(params, state, xb, key=key, train=True)
        loss = nn.softmax_cross_entropy_with_integer_labels(logits, yb)
        # Penalties on the weights only (not biases or BatchNorm scales).
        if args.l1 > 0:
            loss = loss + args.l1 * nn.l1_penalty(params, weights_only=True)
        if args.l2 > 0:
            loss = loss + args.l2 * nn.l2_penalty(params, weights_only=True)
        return loss, state

    @fgrad.jit
    def train_step(params, opt_state, state, xb, yb, key):
        (loss, state), grads = fgrad.value_and_grad(loss_fn, has_aux=True)(
            params, state, xb, yb, key
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, state, loss

    @fgrad.jit
    def evaluate(params, state, x, y):
        logits, _ = model.apply(params, state, x)  # eval mode: running BN stats, no dropout
        loss = nn.softmax_cross_entropy_with_integer_labels(logits, y)
        return loss, fnp.mean(fnp.argmax(logits, axis=-1) == y)

    stopper = data.EarlyStopping(args.early_stopping, mode="max") if args.early_stopping else None
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    step = 0
    with common.Progress(args.epochs, label) as bar:
        for epoch in range(args.epochs):
            losses = []
            for xb, yb in data.batches(
                (x_train, y_train),
                args.batch_size,
                key=random.fold_in(order_key, epoch),
                drop_last=True,
            ):
                params, opt_state, state, loss = train_step(
                    params, opt_state, state, xb, yb, random.fold_in(dropout_key, step)
                )
                losses.append(float(loss))
                step += 1
            val_loss, val_acc = evaluate(params, state, *splits["val"])
            history["train_loss"].append(float(np.mean(losses)))
            history["val_loss"].append(float(val_loss))
            history["val_acc"].append(float(val_acc))
            bar.update(loss=history["train_loss"][-1], val_acc=history["val_acc"][-1])
            if stopper is not None and stopper.update(val_acc, (params, state)):
                print(
                    f"early stopping after epoch {epoch + 1}: best val accuracy "
                    f"{stopper.best:.2%} at epoch {stopper.best_epoch + 1}"
                )
                break
    if stopper is not None and stopper.best_params is not None:
        params, state = stopper.best_params  # restore the best epoch's model
    val_loss, val_acc = evaluate(params, state, *splits["val"])
    _, test_acc = evaluate(params, state, *splits["test"])
    return {
        "history": history,
        "val_accuracy": float(val_acc),
        "test_accuracy": float(test_acc),
        "epochs_run": len(history["val_acc"]),
        "params": params,
    }


def build_parser() -> argparse.ArgumentParser:
    p = common.parser(__doc__, __file__, epochs=20, batch_size=32)
    p.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="sgd")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: per optimizer)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 64], help="hidden widths")
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty strength on weights")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty strength on weights")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout rate after each hidden")
    p.add_argument("--batchnorm", action="store_true", help="BatchNorm before each ReLU")
    p.add_argument("--init", choices=INITS, default="glorot_uniform", help="weight init")
    p.add_argument(
        "--early-stopping",
        type=int,
        default=0,
        metavar="PATIENCE",
        help="stop when val accuracy has not improved for PATIENCE epochs (0: off)",
    )
    p.add_argument("--compare", action="store_true", help="train one model per optimizer")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    timer = common.Timer()
    data_key, train_key = random.split(random.key(args.seed))
    splits = load_splits(data_key)
    plt = common.pyplot(args)

    with common.single_threaded_blas():
        if args.compare:
            results = {}
            for name in DEFAULT_LR:
                run_args = copy.copy(args)
                run_args.optimizer, run_args.lr = name, None
                results[name] = train(run_args, splits, train_key, label=name)
            print(f"{'optimizer':<10} {'lr':>7} {'val acc':>8} {'test acc':>9}")
            for name, r in results.items():
                print(
                    f"{name:<10} {DEFAULT_LR[name]:>7g} {r['val_accuracy']:>8.2%} "
                    f"{r['test_accuracy']:>9.2%}"
                )
            metrics = {f"{n}_val_accuracy": r["val_accuracy"] for n, r in results.items()}
            metrics["seconds"] = timer()
            if plt is not None:
                fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
                for name, r in results.items():
                    epochs = np.arange(1, len(r["history"]["train_loss"]) + 1)
                    ax1.semilogy(epochs, r["history"]["train_loss"], label=name)
                    ax2.plot(epochs, r["history"]["val_acc"], label=name)
                ax1.set_title("training loss")
                ax2.set_title("validation accuracy")
                ax2.set_ylim(0.8, 1.0)
                for ax in (ax1, ax2):
                    ax.set_xlabel("epoch")
                    ax.legend()
                metrics["plot"] = common.save_figure(fig, args.out, "digits_mlp_compare")
            return metrics

        r = train(args, splits, train_key)

    print(
        f"validation accuracy {r['val_accuracy']:.2%}, test accuracy {r['test_accuracy']:.2%} "
        f"({args.optimizer}, {r['epochs_run']} epochs)"
    )
    metrics = {
        "val_accuracy": r["val_accuracy"],
        "test_accuracy": r["test_accuracy"],
        "epochs_run": r["epochs_run"],
        "seconds": timer(),
    }
    if plt is not None:
        h = r["history"]
        epochs = np.arange(1, len(h["train_loss"]) + 1)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        ax1.plot(epochs, h["train_loss"], label="train")
        ax1.plot(epochs, h["val_loss"], label="validation")
        ax1.set_title("cross-entropy")
        ax2.plot(epochs, h["val_acc"], color="C1")
        ax2.set_title("validation accuracy")
        for ax in (ax1, ax2):
            ax.set_xlabel("epoch")
        ax1.legend()
        metrics["plot"] = common.save_figure(fig, args.out, "digits_mlp")
    return metrics


if __name__ == "__main__":
    main()
