"""A generative adversarial network learns a 2-D mixture of eight Gaussians.

The data are points on eight Gaussian blobs (std --std) evenly spaced on a circle of
radius 2. A generator G maps 16-D standard normal noise to points in the plane; a
discriminator D scores points as real or generated. They train against each other
(Goodfellow et al., 2014): D descends the cross-entropy of telling real from fake,
G descends the non-saturating loss -log D(G(z)). Both are MLPs (two hidden layers of
128 ReLU units) trained with Adam (b1 = 0.5); one jitted step updates D, then G.

A known failure of GANs is mode collapse: G covers a few blobs only, or hops from
blob to blob. D's loss carries the R1 penalty (Mescheder et al., 2018), --r1 / 2 times
the squared norm of D's gradient with respect to real inputs, which damps those
oscillations; its gradient is a second derivative, which fgrad.grad takes like any
other (--r1 0 trains the plain GAN). The printed score counts the blobs that receive
generated samples, and the share of samples within 3 std of some blob.

Run:  python examples/gan_2d.py [--steps 2500] [--batch-size 256] [--lr 2e-3] [--r1 0.1]
Prints the modes covered (of 8) and the high-quality share, and saves <out>/gan_2d.png:
real data and generated samples at several points of training.
"""

from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import nn, optim, random
from fgrad.examples import common

NOISE_DIM = 16
MODES = 2.0 * np.stack(
    [np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], axis=1
).astype(np.float32)


def sample_data(key, n: int, std: float):
    k_mode, k_noise = random.split(key)
    modes = random.randint(k_mode, (n,), 0, 8)
    return fnp.asarray(MODES)[modes] + std * random.normal(k_noise, (n, 2))


def mode_coverage(samples: np.ndarray, std: float) -> tuple[int, float]:
    """Modes holding at least 1/4 of their fair share (1/8) of the high-quality
    samples, and the share of samples within 3 std of a mode."""
    distance = np.linalg.norm(samples[:, None, :] - MODES[None], axis=-1)
    nearest, close = distance.argmin(axis=1), distance.min(axis=1) < 3 * std
    counts = np.bincount(nearest[close], minlength=8)
    covered = int(np.sum(counts >= 0.25 * len(samples) / 8))
    return covered, float(close.mean())


def mlp(out: int) -> nn.Sequential:
    return nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(128), nn.relu, nn.Dense(out)])


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(__doc__, __file__, batch_size=256, lr=2e-3)
    p.add_argument("--steps", type=int, default=2500, help="training steps (D then G)")
    p.add_argument("--std", type=float, default=0.05, help="std of each Gaussian blob")
    p.add_argument("--r1", type=float, default=0.1, help="R1 gradient penalty weight (0: off)")
    args = p.parse_args(argv)
    timer = common.Timer()
    k_g, k_d, k_train, k_eval = random.split(random.key(args.seed), 4)

    generator, discriminator = mlp(2), mlp(1)
    params = {
        "G": generator.init(k_g, (1, NOISE_DIM))[0],
        "D": discriminator.init(k_d, (1, 2))[0],
    }
    opt = optim.adam(args.lr, b1=0.5)
    opt_state = {"G": opt.init(params["G"]), "D": opt.init(params["D"])}

    def generate(g_params, z):
        return generator.apply(g_params, {}, z)[0]

    def d_logit_sum(d_params, x):
        return fnp.sum(discriminator.apply(d_params, {}, x)[0])

    def d_loss(d_params, real, fake):
        real_logits = discriminator.apply(d_params, {}, real)[0]
        fake_logits = discriminator.apply(d_params, {}, fake)[0]
        # Real -> 1, fake -> 0: binary cross-entropy on logits.
        loss = nn.binary_cross_entropy(
            real_logits, fnp.ones_like(real_logits), from_logits=True
        ) + nn.binary_cross_entropy(fake_logits, fnp.zeros_like(fake_logits), from_logits=True)
        # R1 penalty (Mescheder et al., 2018): the squared norm of D's input gradient on
        # real points. A gradient inside the loss, so its gradient is a second derivative.
        input_grads = fgrad.grad(d_logit_sum, argnums=1)(d_params, real)
        return loss + 0.5 * args.r1 * fnp.mean(fnp.sum(input_grads**2, axis=1))

    def g_loss(g_params, d_params, z):
        fake_logits = discriminator.apply(d_params, {}, generate(g_params, z))[0]
        # Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))).
        return nn.binary_cross_entropy(fake_logits, fnp.ones_like(fake_logits), from_logits=True)

    @fgrad.jit
    def train_step(params, opt_state, key):
        k_real, k_z1, k_z2 = random.split(key, 3)
        real = sample_data(k_real, args.batch_size, args.std)
        fake = generate(params["G"], random.normal(k_z1, (args.batch_size, NOISE_DIM)))
        loss_d, grads_d = fgrad.value_and_grad(d_loss)(params["D"], real, fake)
        updates, opt_d = opt.update(grads_d, opt_state["D"], params["D"])
        d_params = optim.apply_updates(params["D"], updates)
        z = random.normal(k_z2, (args.batch_size, NOISE_DIM))
        loss_g, grads_g = fgrad.value_and_grad(g_loss)(params["G"], d_params, z)
        updates, opt_g = opt.update(grads_g, opt_state["G"], params["G"])
        g_params = optim.apply_updates(params["G"], updates)
        return {"G": g_params, "D": d_params}, {"G": opt_g, "D": opt_d}, loss_d, loss_g

    sample = fgrad.jit(generate)
    z_eval = random.normal(k_eval, (2000, NOISE_DIM))
    snapshot_steps = sorted({args.steps // 10, args.steps // 3, args.steps})
    snapshots = {}
    log_every = max(args.steps // 100, 1)
    with common.single_threaded_blas(), common.Progress(args.steps, "gan_2d", unit="step") as bar:
        for step in range(1, args.steps + 1):
            params, opt_state, loss_d, loss_g = train_step(
                params, opt_state, random.fold_in(k_train, step)
            )
            if step in snapshot_steps:
                snapshots[step] = np.asarray(sample(params["G"], z_eval))
            if step % log_every == 0 or step == args.steps:
                bar.update(d_loss=float(loss_d), g_loss=float(loss_g))
            else:
                bar.update()

    covered, quality = mode_coverage(snapshots[args.steps], args.std)
    print(f"modes covered: {covered} of 8; {quality:.1%} of 2000 samples within 3 std of a mode")
    metrics = {
        "modes_covered": covered,
        "high_quality_fraction": quality,
        "seconds": timer(),
    }

    plt = common.pyplot(args)
    if plt is not None:
        real = np.asarray(sample_data(random.key(1), 2000, args.std))
        panels = [("real data", real)] + [(f"step {s}", snapshots[s]) for s in snapshot_steps]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
        for ax, (title, points) in zip(axes, panels):
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
            ax.scatter(MODES[:, 0], MODES[:, 1], marker="x", color="k", s=30)
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_aspect("equal")
            ax.set_title(title)
        metrics["plot"] = common.save_figure(fig, args.out, "gan_2d")
    return metrics


if __name__ == "__main__":
    main()
