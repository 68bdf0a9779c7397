"""Checkpoints: round trips, atomic writes under faults, corruption detection."""

import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from collections import namedtuple

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad.io import CheckpointError

AdamState = namedtuple("AdamState", "count mu nu")


def _state():
    rng = np.random.default_rng(0)
    params = {
        "Dense_0": {
            "w": fnp.asarray(rng.normal(size=(3, 4)).astype(np.float32)),
            "b": fnp.zeros(4),
        },
        "BatchNorm_1": {"mean": fnp.zeros(4, dtype=fnp.float64)},
    }
    opt = (AdamState(fnp.asarray(7, dtype=fnp.int32), params, params), None)
    return {"params": params, "opt": opt, "step": 12, "lr": 0.001, "name": "run-1", "flags": [True]}


def _assert_same(a, b):
    la, ta = fgrad.tree.tree_flatten(a)
    lb, tb = fgrad.tree.tree_flatten(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if isinstance(x, fgrad.Array | np.ndarray):
            assert np.asarray(x).dtype == np.asarray(y).dtype
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert x == y and type(x) is type(y)


def test_round_trip_with_and_without_template(tmp_path):
    path = tmp_path / "ckpt.npz"
    state = _state()
    fgrad.io.save(path, state)
    loaded = fgrad.io.load(path)
    _assert_same(state, loaded)
    assert loaded["opt"][0].mu["Dense_0"]["w"].shape == (3, 4)  # namedtuple fields kept
    templated = fgrad.io.load(path, like=state)
    assert type(templated["opt"][0]) is AdamState
    _assert_same(state, templated)


def test_template_mismatch_names_the_leaf(tmp_path):
    path = tmp_path / "ckpt.npz"
    fgrad.io.save(path, {"w": fnp.ones((2, 3)), "b": fnp.zeros(3)})
    with pytest.raises(CheckpointError, match=r"\['w'\].*float32\[2, 3\].*float32\[3, 2\]"):
        fgrad.io.load(path, like={"w": fnp.ones((3, 2)), "b": fnp.zeros(3)})
    with pytest.raises(CheckpointError, match="leaves"):
        fgrad.io.load(path, like={"w": fnp.ones((2, 3))})


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    fgrad.io.save(path, {"w": fnp.ones(1000)})
    real_writestr = zipfile.ZipFile.writestr
    written = {"n": 0}

    def failing_writestr(self, name, data, *a, **k):
        written["n"] += 1
        if written["n"] == 2:  # after the structure, halfway through the arrays
            raise OSError(28, "No space left on device")
        return real_writestr(self, name, data, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError):
        fgrad.io.save(path, {"w": fnp.zeros(1000)})
    monkeypatch.undo()
    assert fgrad.io.load(path)["w"].tolist() == [1.0] * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temp file left behind


def test_sigkill_mid_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    fgrad.io.save(path, {"w": fnp.ones(4)})
    script = textwrap.dedent(f"""
        import numpy as np, fgrad, sys
        big = {{"x": np.ones((64, 1024, 1024), np.float32)}}  # 256 MB: slow to write
        print("ready", flush=True)
        fgrad.io.save({str(path)!r}, big)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    import time

    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert fgrad.io.load(path)["w"].tolist() == [1.0] * 4


def test_truncation_and_bit_flips_are_detected(tmp_path):
    path = tmp_path / "ckpt.npz"
    fgrad.io.save(path, {"w": fnp.arange(1000, dtype=fnp.float32)})
    data = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        fgrad.io.load(tmp_path / "truncated.npz")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted|checksum"):
        fgrad.io.load(tmp_path / "flipped.npz")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fgrad.io.load(tmp_path / "missing.npz")


def test_no_pickle_is_ever_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError):
        fgrad.io.load(path)
    with pytest.raises(CheckpointError, match="dtype object"):
        fgrad.io.save(tmp_path / "x.npz", {"x": np.array([object()], dtype=object)})
    assert os.path.exists(path)
