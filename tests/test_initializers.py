"""fgrad.nn.initializers: the variance each scheme promises, orthogonality, sparsity."""

import math

import numpy as np
import pytest

from fgrad import random
from fgrad.nn import initializers as init

KEY = random.key(0)

# Dense (in, out) and convolution HWIO kernels, each with >= 100k entries so the
# sample variance is within ~1% of the promised one.
SHAPES = [(512, 256), (3, 3, 64, 128), (5, 5, 32, 64)]


def fans(shape):
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


@pytest.mark.parametrize("shape", SHAPES + [(4, 3), (7,) * 3])
def test_compute_fans(shape):
    assert init.compute_fans(shape) == fans(shape)


def test_compute_fans_explicit_axes():
    assert init.compute_fans((10, 20, 30), in_axis=0, out_axis=(1, 2)) == (10, 600)
    assert init.compute_fans((8, 10, 20), batch_axis=0) == (10, 20)
    with pytest.raises(ValueError, match="at least 2D"):
        init.compute_fans((5,))


# (factory, promised variance as a function of (fan_in, fan_out), distribution)
SCHEMES = {
    "glorot_uniform": (init.glorot_uniform, lambda i, o: 2 / (i + o), "uniform"),
    "glorot_normal": (init.glorot_normal, lambda i, o: 2 / (i + o), "truncated"),
    "he_uniform": (init.he_uniform, lambda i, o: 2 / i, "uniform"),
    "he_normal": (init.he_normal, lambda i, o: 2 / i, "truncated"),
    "lecun_uniform": (init.lecun_uniform, lambda i, o: 1 / i, "uniform"),
    "lecun_normal": (init.lecun_normal, lambda i, o: 1 / i, "truncated"),
}


@pytest.mark.parametrize("name", sorted(SCHEMES))
@pytest.mark.parametrize("shape", SHAPES)
def test_variance_scaling_schemes(name, shape):
    factory, variance, kind = SCHEMES[name]
    w = factory()(KEY, shape)
    assert w.shape == shape and w.dtype == np.float32
    w = np.asarray(w, np.float64)
    var = variance(*fans(shape))
    assert abs(w.mean()) < 5 * math.sqrt(var / w.size)
    np.testing.assert_allclose(w.var(), var, rtol=0.03)
    std = math.sqrt(var)
    if kind == "uniform":  # uniform on [-sqrt(3 var), sqrt(3 var))
        limit = math.sqrt(3 * var)
        assert w.min() >= -limit and w.max() < limit
        assert w.max() > 0.99 * limit
    else:  # truncated at two standard deviations of the untruncated normal
        bound = 2 * std / 0.87962566103423978
        assert np.abs(w).max() < bound
        assert np.abs(w).max() > 0.99 * bound


def test_aliases():
    assert init.xavier_uniform is init.glorot_uniform
    assert init.xavier_normal is init.glorot_normal
    assert init.kaiming_uniform is init.he_uniform
    assert init.kaiming_normal is init.he_normal
    assert init.he_normal.__name__ == "he_normal"


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg", "fan_geo_avg"])
def test_variance_scaling_modes_normal(mode):
    shape = (3, 3, 32, 96)
    fan_in, fan_out = fans(shape)
    n = {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "fan_avg": (fan_in + fan_out) / 2,
        "fan_geo_avg": math.sqrt(fan_in * fan_out),
    }[mode]
    w = np.asarray(init.variance_scaling(0.5, mode, "normal")(KEY, shape), np.float64)
    np.testing.assert_allclose(w.var(), 0.5 / n, rtol=0.03)


def test_variance_scaling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        init.variance_scaling(1.0, "fan_sideways", "normal")
    with pytest.raises(ValueError, match="distribution"):
        init.variance_scaling(1.0, "fan_in", "cauchy")


def test_simple_distributions():
    w = np.asarray(init.normal(0.5)(KEY, (400, 250)), np.float64)
    np.testing.assert_allclose([w.mean(), w.std()], [0.0, 0.5], atol=0.01)
    w = np.asarray(init.uniform(2.0)(KEY, (400, 250)), np.float64)  # [0, scale), as JAX
    assert w.min() >= 0 and w.max() < 2
    np.testing.assert_allclose([w.mean(), w.var()], [1.0, 4 / 12], rtol=0.02)
    w = np.asarray(init.truncated_normal(0.1)(KEY, (400, 250)), np.float64)
    assert np.abs(w).max() < 0.2
    # No variance correction: std of a two-sigma truncated standard normal, times 0.1.
    np.testing.assert_allclose(w.std(), 0.1 * 0.87962566103423978, rtol=0.02)
    w = np.asarray(init.truncated_normal(1.0, lower=0.0, upper=1.0)(KEY, (1000,)))
    assert w.min() > 0 and w.max() < 1


def test_constants():
    assert init.zeros(KEY, (2, 3)).tolist() == [[0.0] * 3] * 2
    assert init.ones(KEY, (2,), np.float64).dtype == np.float64
    c = init.constant(0.25)(KEY, (2, 2))
    assert c.dtype == np.float32 and c.tolist() == [[0.25, 0.25]] * 2
    assert init.constant(np.arange(3.0))(KEY, (2, 3)).tolist() == [[0.0, 1.0, 2.0]] * 2


@pytest.mark.parametrize(
    "factory",
    [
        init.glorot_uniform(),
        init.he_normal(),
        init.normal(),
        init.uniform(),
        init.truncated_normal(),
        init.orthogonal(),
        init.sparse(0.5),
        init.constant(1.0),
    ],
)
def test_dtypes(factory):
    assert factory(KEY, (6, 4)).dtype == np.float32  # the default
    w = factory(KEY, (6, 4), np.float64)
    assert w.dtype == np.float64
    with pytest.raises(ValueError, match="floating"):
        factory(KEY, (6, 4), np.int32)


def test_factory_dtype_is_the_default():
    assert init.glorot_uniform(dtype=np.float64)(KEY, (3, 3)).dtype == np.float64
    assert init.normal(dtype=np.float64)(KEY, (3,)).dtype == np.float64


def test_determinism_and_key_dependence():
    a = np.asarray(init.glorot_normal()(KEY, (30, 20)))
    assert np.array_equal(a, np.asarray(init.glorot_normal()(random.key(0), (30, 20))))
    b = np.asarray(init.glorot_normal()(random.key(1), (30, 20)))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    "shape, column_axis",
    [((64, 64), -1), ((100, 30), -1), ((30, 100), -1), ((3, 3, 16, 32), -1), ((8, 5, 6), 0)],
)
@pytest.mark.parametrize("dtype, atol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_orthogonal(shape, column_axis, dtype, atol):
    w = init.orthogonal(column_axis=column_axis)(KEY, shape, dtype)
    assert w.shape == shape and w.dtype == dtype
    m = np.moveaxis(np.asarray(w, np.float64), column_axis, -1).reshape(-1, shape[column_axis])
    rows, cols = m.shape
    if rows >= cols:
        np.testing.assert_allclose(m.T @ m, np.eye(cols), atol=atol)  # orthonormal columns
    else:
        np.testing.assert_allclose(m @ m.T, np.eye(rows), atol=atol)  # orthonormal rows


def test_orthogonal_scale_and_errors():
    q = np.asarray(init.orthogonal(scale=2.0)(KEY, (10, 10)), np.float64)
    np.testing.assert_allclose(q.T @ q, 4 * np.eye(10), atol=1e-4)
    with pytest.raises(ValueError, match="2D"):
        init.orthogonal()(KEY, (5,))
    assert init.orthogonal()(KEY, (0, 3)).shape == (0, 3)


def test_orthogonal_is_haar_distributed():
    # The diagonal of R is made positive: then every entry of a random orthogonal
    # matrix has mean 0 and variance 1/n (no sign bias from the QR routine).
    n = 8
    qs = np.stack([np.asarray(init.orthogonal()(k, (n, n))) for k in random.split(KEY, 300)])
    np.testing.assert_allclose(qs.mean(axis=0), 0.0, atol=5 * math.sqrt(1 / n / 300))
    np.testing.assert_allclose(qs.var(axis=0).mean(), 1 / n, rtol=0.05)


@pytest.mark.parametrize("shape", [(100, 8), (3, 3, 16, 32), (7, 5)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_sparse_fraction_per_column(shape, sparsity):
    w = np.asarray(init.sparse(sparsity, stddev=0.5)(KEY, shape))
    assert w.shape == shape and w.dtype == np.float32
    cols = w.reshape(-1, shape[-1])
    zeros_per_column = (cols == 0).sum(axis=0)
    assert (zeros_per_column == math.ceil(sparsity * cols.shape[0])).all()


def test_sparse_values_and_randomness():
    w = np.asarray(init.sparse(0.5, stddev=0.5)(KEY, (400, 300)), np.float64)
    nonzero = w[w != 0]
    np.testing.assert_allclose(nonzero.std(), 0.5, rtol=0.02)
    # Each entry is zero with probability 1/2, independently of its row.
    row_freq = (w == 0).mean(axis=1)
    assert abs(row_freq.mean() - 0.5) < 1e-9
    assert row_freq.std() < 4 * math.sqrt(0.25 / 300)
    with pytest.raises(ValueError, match="sparsity"):
        init.sparse(1.5)
