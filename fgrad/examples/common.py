"""Helpers shared by the example scripts: command line, progress bar, plots, timing.

Kept small on purpose, so each script still reads top to bottom as a lesson. The
optional ``examples`` extras are used when installed and skipped when not: tqdm
draws the progress bar (else one plain line per epoch), matplotlib draws the PNGs
(else no plot, and a note saying why).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "Progress",
    "Timer",
    "parser",
    "pyplot",
    "save_figure",
    "single_threaded_blas",
]


def parser(
    doc: str,
    script: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the flags every example has.

    ``--seed``, ``--out`` (where PNGs go, default ``results/``), ``--no-plot``, and
    ``--epochs`` / ``--batch-size`` / ``--lr`` when a default is given for them.
    ``doc`` is the script's docstring (its first line is the description, the rest
    the epilog); ``script`` its ``__file__``.
    """
    lines = doc.strip().splitlines()
    name = os.path.basename(script)
    p = argparse.ArgumentParser(
        prog=f"python examples/{name}",
        description=lines[0],
        epilog="\n".join(lines[1:]).strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs, help="passes over the training set")
    if batch_size is not None:
        p.add_argument("--batch-size", type=int, default=batch_size, help="minibatch size")
    if lr is not None:
        p.add_argument("--lr", type=float, default=lr, help="learning rate")
    p.add_argument("--seed", type=int, default=seed, help="PRNG seed (data split, init, order)")
    p.add_argument(
        "--out", default="results", help="directory for the PNG plots (default: results/)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the plots")
    return p


# ------------------------------------------------------------------ progress


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """One progress bar over epochs (or other units): ``update(**metrics)`` after each.

    With tqdm installed it is a live bar with the latest metrics beside it; without
    it, an update prints one line (``desc epoch 3/20  loss 0.12  val_acc 0.95``), for
    at most about 20 evenly spaced updates and always the last.

    Example:
        >>> with Progress(2, "train", use_tqdm=False) as bar:
        ...     bar.update(loss=0.5)
        ...     bar.update(loss=0.25)
        train epoch 1/2  loss 0.5
        train epoch 2/2  loss 0.25
    """

    def __init__(
        self, total: int, desc: str = "train", unit: str = "epoch", use_tqdm: bool | None = None
    ):
        self.total, self.desc, self.unit, self.count = total, desc, unit, 0
        self.every = max(1, total // 20)
        self._bar = None
        if use_tqdm is None or use_tqdm:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

    def update(self, **metrics: Any) -> None:
        """Mark one more epoch done and show ``metrics``."""
        self.count += 1
        if self._bar is not None:
            self._bar.set_postfix({k: _format(v) for k, v in metrics.items()}, refresh=False)
            self._bar.update(1)
        elif self.count % self.every == 0 or self.count == self.total:
            shown = "".join(f"  {k} {_format(v)}" for k, v in metrics.items())
            print(f"{self.desc} {self.unit} {self.count}/{self.total}{shown}", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------ plots

_warned = False


def pyplot(args: argparse.Namespace | None = None):
    """matplotlib's ``pyplot`` on the file-only Agg backend, or None.

    None when ``--no-plot`` was given or matplotlib is not installed (then a one-line
    note says how to get the plots).
    """
    global _warned
    if args is not None and getattr(args, "no_plot", False):
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")  # write files; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            print('(no plots: matplotlib is not installed; pip install -e ".[examples]")')
            _warned = True
        return None
    return plt


def save_figure(fig: Any, out_dir: str, name: str) -> str:
    """Save ``fig`` as ``<out_dir>/<name>.png``, close it, print and return the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"saved {path}")
    return path


# ------------------------------------------------------------------ speed


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one BLAS thread (restored afterwards).

    The examples' matrices are tiny (a 32-example batch through a 128-unit layer):
    starting and synchronising BLAS threads costs more than the product itself, and
    when other processes compete for the cores, spinning BLAS threads slow each small
    matmul by 10x or more. Needs threadpoolctl (installed with scikit-learn); without
    it, this does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class Timer:
    """Wall-clock seconds since construction: ``Timer()()``."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
