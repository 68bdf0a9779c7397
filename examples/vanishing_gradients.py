"""Vanishing gradients: a 10-layer sigmoid net vs a 10-layer ReLU net with He init.

Backpropagation multiplies the gradient by each layer's Jacobian on its way down. A
sigmoid's slope is at most 1/4, so through ten sigmoid layers (with Keras' default
Glorot init) the gradient reaching the first layers is orders of magnitude smaller
than at the top: the early layers barely learn. ReLU passes a gradient of 1 where it is
active, and He initialisation (variance 2 / fan_in; He et al., 2015) keeps the signal's
scale constant from layer to layer, so every layer gets a gradient of similar size.
Both nets (64 -> 10 x 64 units -> 10) are trained on the digits with plain SGD.

Run:  python examples/vanishing_gradients.py [--epochs 10] [--lr 0.05] [--depth 10]
Prints the per-layer gradient norms at initialisation and after training, the
first/last layer ratio and the validation accuracy of both nets, and saves
<out>/vanishing_gradients.png.
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import data, nn, optim, random
from fgrad.examples import common


def make_model(activation, w_init, depth: int, width: int) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        layers += [nn.Dense(width, w_init=w_init), activation]
    return nn.Sequential([*layers, nn.Dense(10)])


def dense_names(params: dict) -> list[str]:
    """The Dense layers' names, input side first (``Dense_0``, ``Dense_2``, ...)."""
    return sorted(params, key=lambda name: int(name.rsplit("_", 1)[1]))


def run(name, model, splits, args, key) -> dict:
    init_key, order_key = random.split(key)
    x_train, y_train = splits["train"]
    params, _ = model.init(init_key, (1, x_train.shape[1]))
    opt = optim.sgd(args.lr)
    opt_state = opt.init(params)

    def loss_fn(params, xb, yb):
        logits, _ = model.apply(params, {}, xb)
        return nn.softmax_cross_entropy_with_integer_labels(logits, yb)

    @fgrad.jit
    def layer_grad_norms(params, xb, yb):
        """The norm of the loss gradient w.r.t. each hidden layer's weight matrix."""
        grads = fgrad.grad(loss_fn)(params, xb, yb)
        return [fnp.linalg.norm(grads[n]["w"]) for n in dense_names(params)]

    @fgrad.jit
    def train_step(params, opt_state, xb, yb):
        loss, grads = fgrad.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, loss

    @fgrad.jit
    def accuracy(params, x, y):
        return fnp.mean(fnp.argmax(model.apply(params, {}, x)[0], axis=-1) == y)

    probe = splits["train"][0][:256], splits["train"][1][:256]
    norms_init = np.array([float(v) for v in layer_grad_norms(params, *probe)])
    val_acc = []
    with common.Progress(args.epochs, name) as bar:
        for epoch in range(args.epochs):
            for xb, yb in data.batches(
                (x_train, y_train), 32, key=random.fold_in(order_key, epoch), drop_last=True
            ):
                params, opt_state, loss = train_step(params, opt_state, xb, yb)
            val_acc.append(float(accuracy(params, *splits["val"])))
            bar.update(loss=float(loss), val_acc=val_acc[-1])
    norms_trained = np.array([float(v) for v in layer_grad_norms(params, *probe)])
    return {"norms_init": norms_init, "norms_trained": norms_trained, "val_acc": val_acc}


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, epochs=10, lr=0.05)
    p.add_argument("--depth", type=int, default=10, help="hidden layers")
    p.add_argument("--width", type=int, default=64, help="units per hidden layer")
    args = p.parse_args(argv)
    timer = common.Timer()
    data_key, key = random.split(random.key(args.seed))

    images, labels = data.load_digits()
    x = images.reshape(len(images), -1)
    (x_train, y_train), (x_val, y_val) = data.train_val_split(
        (x, labels), 0.2, key=data_key, stratify=labels
    )
    scaler = data.Standardizer.fit(x_train)
    splits = {"train": (scaler(x_train), y_train), "val": (scaler(x_val), y_val)}

    nets = {
        "sigmoid": make_model(nn.sigmoid, nn.initializers.glorot_uniform(), args.depth, args.width),
        "relu_he": make_model(nn.relu, nn.initializers.he_normal(), args.depth, args.width),
    }
    with common.single_threaded_blas():
        # The same key for both nets on purpose: the same minibatch order, so only the
        # activation and initialisation differ.
        results = {name: run(name, net, splits, args, key) for name, net in nets.items()}

    s, r = results["sigmoid"], results["relu_he"]
    print("gradient norm of each layer's weights (layer 1 = input side)")
    print(
        f"{'layer':>5} | {'sigmoid init':>12} {'trained':>10} | {'relu+He init':>12} {'trained':>10}"
    )
    for i in range(len(s["norms_init"])):
        layer = "out" if i == args.depth else str(i + 1)  # the last row: the output layer
        print(
            f"{layer:>5} | {s['norms_init'][i]:>12.2e} {s['norms_trained'][i]:>10.2e} | "
            f"{r['norms_init'][i]:>12.2e} {r['norms_trained'][i]:>10.2e}"
        )
    metrics = {}
    for name, res in results.items():
        ratio = float(res["norms_init"][0] / res["norms_init"][-2])  # first vs last hidden
        metrics[f"{name}_first_last_ratio"] = ratio
        metrics[f"{name}_val_accuracy"] = res["val_acc"][-1]
        print(
            f"{name:>8}: layer 1 gets {ratio:.1e} x the gradient of layer {args.depth} at init; "
            f"validation accuracy after {args.epochs} epochs {res['val_acc'][-1]:.2%}"
        )
    metrics["seconds"] = timer()

    plt = common.pyplot(args)
    if plt is not None:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
        layers = np.arange(1, len(s["norms_init"]) + 1)
        for name, res, color in (("sigmoid", s, "C0"), ("ReLU + He", r, "C1")):
            ax1.semilogy(layers, res["norms_init"], "o-", color=color, label=f"{name}, init")
            ax1.semilogy(
                layers,
                res["norms_trained"],
                "s--",
                color=color,
                alpha=0.6,
                label=f"{name}, trained",
            )
        ax1.set_xlabel("layer (1 = input side; last = output layer)")
        ax1.set_ylabel("||dL/dW||")
        ax1.set_title("gradient norm per layer")
        ax1.legend(fontsize=8)
        epochs = np.arange(1, args.epochs + 1)
        ax2.plot(epochs, s["val_acc"], "o-", label="sigmoid")
        ax2.plot(epochs, r["val_acc"], "o-", label="ReLU + He")
        ax2.set_xlabel("epoch")
        ax2.set_title("validation accuracy")
        ax2.legend()
        metrics["plot"] = common.save_figure(fig, args.out, "vanishing_gradients")
    return metrics


if __name__ == "__main__":
    main()
