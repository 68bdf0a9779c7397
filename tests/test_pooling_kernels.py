"""The CPU backend's Numba pooling and convolution kernels against the reference impls.

Shapes, windows, strides and padding are drawn by hypothesis; max-pooling operands are
small integers so windows often hold ties (the gradient must go to the first maximum),
and some hold -inf or NaN.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fgrad.backends import reference
from fgrad.backends.cpu import kernels
from fgrad.core import primitives


def _ref(name, args, params):
    return reference.run(primitives[name], args, params)[0]


@st.composite
def _pool_config(draw, allow_special=False):
    n = draw(st.integers(1, 3))
    h, w, c = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # Padding up to window - 1 on each side, and sometimes more (all-padding windows).
    pads = [(draw(st.integers(0, k)), draw(st.integers(0, k))) for k in (kh, kw)]
    if h + sum(pads[0]) < kh or w + sum(pads[1]) < kw:
        pads = [(0, max(0, kh - h)), (0, max(0, kw - w))]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (n, h, w, c)).astype(dtype)  # few values: many ties
    if allow_special and draw(st.booleans()):
        mask = rng.random(x.shape)
        x[mask < 0.1] = -np.inf
        x[mask > 0.95] = np.nan
    params = dict(
        window_dimensions=(1, kh, kw, 1),
        window_strides=(1, sh, sw, 1),
        padding=((0, 0), *pads, (0, 0)),
    )
    return x, params, rng


@given(_pool_config(allow_special=True))
def test_select_and_scatter_add_kernel_matches_reference(config):
    x, params, rng = config
    out_shape = _ref("reduce_window_max", [x], params).shape
    source = rng.standard_normal(out_shape).astype(x.dtype)
    got = kernels.select_and_scatter_add(source, x, **params)
    want = _ref("select_and_scatter_add", [source, x], params)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@given(_pool_config(allow_special=True))
def test_max_and_sum_pool_kernels_match_reference(config):
    x, params, _ = config
    for name in ("reduce_window_max", "reduce_window_sum"):
        got = kernels.KERNELS[name](x, **params)
        # NaN and -inf included: a NaN in a window makes its max NaN, as np.max does.
        np.testing.assert_allclose(got, _ref(name, [x], params), rtol=1e-6)


def test_select_and_scatter_add_ties_go_to_first_maximum():
    x = np.array([[3.0, 3.0, 1.0], [3.0, 2.0, 3.0]]).reshape(1, 2, 3, 1)
    params = dict(
        window_dimensions=(1, 2, 2, 1), window_strides=(1, 1, 1, 1), padding=((0, 0),) * 4
    )
    src = np.array([10.0, 20.0]).reshape(1, 1, 2, 1)
    got = kernels.select_and_scatter_add(src, x, **params)
    # Window 0 -> (0, 0); window 1 starts at (0, 1), whose first 3 is (0, 1).
    np.testing.assert_array_equal(got.reshape(2, 3), [[10.0, 20.0, 0.0], [0.0, 0.0, 0.0]])


def test_select_and_scatter_add_other_ranks_use_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6))
    params = dict(window_dimensions=(2, 3), window_strides=(1, 2), padding=((1, 0), (0, 1)))
    src = rng.standard_normal(_ref("reduce_window_max", [x], params).shape)
    np.testing.assert_array_equal(
        kernels.select_and_scatter_add(src, x, **params),
        _ref("select_and_scatter_add", [src, x], params),
    )


@st.composite
def _conv_config(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    c, o = draw(st.sampled_from([1, 2, 3, 8])), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    lhs = rng.standard_normal((n, h, w, c)).astype(dtype)
    rhs = rng.standard_normal((kh, kw, c, o)).astype(dtype)
    params = dict(
        window_strides=(sh, sw),
        padding=pads,
        lhs_dilation=(1, 1),
        rhs_dilation=(dh, dw),
        feature_group_count=1,
    )
    return lhs, rhs, params


@given(_conv_config())
def test_conv_kernel_matches_reference(config):
    lhs, rhs, params = config
    want = _ref("conv_general_dilated", [lhs, rhs], params)
    got = kernels.conv_general_dilated(lhs, rhs, **params)
    tol = 1e-4 if lhs.dtype == np.float32 else 1e-10
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_shifted_tap_conv_matches_reference():
    """Stride-1, many-channel convolutions: each tap a matmul over a shifted slice of
    the flat input, accumulated into the output."""
    rng = np.random.default_rng(2)
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        lhs = rng.standard_normal((2, 9, 8, 8)).astype(dtype)
        rhs = rng.standard_normal((3, 3, 8, 5)).astype(dtype)
        params = dict(
            window_strides=(1, 1),
            padding=((1, 1), (1, 1)),
            lhs_dilation=(1, 1),
            rhs_dilation=(1, 1),
            feature_group_count=1,
        )
        got = kernels.conv_general_dilated(lhs, rhs, **params)
        want = _ref("conv_general_dilated", [lhs, rhs], params)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("channels", [1, 3, 8])
@pytest.mark.parametrize("transposed", [False, True])
def test_conv_kernel_weight_gradient_layout(transposed, channels):
    """The weight-gradient convolution (batch as channels, the cotangent as a large
    kernel) on the transposed views the VJP produces."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 7, 6, channels))  # (N, H, W, C)
    ct = rng.standard_normal((4, 7, 6, 5))  # (N, OH, OW, O), SAME 3x3
    lhs = x.transpose(3, 1, 2, 0)  # (C, H, W, N)
    rhs = ct.transpose(1, 2, 0, 3)  # (OH, OW, N, O)
    if not transposed:
        lhs, rhs = np.ascontiguousarray(lhs), np.ascontiguousarray(rhs)
    params = dict(
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        lhs_dilation=(1, 1),
        rhs_dilation=(1, 1),
        feature_group_count=1,
    )
    want = _ref("conv_general_dilated", [lhs, rhs], params)
    got = kernels.conv_general_dilated(lhs, rhs, **params)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
