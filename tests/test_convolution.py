"""conv_general_dilated and reduce_window against JAX (the oracle), plus finite differences.

Every configuration is checked forward (values and shapes equal to ``jax.lax``'s) and
backward (``grad`` of ``sum(sin(f(...)))`` equal to ``jax.grad`` of the same). A few are
also checked against central finite differences (VJP and JVP) and to second order.
"""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import fgrad  # noqa: E402
import fgrad.numpy as fnp  # noqa: E402
from fgrad import lax  # noqa: E402
from fgrad.lax.convolution import (  # noqa: E402
    conv_dimension_numbers,
    conv_general_dilated,
    padtype_to_pads,
)
from fgrad.lax.windows import (  # noqa: E402
    reduce_window,
    reduce_window_max,
    reduce_window_sum,
)

RTOL, ATOL = 1e-10, 1e-12


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- conv configurations
# (lhs shape, rhs shape, kwargs); lhs/rhs shapes are in the layout dimension_numbers names.

CONV_CASES = {
    "1d_valid": ((2, 3, 9), (4, 3, 3), dict(window_strides=(1,), padding="VALID")),
    "1d_stride_same": ((2, 2, 10), (3, 2, 4), dict(window_strides=(3,), padding="SAME")),
    "1d_nwc_wio_explicit": (
        (2, 8, 3),
        (3, 3, 2),
        dict(window_strides=(2,), padding=((2, 1),), dimension_numbers=("NWC", "WIO", "NWC")),
    ),
    "2d_nchw_same_stride": (
        (2, 3, 7, 6),
        (4, 3, 3, 2),
        dict(window_strides=(2, 1), padding="SAME"),
    ),
    "2d_nhwc_same_lower_rhs_dilation": (
        (2, 7, 8, 3),
        (2, 3, 3, 4),
        dict(
            window_strides=(2, 3),
            padding="SAME_LOWER",
            rhs_dilation=(2, 1),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        ),
    ),
    "2d_negative_padding_lhs_dilation_groups": (
        (2, 4, 6, 5),
        (6, 2, 3, 2),
        dict(
            window_strides=(2, 1),
            padding=((1, -1), (2, 0)),
            lhs_dilation=(2, 1),
            rhs_dilation=(1, 2),
            feature_group_count=2,
        ),
    ),
    "2d_depthwise_nhwc": (
        (2, 6, 5, 4),
        (3, 3, 1, 8),
        dict(
            window_strides=(1, 2),
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=4,
        ),
    ),
    "2d_transposed_conv": (
        (1, 5, 4, 2),
        (3, 3, 2, 3),
        dict(
            window_strides=(1, 1),
            padding=((2, 2), (1, 2)),
            lhs_dilation=(2, 3),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        ),
    ),
    "2d_everything_mixed_layout": (
        (2, 7, 4, 6),
        (3, 2, 2, 6),
        dict(
            window_strides=(1, 2),
            padding=((2, 1), (0, 3)),
            lhs_dilation=(1, 3),
            rhs_dilation=(2, 2),
            dimension_numbers=("NHCW", "HIWO", "CNWH"),
            feature_group_count=2,
        ),
    ),
    "3d_ndhwc_same": (
        (2, 5, 4, 3, 2),
        (3, 2, 2, 2, 3),
        dict(
            window_strides=(1, 2, 1),
            padding="SAME",
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        ),
    ),
    "3d_ncdhw_dilated_strided": (
        (1, 2, 6, 5, 4),
        (2, 2, 2, 2, 2),
        dict(window_strides=(2, 1, 2), padding=((1, 0), (0, 1), (1, 1)), rhs_dilation=(2, 1, 1)),
    ),
    "0d_spatial_is_a_matmul": ((3, 4), (5, 4), dict(window_strides=(), padding=())),
}


def _conv_args(name, seed=0):
    lhs_shape, rhs_shape, kwargs = CONV_CASES[name]
    rng = _rng(seed)
    return rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape), kwargs


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_matches_jax(name):
    x, w, kwargs = _conv_args(name)
    got = conv_general_dilated(x, w, **kwargs)
    want = jax.lax.conv_general_dilated(x, w, **kwargs)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL, atol=ATOL)

    def loss(x, w):
        return fnp.sum(fnp.sin(conv_general_dilated(x, w, **kwargs)))

    def jax_loss(x, w):
        return jnp.sum(jnp.sin(jax.lax.conv_general_dilated(x, w, **kwargs)))

    got_dx, got_dw = fgrad.grad(loss, argnums=(0, 1))(x, w)
    want_dx, want_dw = jax.grad(jax_loss, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(np.asarray(got_dx), np.asarray(want_dx), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(got_dw), np.asarray(want_dw), rtol=RTOL, atol=ATOL)


def test_conv_accepts_dimension_number_permutations():
    # ConvDimensionNumbers (JAX's canonical form) gives the same result as the strings.
    x, w, kwargs = _conv_args("2d_everything_mixed_layout")
    dnums = conv_dimension_numbers(x.shape, w.shape, kwargs["dimension_numbers"])
    assert dnums == jax.lax.conv_dimension_numbers(x.shape, w.shape, kwargs["dimension_numbers"])
    got = conv_general_dilated(x, w, **{**kwargs, "dimension_numbers": dnums})
    np.testing.assert_array_equal(np.asarray(got), np.asarray(conv_general_dilated(x, w, **kwargs)))


def test_conv_empty_output_and_zero_gradients():
    # The kernel is longer than the input: no window fits, as in JAX.
    x, w = _rng().standard_normal((2, 3, 2)), _rng(1).standard_normal((4, 3, 5))
    got = conv_general_dilated(x, w, (1,), "VALID")
    assert got.shape == jax.lax.conv_general_dilated(x, w, (1,), "VALID").shape == (2, 4, 0)
    dx, dw = fgrad.grad(
        lambda x, w: fnp.sum(conv_general_dilated(x, w, (1,), "VALID")), argnums=(0, 1)
    )(x, w)
    assert not np.asarray(dx).any() and not np.asarray(dw).any()


def test_conv_preferred_element_type():
    x = _rng().standard_normal((1, 2, 5)).astype(np.float32)
    w = _rng(1).standard_normal((3, 2, 2)).astype(np.float32)
    got = conv_general_dilated(x, w, (1,), "SAME", preferred_element_type=np.float64)
    want = jax.lax.conv_general_dilated(x, w, (1,), "SAME", preferred_element_type=np.float64)
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_padtype_to_pads_matches_jax():
    for padding in ("SAME", "SAME_LOWER", "VALID"):
        for in_shape, window, strides in (((5, 6), (3, 2), (2, 1)), ((7,), (4,), (3,))):
            want = jax.lax.padtype_to_pads(in_shape, window, strides, padding)
            assert padtype_to_pads(in_shape, window, strides, padding) == [tuple(p) for p in want]


# ---------------------------------------------------------------- finite differences


def _central_difference(f, args, directions, eps=1e-6):
    plus = [a + eps * d for a, d in zip(args, directions, strict=True)]
    minus = [a - eps * d for a, d in zip(args, directions, strict=True)]
    return (float(f(*plus)) - float(f(*minus))) / (2 * eps)


@pytest.mark.parametrize(
    "name", ["2d_negative_padding_lhs_dilation_groups", "3d_ncdhw_dilated_strided"]
)
def test_conv_vjp_and_jvp_match_finite_differences(name):
    x, w, kwargs = _conv_args(name, seed=3)
    rng = _rng(4)
    dirs = [rng.standard_normal(x.shape), rng.standard_normal(w.shape)]

    def loss(x, w):
        return fnp.sum(fnp.sin(conv_general_dilated(x, w, **kwargs)))

    numeric = _central_difference(loss, [x, w], dirs)
    dx, dw = fgrad.grad(loss, argnums=(0, 1))(x, w)
    reverse = float(np.vdot(np.asarray(dx), dirs[0]) + np.vdot(np.asarray(dw), dirs[1]))
    _, forward = fgrad.jvp(loss, (x, w), tuple(dirs))
    np.testing.assert_allclose(reverse, numeric, rtol=1e-6)
    np.testing.assert_allclose(float(forward), numeric, rtol=1e-6)


@pytest.mark.parametrize("name", ["2d_negative_padding_lhs_dilation_groups", "2d_depthwise_nhwc"])
def test_conv_second_derivatives_match_jax(name):
    x, w, kwargs = _conv_args(name, seed=5)
    v = _rng(6).standard_normal(x.shape)

    def loss(x, w):
        return fnp.sum(fnp.sin(conv_general_dilated(x, w, **kwargs)))

    def jax_loss(x, w):
        return jnp.sum(jnp.sin(jax.lax.conv_general_dilated(x, w, **kwargs)))

    # d/d(x, w) of <d loss / dx, v>: Hessian-vector products through both operands.
    def hvp(x, w):
        return fnp.sum(fgrad.grad(loss)(x, w) * v)

    def jax_hvp(x, w):
        return jnp.sum(jax.grad(jax_loss)(x, w) * v)

    got = fgrad.grad(hvp, argnums=(0, 1))(x, w)
    want = jax.grad(jax_hvp, argnums=(0, 1))(x, w)
    for g, j in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(j), rtol=1e-9, atol=1e-11)

    # Forward over reverse agrees too.
    _, got_t = fgrad.jvp(lambda x: fgrad.grad(loss)(x, w), (x,), (v,))
    _, want_t = jax.jvp(lambda x: jax.grad(jax_loss)(x, w), (x,), (v,))
    np.testing.assert_allclose(np.asarray(got_t), np.asarray(want_t), rtol=1e-9, atol=1e-11)


def test_conv_gradient_is_traceable():
    x, w, kwargs = _conv_args("2d_nchw_same_stride")
    jaxpr = fgrad.make_jaxpr(
        fgrad.grad(lambda x, w: fnp.sum(fnp.sin(conv_general_dilated(x, w, **kwargs))), 1)
    )(x, w)
    assert str(jaxpr).count("conv_general_dilated") >= 2


# ---------------------------------------------------------------- conv errors


def test_conv_channel_mismatch_names_primitive_and_shapes():
    x, w = np.zeros((1, 3, 5, 5)), np.zeros((4, 2, 3, 3))
    with pytest.raises(TypeError) as info:
        conv_general_dilated(x, w, (1, 1), "SAME")
    msg = str(info.value)
    assert "conv_general_dilated" in msg
    assert "(1, 3, 5, 5)" in msg and "(4, 2, 3, 3)" in msg
    assert "feature_group_count" in msg
    assert "test_convolution.py" in msg  # the user's line


def test_conv_group_and_padding_errors():
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises(TypeError, match="multiple of feature_group_count=2"):
        conv_general_dilated(x, np.zeros((3, 2, 3, 3)), (1, 1), "SAME", feature_group_count=2)
    with pytest.raises(TypeError, match="more negative"):
        conv_general_dilated(x, np.zeros((3, 4, 3, 3)), (1, 1), ((-3, -3), (0, 0)))
    with pytest.raises(TypeError, match="one entry per spatial axis"):
        conv_general_dilated(x, np.zeros((3, 4, 3, 3)), (1,), "SAME")
    with pytest.raises(TypeError, match="same rank"):
        conv_general_dilated(x, np.zeros((3, 4, 3)), (1, 1), "SAME")
    with pytest.raises(TypeError, match="dimension_numbers"):
        conv_general_dilated(x, np.zeros((3, 4, 3, 3)), (1, 1), "SAME", dimension_numbers="NCHW")
    with pytest.raises(ValueError, match="batch_group_count=2 is unsupported"):
        conv_general_dilated(x, np.zeros((4, 4, 3, 3)), (1, 1), "SAME", batch_group_count=2)
    with pytest.raises(ValueError, match="lhs_dilation"):
        conv_general_dilated(x, np.zeros((3, 4, 3, 3)), (1, 1), "SAME", lhs_dilation=(2, 1))


# ---------------------------------------------------------------- reduce_window
# (operand shape, init, computation name, window, strides, padding)

WINDOW_CASES = {
    "sum_2d_valid": ((7, 6), 0.0, "add", (3, 2), (2, 2), "VALID"),
    "sum_nhwc_same": ((2, 5, 6, 3), 0.0, "add", (1, 3, 3, 1), (1, 2, 2, 1), "SAME"),
    "sum_1d_explicit": ((9,), 0.0, "add", (4,), (3,), ((2, 3),)),
    "max_nhwc_pool_valid": ((2, 6, 6, 3), -np.inf, "max", (1, 2, 2, 1), (1, 2, 2, 1), "VALID"),
    "max_nhwc_same_overlapping": ((2, 5, 7, 2), -np.inf, "max", (1, 3, 3, 1), (1, 2, 2, 1), "SAME"),
    "max_3d_explicit": ((4, 5, 3), -np.inf, "max", (2, 3, 2), (1, 2, 1), ((1, 1), (2, 0), (0, 1))),
    "max_1d_wide_padding": ((5,), -np.inf, "max", (3,), (2,), ((2, 2),)),
}
# Configurations whose gradient jax itself cannot take (generic reduce_window with a
# non-identity init, or negative padding): checked against finite differences instead.
WINDOW_FD_CASES = {
    "sum_negative_padding": ((7, 6), 0.0, "add", (3, 2), (2, 3), ((1, -1), (1, 2))),
    "max_negative_padding": ((7, 6), -np.inf, "max", (3, 2), (2, 3), ((1, -1), (1, 2))),
    "sum_nonzero_init": ((2, 5, 4, 1), 1.5, "add", (1, 2, 3, 1), (1, 1, 2, 1), "SAME"),
    "max_finite_init": ((6, 5), 0.3, "max", (2, 2), (2, 1), ((1, 1), (0, 1))),
}
_OPS = {"add": (lax.add, jax.lax.add), "max": (lax.max, jax.lax.max)}


def _window_call(case, x, use_jax=False):
    _, init, op, window, strides, padding = case
    fn = jax.lax.reduce_window if use_jax else reduce_window
    return fn(x, init, _OPS[op][int(use_jax)], window, strides, padding)


@pytest.mark.parametrize("name", sorted(WINDOW_CASES) + sorted(WINDOW_FD_CASES))
def test_reduce_window_forward_matches_jax(name):
    case = {**WINDOW_CASES, **WINDOW_FD_CASES}[name]
    x = _rng(7).standard_normal(case[0])
    got, want = _window_call(case, x), _window_call(case, x, use_jax=True)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(WINDOW_CASES))
def test_reduce_window_gradients_match_jax(name):
    case = WINDOW_CASES[name]
    x = _rng(8).standard_normal(case[0])
    got = fgrad.grad(lambda x: fnp.sum(fnp.sin(_window_call(case, x))))(x)
    want = jax.grad(lambda x: jnp.sum(jnp.sin(_window_call(case, x, use_jax=True))))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL, atol=ATOL)
    t = _rng(9).standard_normal(x.shape)
    _, got_t = fgrad.jvp(lambda x: _window_call(case, x), (x,), (t,))
    _, want_t = jax.jvp(lambda x: _window_call(case, x, use_jax=True), (x,), (t,))
    np.testing.assert_allclose(np.asarray(got_t), np.asarray(want_t), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(WINDOW_FD_CASES) + ["max_nhwc_same_overlapping"])
def test_reduce_window_vjp_and_jvp_match_finite_differences(name):
    case = {**WINDOW_CASES, **WINDOW_FD_CASES}[name]
    x = _rng(10).standard_normal(case[0])  # distinct values: max is smooth nearby
    d = _rng(11).standard_normal(x.shape)

    def loss(x):
        return fnp.sum(fnp.sin(_window_call(case, x)))

    numeric = _central_difference(loss, [x], [d])
    reverse = float(np.vdot(np.asarray(fgrad.grad(loss)(x)), d))
    _, forward = fgrad.jvp(loss, (x,), (d,))
    np.testing.assert_allclose(reverse, numeric, rtol=1e-6)
    np.testing.assert_allclose(float(forward), numeric, rtol=1e-6)


@pytest.mark.parametrize("name", ["sum_nhwc_same", "max_nhwc_same_overlapping"])
def test_reduce_window_second_derivatives_match_jax(name):
    case = WINDOW_CASES[name]
    x = _rng(12).standard_normal(case[0])
    v = _rng(13).standard_normal(x.shape)

    def hvp(x):
        g = fgrad.grad(lambda x: fnp.sum(fnp.sin(_window_call(case, x))))(x)
        return fnp.sum(g * v)

    def jax_hvp(x):
        g = jax.grad(lambda x: jnp.sum(jnp.sin(_window_call(case, x, use_jax=True))))(x)
        return jnp.sum(g * v)

    got, want = fgrad.grad(hvp)(x), jax.grad(jax_hvp)(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-11)


def test_max_pool_ties_gradient_goes_to_first_maximum():
    # Overlapping 2x2 windows, stride 1; ties inside windows. Each window's cotangent
    # goes entirely to its first maximal element in row-major window order.
    x = np.array([[1.0, 3.0, 3.0], [3.0, 0.0, 3.0], [2.0, 3.0, 1.0]])
    ct = np.array([[1.0, 10.0], [100.0, 1000.0]])

    def pooled(x):
        return reduce_window(x, -np.inf, lax.max, (2, 2), (1, 1), "VALID")

    np.testing.assert_array_equal(np.asarray(pooled(x)), [[3.0, 3.0], [3.0, 3.0]])
    got = fgrad.vjp(pooled, x)[1](ct)[0]
    # windows: (0,0) -> x[0,1]; (0,1) -> x[0,1]; (1,0) -> x[1,0]; (1,1) -> x[1,2].
    want = np.array([[0.0, 11.0, 0.0], [100.0, 0.0, 1000.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(got), want)
    jax_got = jax.vjp(
        lambda x: jax.lax.reduce_window(x, -np.inf, jax.lax.max, (2, 2), (1, 1), "VALID"), x
    )[1](ct)[0]
    np.testing.assert_array_equal(np.asarray(jax_got), want)
    # The JVP reads the tangent at the same element.
    t = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(np.asarray(fgrad.jvp(pooled, (x,), (t,))[1]), [[1, 1], [3, 5]])
    # All-equal windows (constant image) with SAME padding: the first real element wins.
    ones = np.ones((3, 3))
    g = fgrad.grad(lambda x: fnp.sum(reduce_window(x, -np.inf, lax.max, (2, 2), (1, 1), "SAME")))
    want_ones = jax.grad(
        lambda x: jnp.sum(jax.lax.reduce_window(x, -np.inf, jax.lax.max, (2, 2), (1, 1), "SAME"))
    )(ones)
    np.testing.assert_array_equal(np.asarray(g(ones)), np.asarray(want_ones))


def test_reduce_window_convenience_functions():
    x = _rng(14).standard_normal((2, 6, 5, 3))
    args = ((1, 2, 3, 1), (1, 2, 1, 1), "SAME")
    np.testing.assert_allclose(
        np.asarray(reduce_window_sum(x, *args)),
        np.asarray(jax.lax.reduce_window(x, 0.0, jax.lax.add, *args)),
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        np.asarray(reduce_window_max(x, *args)),
        np.asarray(jax.lax.reduce_window(x, -np.inf, jax.lax.max, *args)),
    )
    # float32 stays float32; integers use the dtype's lowest value as max padding.
    assert reduce_window_max(x.astype(np.float32), *args).dtype == np.float32
    xi = np.arange(12, dtype=np.int32).reshape(3, 4) - 20
    np.testing.assert_array_equal(
        np.asarray(reduce_window_max(xi, (2, 2), (1, 1), "SAME")),
        np.asarray(
            jax.lax.reduce_window(
                xi, np.int32(np.iinfo(np.int32).min), jax.lax.max, (2, 2), (1, 1), "SAME"
            )
        ),
    )


def test_avg_pool_gradient_through_grad_of_grad():
    # A typical layer: average pooling as a windowed sum divided by the window size.
    x = _rng(15).standard_normal((1, 4, 4, 2))

    def f(x):
        pooled = reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
        return fnp.sum(pooled**3)

    def jf(x):
        pooled = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return jnp.sum((pooled / 4.0) ** 3)

    v = _rng(16).standard_normal(x.shape)
    got = fgrad.grad(lambda x: fnp.sum(fgrad.grad(f)(x) * v))(x)
    want = jax.grad(lambda x: jnp.sum(jax.grad(jf)(x) * v))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-12)


def test_reduce_window_errors():
    x = np.zeros((4, 5))
    with pytest.raises(ValueError, match="lax.add and lax.max"):
        reduce_window(x, 0.0, lax.mul, (2, 2), (1, 1), "VALID")
    with pytest.raises(ValueError, match="window_dilation"):
        reduce_window(x, 0.0, lax.add, (2, 2), (1, 1), "VALID", window_dilation=(2, 1))
    with pytest.raises(ValueError, match="base_dilation"):
        reduce_window(x, 0.0, lax.add, (2, 2), (1, 1), "VALID", base_dilation=(1, 2))
    with pytest.raises(ValueError, match=r"one entry per axis.*\(4, 5\)"):
        reduce_window(x, 0.0, lax.add, (2,), (1,), "VALID")
    with pytest.raises(TypeError) as info:
        reduce_window_max(x, (2, 2), (1, 1), ((-3, -3), (0, 0)))
    msg = str(info.value)
    assert "reduce_window_max" in msg and "f64[4,5]" in msg and "more negative" in msg
