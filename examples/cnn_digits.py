"""The Keras course CNN on the 8x8 handwritten digits, trained with Adam.

Conv2D(16, 3x3) -> Conv2D(32, 3x3) -> MaxPool(2x2) -> Dropout(0.25) -> Flatten ->
Dense(128) -> Dropout(0.5) -> Dense(10), ReLU activations, softmax cross-entropy:
the model of the course's Keras notebook, on the 1797 digits bundled with scikit-learn
(reshaped to 8x8x1 images; 80% train, 20% held-out test, stratified).

Run:  python examples/cnn_digits.py [--epochs 20] [--batch-size 32] [--lr 1e-3]
Prints the test accuracy (about 97% with the defaults) and saves
<out>/cnn_digits.png: learning curves and the 16 first-layer filters.
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import data, nn, optim, random
from fgrad.examples import common


def make_model() -> nn.Sequential:
    return nn.Sequential(
        [
            nn.Conv2D(16, (3, 3)),  # 8x8x1 -> 6x6x16 ("VALID", Keras' default)
            nn.relu,
            nn.Conv2D(32, (3, 3)),  # -> 4x4x32
            nn.relu,
            nn.MaxPool2D((2, 2)),  # -> 2x2x32
            nn.Dropout(0.25),
            nn.Flatten(),  # -> 128
            nn.Dense(128),
            nn.relu,
            nn.Dropout(0.5),
            nn.Dense(10),  # logits; the softmax lives in the loss
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    args = common.parser(__doc__, __file__, epochs=20, batch_size=32, lr=1e-3).parse_args(argv)
    timer = common.Timer()
    key = random.key(args.seed)
    split_key, init_key, order_key, dropout_key = random.split(key, 4)

    images, labels = data.load_digits()
    x = images[..., None]  # NHWC: (1797, 8, 8, 1)
    (x_train, y_train), (x_test, y_test) = data.train_val_split(
        (x, labels), 0.2, key=split_key, stratify=labels
    )

    model = make_model()
    nn.summary(model, (1, 8, 8, 1))
    params, state = model.init(init_key, (1, 8, 8, 1))
    opt = optim.adam(args.lr)
    opt_state = opt.init(params)

    def loss_fn(params, state, xb, yb, key):
        logits, state = model.apply(params, state, xb, key=key, train=True)
        return nn.softmax_cross_entropy_with_integer_labels(logits, yb), state

    @fgrad.jit
    def train_step(params, opt_state, state, xb, yb, key):
        (loss, state), grads = fgrad.value_and_grad(loss_fn, has_aux=True)(
            params, state, xb, yb, key
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, state, loss

    @fgrad.jit
    def accuracy(params, state, xb, yb):
        logits, _ = model.apply(params, state, xb)  # train=False: dropout off
        return fnp.mean(fnp.argmax(logits, axis=-1) == yb)

    history = {"loss": [], "test_acc": []}
    with common.single_threaded_blas(), common.Progress(args.epochs, "cnn_digits") as bar:
        step = 0
        for epoch in range(args.epochs):
            losses = []
            for xb, yb in data.batches(
                (x_train, y_train),
                args.batch_size,
                key=random.fold_in(order_key, epoch),
                drop_last=True,  # one batch shape: one compiled train step
            ):
                params, opt_state, state, loss = train_step(
                    params, opt_state, state, xb, yb, random.fold_in(dropout_key, step)
                )
                losses.append(loss)
                step += 1
            history["loss"].append(float(np.mean([float(v) for v in losses])))
            history["test_acc"].append(float(accuracy(params, state, x_test, y_test)))
            bar.update(loss=history["loss"][-1], test_acc=history["test_acc"][-1])

    metrics = {
        "test_accuracy": history["test_acc"][-1],
        "train_loss": history["loss"][-1],
        "seconds": timer(),
    }
    print(
        f"test accuracy {metrics['test_accuracy']:.2%} on {len(y_test)} held-out digits "
        f"after {args.epochs} epochs ({metrics['seconds']:.1f} s)"
    )

    plt = common.pyplot(args)
    if plt is not None:
        fig = plt.figure(figsize=(10, 3.6))
        left, right = fig.subfigures(1, 2, width_ratios=[1, 1.2])
        ax = left.subplots()
        epochs = np.arange(1, args.epochs + 1)
        ax.plot(epochs, history["loss"], label="train loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy")
        ax2 = ax.twinx()
        ax2.plot(epochs, history["test_acc"], color="C1", label="test accuracy")
        ax2.set_ylabel("test accuracy")
        ax.legend(loc="center right", handles=ax.lines + ax2.lines)
        ax.set_title("learning curves")
        kernels = np.asarray(params["Conv2D_0"]["w"])[:, :, 0, :]  # (3, 3, 16) HWIO
        axes = right.subplots(4, 4)
        for i, a in enumerate(axes.flat):
            a.imshow(kernels[:, :, i], cmap="gray")
            a.set_axis_off()
        right.suptitle("first-layer 3x3 filters")
        metrics["plot"] = common.save_figure(fig, args.out, "cnn_digits")
    return metrics


if __name__ == "__main__":
    main()
