"""fgrad.data: minibatches, splits, standardisation, one-hot, early stopping, readers."""

import gzip
import sys

import numpy as np
import pytest

from fgrad import data, random


def _dataset(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return x, np.arange(n)


# ------------------------------------------------------------------ batches


def test_batches_keep_or_drop_the_ragged_last_batch():
    x, y = _dataset(10)
    kept = list(data.batches((x, y), 4, key=random.key(0)))
    assert [len(b[1]) for b in kept] == [4, 4, 2]
    dropped = list(data.batches((x, y), 4, key=random.key(0), drop_last=True))
    assert [len(b[1]) for b in dropped] == [4, 4]
    assert data.num_batches(10, 4) == 3 and data.num_batches(10, 4, drop_last=True) == 2
    assert data.num_batches(8, 4) == data.num_batches(8, 4, drop_last=True) == 2


def test_batches_cover_every_example_once_and_keep_rows_aligned():
    x, y = _dataset(23)
    seen = []
    for xb, yb in data.batches((x, y), 5, key=random.key(3)):
        np.testing.assert_array_equal(xb, x[yb])  # rows of x and y stay paired
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(23))


def test_batches_order_is_driven_by_the_key():
    x, y = _dataset(50)

    def order(key):
        return np.concatenate([b[1] for b in data.batches((x, y), 8, key=key)])

    np.testing.assert_array_equal(order(random.key(1)), order(random.key(1)))  # reproducible
    epoch0, epoch1 = (
        order(random.fold_in(random.key(1), 0)),
        order(random.fold_in(random.key(1), 1)),
    )
    assert not np.array_equal(epoch0, epoch1)  # a new order every epoch
    assert not np.array_equal(epoch0, np.arange(50))  # shuffled
    np.testing.assert_array_equal(order(None), np.arange(50))  # no key: stored order


def test_batches_keep_the_pytree_structure():
    x, y = _dataset(6)
    batch = next(data.batches({"image": x, "label": y}, 4))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (4, 3)


def test_batches_reject_mismatched_lengths_and_bad_sizes():
    with pytest.raises(ValueError, match="leading"):
        next(data.batches((np.zeros((4, 2)), np.zeros(5)), 2))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches((np.zeros(4),), 0))


# ------------------------------------------------------------------ splits


def test_train_val_split_partitions_the_data():
    x, y = _dataset(40)
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split((x, y), 0.25, key=random.key(0))
    assert len(y_tr) == 30 and len(y_val) == 10
    assert sorted(np.concatenate([y_tr, y_val]).tolist()) == list(range(40))
    np.testing.assert_array_equal(x_val, x[y_val])


def test_train_val_split_stratified_keeps_class_balance():
    labels = np.repeat(np.arange(4), [40, 20, 20, 20])
    x = np.arange(len(labels))
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split(
        (x, labels), 0.2, key=random.key(5), stratify=labels
    )
    assert np.bincount(y_val).tolist() == [8, 4, 4, 4]
    assert np.bincount(y_tr).tolist() == [32, 16, 16, 16]
    assert not np.array_equal(y_val, np.sort(y_val))  # classes interleaved, not in blocks


def test_train_val_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(_dataset(), 1.0, key=random.key(0))


# ------------------------------------------------------------------ scaling, labels


def test_standardizer_fits_on_train_only():
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    train[:, 3] = 7.0  # a constant feature: centred, never divided by zero
    scaler = data.Standardizer.fit(train)
    z = scaler(train)
    np.testing.assert_allclose(z[:, :3].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :3].std(0), 1.0, atol=1e-5)
    assert np.all(z[:, 3] == 0.0)
    other = np.full((2, 4), 3.0, np.float32)
    np.testing.assert_allclose(scaler(other), (other - scaler.mean) / scaler.std)
    np.testing.assert_allclose(scaler.inverse(z), train, rtol=1e-5, atol=1e-5)
    assert z.dtype == np.float32


def test_one_hot():
    out = data.one_hot(np.array([[1, 0], [2, 2]]), 4)
    assert out.shape == (2, 2, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(-1), [[1, 0], [2, 2]])
    assert data.one_hot([3]).shape == (1, 4)
    with pytest.raises(ValueError, match="labels must be in"):
        data.one_hot([0, 5], 3)


# ------------------------------------------------------------------ early stopping


def test_early_stopping_max_mode_and_best_params():
    stopper = data.EarlyStopping(patience=2, mode="max")
    decisions = [stopper.update(v, params=f"p{i}") for i, v in enumerate([0.5, 0.8, 0.7, 0.75])]
    assert decisions == [False, False, False, True]
    assert stopper.best == 0.8 and stopper.best_epoch == 1 and stopper.best_params == "p1"


def test_early_stopping_min_mode_with_min_delta():
    stopper = data.EarlyStopping(patience=1, mode="min", min_delta=0.1)
    assert stopper.update(1.0) is False
    assert stopper.update(0.95) is True  # not better by min_delta
    assert stopper.best == 1.0


def test_early_stopping_stops_on_nan():
    stopper = data.EarlyStopping(patience=10, mode="min")
    stopper.update(1.0)
    assert stopper.update(float("nan")) is True


# ------------------------------------------------------------------ IDX / MNIST


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    data.write_idx(path, array)
    out = data.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_idx_reader_matches_the_mnist_header_layout(tmp_path):
    # Hand-built file: magic 0x00000801 (uint8, rank 1), length 3, then the bytes.
    path = tmp_path / "labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    np.testing.assert_array_equal(data.read_idx(path), [7, 2, 1])


def test_idx_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.read_idx(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(short)


def test_load_mnist_reads_the_four_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5).astype(np.uint8)
    data.write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte", labels)  # raw and gz mixed
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:2])
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:2])
    mnist = data.load_mnist(tmp_path)
    assert mnist["x_train"].shape == (5, 28, 28) and mnist["x_train"].dtype == np.float32
    np.testing.assert_allclose(mnist["x_train"], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(mnist["y_test"], labels[:2])
    assert mnist["y_train"].dtype == np.int32
    raw = data.load_mnist(tmp_path, normalize=False)
    np.testing.assert_array_equal(raw["x_test"], images[:2])


def test_load_mnist_names_the_missing_files(tmp_path):
    data.write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(tmp_path)
    message = str(info.value)
    assert "3 of the 4 MNIST files are missing" in message
    assert "t10k-labels-idx1-ubyte" in message and "load_digits" in message


# ------------------------------------------------------------------ digits


def test_load_digits():
    # No skip without scikit-learn: the dev extra installs it, so a missing one fails.
    images, labels = data.load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int32
    assert images.min() == 0.0 and images.max() == 1.0
    assert np.bincount(labels).min() >= 170


def test_load_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[examples\]\""):
        data.load_digits()
