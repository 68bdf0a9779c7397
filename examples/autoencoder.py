"""A denoising autoencoder: reconstruct clean digits from corrupted ones.

An MLP encoder squeezes each 8x8 digit (64 pixels in [0, 1]) through a 16-unit code
and a decoder maps it back to 64 pixel intensities (a sigmoid output). Training feeds
*noisy* digits (Gaussian noise of std --noise added, clipped to [0, 1]; fresh noise for
every batch) and scores the output against the *clean* digit (pixelwise binary
cross-entropy), so the net must learn what digits look like to undo the noise
(Vincent et al., 2008).

Run:  python examples/autoencoder.py [--epochs 40] [--noise 0.3] [--code 16]
Prints the test mean squared error of the noisy inputs and of the reconstructions
(the reconstruction is much closer to the clean digit) and saves <out>/autoencoder.png:
clean, noisy and reconstructed test digits.
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import data, nn, optim, random
from fgrad.examples import common


def corrupt(key, x, noise: float):
    return fnp.clip(x + noise * random.normal(key, x.shape), 0.0, 1.0)


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, epochs=40, batch_size=32, lr=2e-3)
    p.add_argument("--noise", type=float, default=0.3, help="std of the Gaussian noise")
    p.add_argument("--code", type=int, default=16, help="units in the bottleneck")
    args = p.parse_args(argv)
    timer = common.Timer()
    split_key, init_key, order_key, noise_key, test_noise_key = random.split(
        random.key(args.seed), 5
    )

    images, labels = data.load_digits()
    x = images.reshape(len(images), -1)
    (x_train, _), (x_test, _) = data.train_val_split((x, labels), 0.2, key=split_key)

    model = nn.Sequential(
        [
            nn.Dense(48), nn.relu, nn.Dense(args.code), nn.relu,  # encoder
            nn.Dense(48), nn.relu, nn.Dense(64),  # decoder (logits of the 64 pixels)
        ]
    )  # fmt: skip
    params, _ = model.init(init_key, (1, 64))
    opt = optim.adam(args.lr)
    opt_state = opt.init(params)

    def loss_fn(params, noisy, clean):
        logits, _ = model.apply(params, {}, noisy)
        return nn.binary_cross_entropy(logits, clean, from_logits=True)

    @fgrad.jit
    def train_step(params, opt_state, clean, key):
        noisy = corrupt(key, clean, args.noise)  # fresh noise every step
        loss, grads = fgrad.value_and_grad(loss_fn)(params, noisy, clean)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, loss

    @fgrad.jit
    def reconstruct(params, noisy):
        return nn.sigmoid(model.apply(params, {}, noisy)[0])

    x_test_noisy = np.asarray(corrupt(test_noise_key, x_test, args.noise))
    history = []
    step = 0
    with common.single_threaded_blas(), common.Progress(args.epochs, "autoencoder") as bar:
        for epoch in range(args.epochs):
            for (xb,) in data.batches(
                (x_train,), args.batch_size, key=random.fold_in(order_key, epoch), drop_last=True
            ):
                params, opt_state, loss = train_step(
                    params, opt_state, xb, random.fold_in(noise_key, step)
                )
                step += 1
            recon = np.asarray(reconstruct(params, x_test_noisy))
            history.append(float(np.mean((recon - x_test) ** 2)))
            bar.update(loss=float(loss), test_mse=history[-1])

    noisy_mse = float(np.mean((x_test_noisy - x_test) ** 2))
    recon_mse = history[-1]
    print(
        f"test MSE to the clean digits: noisy input {noisy_mse:.4f}, reconstruction "
        f"{recon_mse:.4f} ({noisy_mse / recon_mse:.1f}x lower)"
    )
    metrics = {
        "noisy_mse": noisy_mse,
        "reconstruction_mse": recon_mse,
        "first_epoch_mse": history[0],
        "seconds": timer(),
    }

    plt = common.pyplot(args)
    if plt is not None:
        fig, axes = plt.subplots(3, 10, figsize=(10, 3.4))
        rows = (("clean", x_test), ("noisy", x_test_noisy), ("denoised", recon))
        for row, (name, images) in zip(axes, rows):
            for i, ax in enumerate(row):
                ax.imshow(images[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            row[0].set_ylabel(name)
        fig.suptitle(f"denoising autoencoder, noise std {args.noise}: test digits")
        metrics["plot"] = common.save_figure(fig, args.out, "autoencoder")
    return metrics


if __name__ == "__main__":
    main()
