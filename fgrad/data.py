"""Data utilities for training loops: minibatches, splits, scaling, readers.

Everything here runs on the host with NumPy, outside any transformation: it feeds
arrays *into* jitted train steps. Datasets are pytrees of arrays that share their
leading (example) axis, e.g. a tuple ``(x, y)`` or a dict ``{"image": x, "label": y}``;
every function keeps that structure. Randomness comes from fgrad keys only, so a run
is reproduced by its seed::

    from fgrad import data, random

    x, y = data.load_digits()                       # 1797 8x8 images in [0, 1], labels
    key = random.key(0)
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split((x, y), 0.2, key=key)
    scaler = data.Standardizer.fit(x_tr)            # statistics of the training set only
    x_tr, x_val = scaler(x_tr), scaler(x_val)
    for epoch in range(10):                          # a new order every epoch
        for xb, yb in data.batches((x_tr, y_tr), 32, key=random.fold_in(key, epoch)):
            ...

Contents: ``batches`` / ``num_batches`` (shuffled minibatches), ``train_val_split``,
``Standardizer``, ``one_hot``, ``EarlyStopping``, ``read_idx`` / ``write_idx`` /
``load_mnist`` (MNIST-format IDX files, raw or gzipped) and ``load_digits`` (the 8x8
digits bundled with scikit-learn, the examples' offline default dataset).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from fgrad import random
from fgrad import tree as tree_util

__all__ = [
    "EarlyStopping",
    "Standardizer",
    "batches",
    "load_digits",
    "load_mnist",
    "num_batches",
    "one_hot",
    "read_idx",
    "train_val_split",
    "write_idx",
]


# ------------------------------------------------------------------ helpers


def _leaves(data: Any, name: str) -> tuple[list[np.ndarray], Any, int]:
    """The leaves of a dataset pytree as NumPy arrays, its treedef and its length."""
    leaves, treedef = tree_util.tree_flatten(data)
    if not leaves:
        raise ValueError(f"{name}: the dataset has no arrays")
    arrays = [np.asarray(leaf) for leaf in leaves]
    lengths = {a.shape[0] if a.ndim else None for a in arrays}
    if None in lengths:
        raise ValueError(f"{name}: every array needs a leading (example) axis; got a scalar")
    if len(lengths) != 1:
        shapes = [a.shape for a in arrays]
        raise ValueError(
            f"{name}: arrays must share their leading (example) axis, got shapes {shapes}"
        )
    return arrays, treedef, arrays[0].shape[0]


def _order(key: Any, n: int) -> np.ndarray:
    """A permutation of ``range(n)`` drawn with an fgrad key (identity if key is None)."""
    if key is None:
        return np.arange(n)
    return np.asarray(random.permutation(key, n))


def _take(arrays: list[np.ndarray], treedef: Any, idx: np.ndarray) -> Any:
    return tree_util.tree_unflatten(treedef, [a[idx] for a in arrays])


# ------------------------------------------------------------------ minibatches


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many minibatches ``batches`` yields for ``n`` examples.

    Example:
        >>> num_batches(10, 4), num_batches(10, 4, drop_last=True)
        (3, 2)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batches(
    data: Any, batch_size: int, *, key: Any = None, drop_last: bool = False
) -> Iterator[Any]:
    """Yield minibatches of a dataset, in an order drawn from ``key``.

    Pass a different key each epoch (``random.fold_in(key, epoch)``) for a new order
    every epoch; the same key gives the same order, so runs are reproducible.

    Args:
        data: a pytree of arrays sharing their leading axis (e.g. ``(x, y)``).
        batch_size: examples per batch.
        key: a PRNG key to shuffle with; ``None`` keeps the stored order.
        drop_last: drop the final, smaller batch when ``batch_size`` does not divide
            the dataset (every batch then has one shape: one jit signature). By default
            it is kept, so every example is seen each epoch.

    Yields:
        Pytrees shaped like ``data`` whose leaves are NumPy arrays of ``batch_size``
        examples (the last one possibly fewer).

    Example:
        >>> import numpy as np
        >>> from fgrad import random
        >>> x, y = np.arange(10), np.arange(10) * 10
        >>> [b[0].tolist() for b in batches((x, y), 4)]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        >>> [len(b[0]) for b in batches((x, y), 4, key=random.key(0), drop_last=True)]
        [4, 4]
        >>> xb, yb = next(batches((x, y), 4, key=random.key(0)))
        >>> bool((yb == xb * 10).all())       # rows stay aligned across arrays
        True
    """
    arrays, treedef, n = _leaves(data, "batches")
    count = num_batches(n, batch_size, drop_last)
    order = _order(key, n)
    for i in range(count):
        yield _take(arrays, treedef, order[i * batch_size : (i + 1) * batch_size])


# ------------------------------------------------------------------ splits


def train_val_split(
    data: Any, val_fraction: float = 0.2, *, key: Any, stratify: Any = None
) -> tuple[Any, Any]:
    """Split a dataset at random into a training part and a validation part.

    Args:
        data: a pytree of arrays sharing their leading axis.
        val_fraction: the share of examples held out, in ``(0, 1)``.
        key: a PRNG key (the split is reproducible from it).
        stratify: optional integer labels, one per example: each class is split in the
            same proportion, so both parts keep the class balance.

    Returns:
        ``(train, val)``, each shaped like ``data``.

    Example:
        >>> import numpy as np
        >>> from fgrad import random
        >>> x, y = np.arange(100).reshape(50, 2), np.arange(50) % 5
        >>> (x_tr, y_tr), (x_val, y_val) = train_val_split((x, y), 0.2, key=random.key(0),
        ...                                                stratify=y)
        >>> len(x_tr), len(x_val), np.bincount(y_val).tolist()
        (40, 10, [2, 2, 2, 2, 2])
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    arrays, treedef, n = _leaves(data, "train_val_split")
    if stratify is None:
        order = _order(key, n)
        n_val = int(round(n * val_fraction))
        if not 0 < n_val < n:
            raise ValueError(f"val_fraction {val_fraction} of {n} examples leaves a part empty")
        val_idx, train_idx = order[:n_val], order[n_val:]
    else:
        labels = np.asarray(stratify)
        if labels.shape != (n,):
            raise ValueError(f"stratify must hold one label per example ({n}), got {labels.shape}")
        k_order, k_val, k_train = random.split(key, 3)
        order = _order(k_order, n)
        shuffled = labels[order]
        val_parts, train_parts = [], []
        for c in np.unique(labels):
            members = order[shuffled == c]  # this class, in shuffled order
            k = int(round(len(members) * val_fraction))
            val_parts.append(members[:k])
            train_parts.append(members[k:])
        # Re-shuffle the concatenation so classes are interleaved, in a fixed order.
        val_idx = np.sort(np.concatenate(val_parts))
        train_idx = np.sort(np.concatenate(train_parts))
        if not (len(val_idx) and len(train_idx)):
            raise ValueError(
                f"val_fraction {val_fraction} of classes this small leaves a part empty"
            )
        val_idx = val_idx[_order(k_val, len(val_idx))]
        train_idx = train_idx[_order(k_train, len(train_idx))]
    return _take(arrays, treedef, train_idx), _take(arrays, treedef, val_idx)


# ------------------------------------------------------------------ scaling and labels


class Standardizer(NamedTuple):
    """Per-feature standardisation ``(x - mean) / std`` with statistics from one set.

    Fit it on the training set only and apply it to every set, so no information
    from the validation or test data leaks into training. Features that are constant
    in the training set (``std == 0``, e.g. always-blank border pixels) are only
    centred, never divided by zero.

    Example:
        >>> import numpy as np
        >>> train = np.array([[0.0, 5.0], [2.0, 5.0]])
        >>> scaler = Standardizer.fit(train)
        >>> scaler(train).tolist()
        [[-1.0, 0.0], [1.0, 0.0]]
        >>> scaler(np.array([[4.0, 6.0]])).tolist()     # statistics of train, not of this
        [[3.0, 1.0]]
        >>> scaler.inverse(scaler(train)).tolist()
        [[0.0, 5.0], [2.0, 5.0]]
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: Any, axis: int | tuple[int, ...] = 0, eps: float = 1e-8) -> Standardizer:
        """Statistics of ``x`` over ``axis`` (default: over examples, per feature)."""
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        mean = x.mean(axis=axis, keepdims=True, dtype=np.float64)
        std = x.std(axis=axis, keepdims=True, dtype=np.float64)
        std = np.where(std < eps, 1.0, std)
        return cls(mean.astype(dtype), std.astype(dtype))

    def __call__(self, x: Any) -> np.ndarray:
        """Standardise ``x`` with the fitted statistics."""
        x = np.asarray(x)
        return ((x - self.mean) / self.std).astype(self.mean.dtype, copy=False)

    def inverse(self, z: Any) -> np.ndarray:
        """Undo the standardisation: ``z * std + mean``."""
        return (np.asarray(z) * self.std + self.mean).astype(self.mean.dtype, copy=False)


def one_hot(labels: Any, num_classes: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """Integer labels as one-hot rows (host-side NumPy; ``nn.one_hot`` is the traced one).

    Args:
        labels: integer array of any shape.
        num_classes: the number of classes; by default ``max(labels) + 1``.
        dtype: the output dtype.

    Returns:
        An array of shape ``labels.shape + (num_classes,)``.

    Example:
        >>> one_hot([0, 2, 1]).tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        if labels.size and not np.all(labels == np.round(labels)):
            raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"one_hot: labels must be in [0, {num_classes}), got range "
            f"[{labels.min()}, {labels.max()}]"
        )
    return (labels[..., None] == np.arange(num_classes)).astype(dtype)


# ------------------------------------------------------------------ early stopping


class EarlyStopping:
    """Stop training when a validation metric has not improved for ``patience`` epochs.

    Call ``update(value, params)`` once per epoch; it returns True when training should
    stop. The best value, its epoch (0-based count of ``update`` calls) and the params
    passed with it are kept, so you can restore the best model afterwards.

    Args:
        patience: epochs without improvement to tolerate.
        mode: ``"max"`` for metrics where higher is better (accuracy), ``"min"`` for
            losses.
        min_delta: the smallest change that counts as an improvement.

    Example:
        >>> stopper = EarlyStopping(patience=2, mode="max")
        >>> [stopper.update(acc) for acc in [0.5, 0.7, 0.69, 0.7, 0.6]]
        [False, False, False, True, True]
        >>> stopper.best, stopper.best_epoch
        (0.7, 1)
    """

    def __init__(self, patience: int = 5, mode: str = "max", min_delta: float = 0.0):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience = patience
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_params: Any = None
        self.epoch = -1
        self.stopped = False

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: Any, params: Any = None) -> bool:
        """Record this epoch's metric; return True when training should stop."""
        value = float(value)
        self.epoch += 1
        if math.isnan(value):
            self.stopped = True  # a diverged run never recovers
        elif self._improved(value):
            self.best, self.best_epoch, self.best_params = value, self.epoch, params
        elif self.epoch - self.best_epoch >= self.patience:
            self.stopped = True
        return self.stopped


# ------------------------------------------------------------------ IDX files (MNIST)

# The IDX header: two zero bytes, a type code, the rank; then one big-endian int32
# per dimension; then the data, big-endian, row-major (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def _open(path: str, mode: str):
    if mode == "rb":
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
    else:
        gzipped = path.endswith(".gz")
    return gzip.open(path, mode) if gzipped else open(path, mode)  # noqa: SIM115


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Args:
        path: the file; gzip compression is detected from its contents.

    Returns:
        The array, in native byte order, with the shape stored in the file.

    Example:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "x-idx3-ubyte.gz")
        >>> write_idx(path, np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
        >>> read_idx(path).tolist()
        [[[0, 1, 2], [3, 4, 5]]]
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_idx: no such file {path!r}")
    with _open(path, "rb") as f:
        content = f.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise ValueError(f"read_idx: {path!r} is not an IDX file (bad magic number)")
    code, rank = content[2], content[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path!r} has unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * rank
    shape = struct.unpack(f">{rank}I", content[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) - header != expected:
        raise ValueError(
            f"read_idx: {path!r} holds {len(content) - header} data bytes, but its header "
            f"declares shape {shape} of {dtype.name} ({expected} bytes): truncated file?"
        )
    array = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: Any) -> None:
    """Write an array as an IDX file (gzip-compressed if ``path`` ends in ``.gz``).

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"write_idx: IDX cannot store dtype {array.dtype}")
    big_endian = array.astype(_IDX_DTYPES[code], copy=False)
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with _open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(big_endian).tobytes())


_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def load_mnist(directory: str | os.PathLike, normalize: bool = True) -> dict[str, np.ndarray]:
    """Load MNIST (or Fashion-MNIST, which uses the same files) from a directory.

    The directory must hold the four standard IDX files, raw or with ``.gz``:
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``. fgrad never downloads anything.

    Args:
        directory: where the files are.
        normalize: return images as float32 in ``[0, 1]`` (default) instead of the
            stored uint8 pixel values.

    Returns:
        ``{"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": ..., "y_test": ...}``
        with int32 labels.
    """
    directory = os.fspath(directory)
    paths, missing = {}, []
    for name, stem in _MNIST_FILES.items():
        for candidate in (stem, stem + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.exists(path):
                paths[name] = path
                break
        else:
            missing.append(stem + "[.gz]")
    if missing:
        raise FileNotFoundError(
            f"load_mnist: {len(missing)} of the 4 MNIST files are missing from "
            f"{os.path.abspath(directory)!r}: {', '.join(missing)}. Download the IDX files "
            f"(e.g. from https://ossci-datasets.s3.amazonaws.com/mnist/ or the Fashion-MNIST "
            f"repository) into that directory; without them, fgrad.data.load_digits() gives "
            f"the small 8x8 digits offline."
        )
    out = {}
    for name, path in paths.items():
        array = read_idx(path)
        if name.startswith("x"):
            out[name] = array.astype(np.float32) / 255.0 if normalize else array
        else:
            out[name] = array.astype(np.int32)
    return out


# ------------------------------------------------------------------ the 8x8 digits

_SKLEARN_HINT = (
    "fgrad.data.load_digits() reads the 8x8 digits dataset that ships inside "
    "scikit-learn, which is not installed. Install the examples extra: "
    'pip install -e ".[examples]"  (or: pip install scikit-learn)'
)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits bundled with scikit-learn (UCI optdigits test set).

    Works offline: the data ships inside scikit-learn (the ``examples`` extra). Images
    are float32 in ``[0, 1]`` (the stored 0..16 grey levels divided by 16); labels are
    int32 digits 0..9, about 180 of each.

    Returns:
        ``(images, labels)`` with shapes ``(1797, 8, 8)`` and ``(1797,)``. Flatten with
        ``images.reshape(len(images), -1)``; add a channel axis for a CNN with
        ``images[..., None]``.

    Raises:
        ImportError: scikit-learn is not installed (the message says how to install it).
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:
        raise ImportError(_SKLEARN_HINT) from e
    bunch = _sk_load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).astype(np.float32)
    return images, np.asarray(bunch.target, dtype=np.int32)
