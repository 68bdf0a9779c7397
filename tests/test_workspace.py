"""The CPU kernels' recycled scratch arrays (``fgrad.backends.cpu.workspace``)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fgrad.backends.cpu import workspace

SHAPE = (256, 300)  # 300 KB of float32: recycled


def test_a_free_array_comes_back_and_a_held_one_never_does():
    shape = (123, 457)  # used by no other test: the cache starts empty for it
    a = workspace.empty(shape, np.float32)
    b = workspace.empty(shape, np.float32)
    assert b is not a and not np.shares_memory(a, b)  # `a` is still referenced here
    ids = {id(a), id(b)}
    del a, b
    again = workspace.empty(shape, np.float32)
    assert id(again) in ids  # recycled, not new memory
    other = workspace.empty(shape, np.float32)
    assert id(other) in ids and other is not again and not np.shares_memory(other, again)


def test_a_view_keeps_its_array_out_of_reuse():
    a = workspace.empty(SHAPE, np.float32)
    a[...] = 7.0
    a.setflags(write=False)  # as results are handed out
    view = a[::3, 5:9]
    del a
    others = [workspace.empty(SHAPE, np.float32) for _ in range(workspace.MAX_PER_SHAPE + 1)]
    for o in others:
        o.fill(-1.0)
    assert np.all(view == 7.0)


def test_small_arrays_are_not_cached_and_the_cache_is_bounded():
    small = workspace.empty((4, 4), np.float32)
    assert small.shape == (4, 4) and ((4, 4), np.dtype(np.float32).str) not in workspace._arrays
    held = [workspace.empty(SHAPE, np.float64) for _ in range(workspace.MAX_PER_SHAPE + 3)]
    assert len(workspace._arrays[(SHAPE, np.dtype(np.float64).str)]) <= workspace.MAX_PER_SHAPE
    assert len({id(h) for h in held}) == len(held)  # all distinct while held
    for k in range(workspace.MAX_SHAPES + 5):
        workspace.empty((128, 128 + k), np.float32)
    assert len(workspace._arrays) <= workspace.MAX_SHAPES


@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
    data=st.data(),
)
def test_padded_matches_np_pad(shape, data):
    pads = [(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))) for _ in shape]
    x = np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32)
    for _ in range(2):  # the second call may get a recycled (dirty) array
        got = workspace.padded(x, pads)
        np.testing.assert_array_equal(got, np.pad(x, pads))
        got.fill(np.nan)
        del got


def test_threads_never_share_an_array():
    errors = []

    def worker(k):
        for _ in range(200):
            a = workspace.empty(SHAPE, np.float32)
            a.fill(k)
            if not np.all(a == k):
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zeros_are_zero_even_when_recycled(dtype):
    a = workspace.empty(SHAPE, dtype)
    a.fill(3)
    del a
    assert not workspace.zeros(SHAPE, dtype).any()
