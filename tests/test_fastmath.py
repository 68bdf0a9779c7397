"""Accuracy of the vectorisable float32 exp/tanh/logistic used in fused CPU loops,
against float64 NumPy over the whole float32 range (the bounds ``fastmath`` states)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad.backends.cpu.fastmath import exp32, logistic32, tanh32

_TINY = np.finfo(np.float32).tiny


@numba.njit(error_model="numpy")
def _apply(which, x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = exp32(v) if which == 0 else (tanh32(v) if which == 1 else logistic32(v))
    return out


_FUNCS = {
    "exp": (0, np.exp, 2.0),
    "tanh": (1, np.tanh, 3.0),
    "logistic": (2, lambda x: 1 / (1 + np.exp(-x)), 3.0),
}


def _every_float32_sample() -> np.ndarray:
    """Every 4099th float32 bit pattern (1M values spanning all exponents), plus a
    dense sample where these functions change fastest."""
    bits = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    dense = np.linspace(-20, 20, 400_001, dtype=np.float32)
    return np.concatenate([x[np.isfinite(x)], dense])


def _ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


@pytest.mark.parametrize("name", sorted(_FUNCS))
def test_error_bound_over_the_float32_range(name):
    which, ref, bound = _FUNCS[name]
    x = _every_float32_sample()
    with np.errstate(over="ignore"):
        exact = ref(x.astype(np.float64))
    got = _apply(which, x)
    normal = (np.abs(exact) >= _TINY) & (np.abs(exact) <= np.finfo(np.float32).max)
    assert _ulps(got[normal], exact[normal]).max() <= bound
    # Subnormal results: within one subnormal step of the exact value.
    sub = (np.abs(exact) < _TINY) & (exact != 0)
    step = np.float64(np.finfo(np.float32).smallest_subnormal)
    assert np.all(np.abs(got[sub].astype(np.float64) - exact[sub]) <= step)
    big = exact > np.finfo(np.float32).max
    assert np.all(np.isposinf(got[big]))


def test_special_values():
    x = np.float32([np.nan, np.inf, -np.inf, 0.0, -0.0])
    e, t, s = (_apply(k, x) for k in range(3))
    np.testing.assert_array_equal(e, np.float32([np.nan, np.inf, 0.0, 1.0, 1.0]))
    np.testing.assert_array_equal(t, np.float32([np.nan, 1.0, -1.0, 0.0, -0.0]))
    assert np.signbit(t[4]) and not np.signbit(t[3])
    np.testing.assert_array_equal(s, np.float32([np.nan, 1.0, 0.0, 0.5, 0.5]))


@given(st.lists(st.floats(-200, 200, width=32), min_size=1, max_size=40))
def test_jitted_float32_chain_matches_numpy(values):
    x = np.asarray(values, np.float32)

    def f(x):
        return fnp.tanh(x) * fgrad.nn.sigmoid(x) + fnp.exp(x * 0.25)

    got = np.asarray(fgrad.jit(f)(fnp.asarray(x)))
    x64 = x.astype(np.float64)
    exact = np.tanh(x64) / (1 + np.exp(-x64)) + np.exp(x64 * 0.25)
    np.testing.assert_allclose(got, exact, rtol=5e-6, atol=1e-6)


def test_fused_float32_loops_use_the_vectorisable_versions():
    f = fgrad.jit(lambda x: fnp.tanh(x) + fnp.exp(x) + fgrad.nn.sigmoid(x))
    program = f.program(fnp.ones((3, 4), fnp.float32))
    (src,) = program.segment_sources.values()
    assert "tanh32(" in src and "exp32(" in src and "logistic32(" in src
    src64 = next(iter(f.program(fnp.ones((3, 4), fnp.float64)).segment_sources.values()))
    assert "tanh32(" not in src64 and "np.tanh(" in src64  # float64 keeps libm
