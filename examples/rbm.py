"""Restricted Boltzmann machines: CD-1 training, then greedy layer-wise pre-training.

An RBM has binary visible units v and hidden units h, energy E(v, h) = -b.v - c.h - v.W.h,
and free energy F(v) = -b.v - sum_j softplus(c_j + (v W)_j). Contrastive divergence
(CD-1; Hinton, 2002) follows the gradient of F(v0) - F(v1), where v1 is a one-step
reconstruction: sample h0 ~ p(h | v0), take v1 = p(v | h0), and hold v1 fixed. Here
that is literally fgrad.grad of a loss with stop_gradient(v1); it gives Hinton's update
dW = lr * (v0' p(h|v0) - v1' p(h|v1)) / batch, with the recipe of his practical guide
(N(0, 0.01) weights, visible biases log(p / (1 - p)), momentum 0.5 then 0.9, weight
decay 2e-4, reconstructions as probabilities).

Part 1 trains an RBM on the 8x8 digits (pixels in [0, 1] as probabilities): the
reconstruction error falls epoch by epoch. Part 2 stacks two RBMs (64 -> 128 -> 64,
the second trained on the first's hidden probabilities; Hinton, Osindero & Teh, 2006),
uses their weights to initialise a sigmoid net 64 -> 128 -> 64 -> 10, and fine-tunes it
by backprop on a few labelled digits (--labels); the same net from random (Glorot)
initialisation gets the same labels and the same budget.

Run:  python examples/rbm.py [--epochs 20] [--finetune-epochs 30] [--labels 200]
Prints the reconstruction error per epoch and both nets' test accuracy; saves
<out>/rbm.png (reconstruction error, the first RBM's filters, fine-tuning curves).
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import data, lax, nn, optim, random
from fgrad.examples import common


def free_energy(params, v):
    """F(v) = -b.v - sum_j softplus(c_j + (v W)_j), averaged over the batch."""
    hidden = nn.softplus(v @ params["W"] + params["c"])
    return fnp.mean(-(v @ params["b"]) - fnp.sum(hidden, axis=-1))


def hidden_probs(params, v):
    return nn.sigmoid(v @ params["W"] + params["c"])


def train_rbm(x, n_hidden: int, args, key, name: str) -> tuple[dict, list[float]]:
    """CD-1 on the rows of ``x`` (values in [0, 1]); returns params and errors per epoch."""
    init_key, order_key, sample_key = random.split(key, 3)
    p_on = np.clip(x.mean(axis=0), 1e-3, 1 - 1e-3)
    params = {
        "W": nn.initializers.normal(stddev=0.01)(init_key, (x.shape[1], n_hidden)),
        "b": fnp.asarray(np.log(p_on / (1 - p_on)).astype(np.float32)),  # visible biases
        "c": fnp.zeros(n_hidden),  # hidden biases
    }
    steps_per_epoch = data.num_batches(len(x), args.batch_size, drop_last=True)
    # Momentum 0.5 for the first 5 epochs, then 0.9; weight decay on W only.
    momentum = lambda count: fnp.where(count < 5 * steps_per_epoch, 0.5, 0.9)  # noqa: E731
    opt = optim.chain(
        optim.add_decayed_weights(2e-4, mask={"W": True, "b": False, "c": False}),
        optim.inject_hyperparams(optim.sgd)(learning_rate=args.rbm_lr, momentum=momentum),
    )
    opt_state = opt.init(params)

    def cd1_loss(params, v0, key):
        h0 = random.bernoulli(key, hidden_probs(params, v0)).astype(v0.dtype)
        v1 = nn.sigmoid(h0 @ params["W"].T + params["b"])  # reconstruction probabilities
        v1 = lax.stop_gradient(v1)  # CD: the negative sample is held fixed
        return free_energy(params, v0) - free_energy(params, v1), v1

    @fgrad.jit
    def cd1_step(params, opt_state, v0, key):
        grads, v1 = fgrad.grad(cd1_loss, has_aux=True)(params, v0, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        error = fnp.mean(fnp.sum((v0 - v1) ** 2, axis=-1))  # squared error per example
        return optim.apply_updates(params, updates), opt_state, error

    errors = []
    step = 0
    with common.Progress(args.epochs, name) as bar:
        for epoch in range(args.epochs):
            epoch_errors = []
            for (vb,) in data.batches(
                (x,), args.batch_size, key=random.fold_in(order_key, epoch), drop_last=True
            ):
                params, opt_state, error = cd1_step(
                    params, opt_state, vb, random.fold_in(sample_key, step)
                )
                epoch_errors.append(float(error))
                step += 1
            errors.append(float(np.mean(epoch_errors)))
            bar.update(reconstruction_error=errors[-1])
    return params, errors


def fine_tune(params, splits, args, key, name: str) -> list[float]:
    """Backprop through the sigmoid net from ``params``; test accuracy per epoch."""
    model = nn.Sequential([nn.Dense(128), nn.sigmoid, nn.Dense(64), nn.sigmoid, nn.Dense(10)])
    opt = optim.sgd(args.lr, momentum=0.9)
    opt_state = opt.init(params)
    x_train, y_train = splits["labelled"]

    def loss_fn(params, xb, yb):
        logits, _ = model.apply(params, {}, xb)
        return nn.softmax_cross_entropy_with_integer_labels(logits, yb)

    @fgrad.jit
    def train_step(params, opt_state, xb, yb):
        grads = fgrad.grad(loss_fn)(params, xb, yb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state

    @fgrad.jit
    def accuracy(params, x, y):
        return fnp.mean(fnp.argmax(model.apply(params, {}, x)[0], axis=-1) == y)

    history = []
    with common.Progress(args.finetune_epochs, name) as bar:
        for epoch in range(args.finetune_epochs):
            for xb, yb in data.batches(
                (x_train, y_train), 20, key=random.fold_in(key, epoch), drop_last=True
            ):
                params, opt_state = train_step(params, opt_state, xb, yb)
            history.append(float(accuracy(params, *splits["test"])))
            bar.update(test_acc=history[-1])
    return history


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, epochs=20, batch_size=20, lr=0.1)
    p.add_argument("--rbm-lr", type=float, default=0.05, help="CD-1 learning rate")
    p.add_argument("--finetune-epochs", type=int, default=30, help="backprop epochs")
    p.add_argument("--labels", type=int, default=200, help="labelled digits for fine-tuning")
    args = p.parse_args(argv)
    timer = common.Timer()
    keys = random.split(random.key(args.seed), 6)

    images, labels = data.load_digits()
    x = images.reshape(len(images), -1)
    (x_train, y_train), (x_test, y_test) = data.train_val_split(
        (x, labels), 0.2, key=keys[0], stratify=labels
    )
    # The RBMs see every training image without its label; fine-tuning sees --labels.
    (x_lab, y_lab), _ = data.train_val_split(
        (x_train, y_train), 1 - args.labels / len(x_train), key=keys[1], stratify=y_train
    )
    splits = {"labelled": (x_lab, y_lab), "test": (x_test, y_test)}

    with common.single_threaded_blas():
        rbm1, errors1 = train_rbm(x_train, 128, args, keys[2], "RBM 64-128")
        h1 = np.asarray(hidden_probs(rbm1, x_train))
        rbm2, errors2 = train_rbm(h1, 64, args, keys[3], "RBM 128-64")
        print(
            f"RBM 1 reconstruction error (squared, per digit): {errors1[0]:.3f} in epoch 1 "
            f"-> {errors1[-1]:.3f} in epoch {len(errors1)}"
        )

        model = nn.Sequential([nn.Dense(128), nn.sigmoid, nn.Dense(64), nn.sigmoid, nn.Dense(10)])
        random_init, _ = model.init(keys[4], (1, 64))
        pretrained = dict(random_init)  # the output layer keeps its random init
        pretrained["Dense_0"] = {"w": rbm1["W"], "b": rbm1["c"]}
        pretrained["Dense_2"] = {"w": rbm2["W"], "b": rbm2["c"]}
        # The same key for both on purpose: the same minibatch order for a fair comparison.
        acc_pre = fine_tune(pretrained, splits, args, keys[5], "fine-tune, pretrained")
        acc_rand = fine_tune(random_init, splits, args, keys[5], "fine-tune, random init")

    print(
        f"test accuracy after {args.finetune_epochs} epochs on {len(y_lab)} labels: "
        f"pretrained {acc_pre[-1]:.2%}, random init {acc_rand[-1]:.2%}"
    )
    metrics = {
        "rbm_error_first_epoch": errors1[0],
        "rbm_error_last_epoch": errors1[-1],
        "rbm2_error_first_epoch": errors2[0],
        "rbm2_error_last_epoch": errors2[-1],
        "pretrained_accuracy": acc_pre[-1],
        "random_init_accuracy": acc_rand[-1],
        "seconds": timer(),
    }

    plt = common.pyplot(args)
    if plt is not None:
        fig = plt.figure(figsize=(13, 3.8))
        left, middle, right = fig.subfigures(1, 3, width_ratios=[1, 1, 1])
        ax = left.subplots()
        ax.plot(range(1, len(errors1) + 1), errors1, "o-", label="RBM 64-128")
        ax.plot(range(1, len(errors2) + 1), errors2, "s-", label="RBM 128-64")
        ax.set_xlabel("epoch")
        ax.set_ylabel("squared error per example")
        ax.set_title("CD-1 reconstruction error")
        ax.legend()
        weights = np.asarray(rbm1["W"])
        for i, a in enumerate(middle.subplots(6, 8).flat):
            a.imshow(weights[:, i].reshape(8, 8), cmap="gray")
            a.set_axis_off()
        middle.suptitle("RBM 1 filters (48 of 128)")
        ax = right.subplots()
        epochs = range(1, args.finetune_epochs + 1)
        ax.plot(epochs, acc_pre, label="RBM pre-trained")
        ax.plot(epochs, acc_rand, label="random init")
        ax.set_xlabel("fine-tuning epoch")
        ax.set_title(f"test accuracy, {len(y_lab)} labels")
        ax.legend()
        metrics["plot"] = common.save_figure(fig, args.out, "rbm")
    return metrics


if __name__ == "__main__":
    main()
