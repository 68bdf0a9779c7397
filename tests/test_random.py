"""fgrad.random and the bit primitives behind it.

Three kinds of checks: equality with ``jax.random`` (the oracle; bit for bit where the
algorithms are the same integer arithmetic), statistical tests that fail for a wrong
distribution (moments, Kolmogorov-Smirnov against CDFs computed here, independence),
and behaviour under transformations (tracing, grad).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import random
from fgrad.lax import bits as fbits

jax = pytest.importorskip("jax")
jnp = jax.numpy
jr = jax.random

N = 100_000  # draws for the statistical tests


def assert_same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_array_equal(a, b)


def ks_statistic(samples, cdf) -> float:
    """Kolmogorov-Smirnov distance between the empirical CDF of ``samples`` and ``cdf``."""
    x = np.sort(np.asarray(samples, np.float64))
    n = x.size
    f = cdf(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def ks_critical(n: int) -> float:
    # Asymptotic critical value of the one-sample KS test at alpha = 0.001.
    return 1.95 / math.sqrt(n)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def normal_cdf(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


# ---------------------------------------------------------------- bit primitives


def test_threefry2x32_known_answer():
    # Random123's known-answer test for Threefry-2x32-20 with a zero key and counter.
    u = np.uint32
    out = fbits.threefry2x32(u(0), u(0), u(0), u(0))
    assert [int(v) for v in out] == [0x6B200159, 0x99BA4EFE]


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**31))
def test_threefry2x32_matches_jax(k1, k2, seed):
    from jax._src.random.threefry2x32 import threefry2x32_p

    rng = np.random.default_rng(seed)
    # One counter shape for every example: each new shape costs JAX a compile.
    x1 = rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)
    x2 = rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)
    ours = fbits.threefry2x32(np.uint32(k1), np.uint32(k2), x1, x2)
    theirs = threefry2x32_p.bind(jnp.uint32(k1), jnp.uint32(k2), jnp.asarray(x1), jnp.asarray(x2))
    assert_same(ours[0], theirs[0])
    assert_same(ours[1], theirs[1])


def test_threefry2x32_rejects_non_uint32():
    with pytest.raises(TypeError, match="uint32"):
        fbits.threefry2x32(
            np.int32(0), np.uint32(0), np.zeros(3, np.uint32), np.zeros(3, np.uint32)
        )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.int32, np.uint64, np.int64])
def test_shifts_match_jax(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, 64, dtype=dtype, endpoint=True)
    y = rng.integers(0, info.bits + 4, 64).astype(dtype)  # includes shifts >= the width
    for ours, theirs in [
        (fbits.shift_left, jax.lax.shift_left),
        (fbits.shift_right_logical, jax.lax.shift_right_logical),
        (fbits.shift_right_arithmetic, jax.lax.shift_right_arithmetic),
    ]:
        out = ours(x, y)
        assert out.dtype == dtype
        assert_same(out, theirs(x, y))


def test_shift_by_width_or_more_is_zero():
    x = np.uint32([1, 0xFFFFFFFF])
    assert fbits.shift_left(x, np.uint32(32)).tolist() == [0, 0]
    assert fbits.shift_right_logical(x, np.uint32(40)).tolist() == [0, 0]


@pytest.mark.parametrize(
    "src, dst, shape",
    [
        (np.float32, np.uint32, (3, 4)),
        (np.uint32, np.float32, (5,)),
        (np.float64, np.uint32, (3,)),
        (np.uint32, np.float64, (3, 2)),
        (np.float64, np.int64, ()),
        (np.float32, np.uint16, (2,)),
    ],
)
def test_bitcast_convert_type_matches_jax(src, dst, shape):
    nbytes = math.prod(shape) * np.dtype(src).itemsize
    raw = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8)
    x = raw.view(src).reshape(shape)  # arbitrary bit patterns (NaNs included)
    ours = np.asarray(fbits.bitcast_convert_type(x, dst))
    theirs = np.asarray(jax.lax.bitcast_convert_type(x, dst))
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert ours.tobytes() == theirs.tobytes()


def test_bitcast_convert_type_bad_shape():
    with pytest.raises(TypeError, match="trailing axis"):
        fbits.bitcast_convert_type(np.zeros(3, np.uint32), np.float64)


def test_iota_2x32_shape():
    hi, lo = fbits.iota_2x32_shape((2, 3))
    assert hi.tolist() == [[0, 0, 0], [0, 0, 0]]
    assert lo.tolist() == [[0, 1, 2], [3, 4, 5]]


# ---------------------------------------------------------------- erf_inv


def test_erf_inv_accuracy():
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            rng.uniform(-1, 1, 20_000),
            1 - np.logspace(-16, -1, 300),  # the far tails
            -(1 - np.logspace(-16, -1, 300)),
            np.logspace(-300, -1, 100),  # tiny arguments
        ]
    )
    ours = np.asarray(fbits.erf_inv(x))
    ref = special.erfinv(x)
    np.testing.assert_allclose(ours, ref, rtol=4 * np.finfo(np.float64).eps, atol=0)
    x32 = x.astype(np.float32)
    ours32 = fbits.erf_inv(x32)
    assert ours32.dtype == np.float32
    np.testing.assert_allclose(
        np.asarray(ours32),
        special.erfinv(x32.astype(np.float64)),
        rtol=1e-7,
        atol=np.finfo(np.float32).smallest_subnormal * 2,
    )


def test_erf_inv_edges():
    out = np.asarray(fbits.erf_inv(np.array([-1.0, 0.0, 1.0, 1.5, -2.0, np.nan])))
    assert out[0] == -np.inf and out[1] == 0.0 and out[2] == np.inf
    assert np.isnan(out[3:]).all()


def test_erf_inv_gradients():
    x = fnp.asarray(np.array([-0.9, -0.3, 0.0, 0.5, 0.99]))

    def f(v):
        return fnp.sum(fbits.erf_inv(v))

    g = np.asarray(fgrad.grad(f)(x))
    y = np.asarray(fbits.erf_inv(x))
    np.testing.assert_allclose(g, math.sqrt(math.pi) / 2 * np.exp(y**2), rtol=1e-12)
    # Second derivative: d/dx [c exp(y^2)] = 2 y (c exp(y^2))^2, with c = sqrt(pi)/2.
    gg = np.asarray(fgrad.grad(lambda v: fnp.sum(fgrad.grad(f)(v)))(x))
    np.testing.assert_allclose(gg, 2 * y * g**2, rtol=1e-10)
    # Forward mode agrees with reverse mode.
    _, t = fgrad.jvp(lambda v: fbits.erf_inv(v), (x,), (fnp.ones_like(x),))
    np.testing.assert_allclose(np.asarray(t), g, rtol=1e-12)


# ---------------------------------------------------------------- keys against JAX


def test_key_matches_jax():
    for seed in [0, 1, 42, -1, 2**31, 2**40 + 5, 2**63 - 1, -(2**63)]:
        assert_same(random.key(seed), jr.PRNGKey(seed))
    assert random.PRNGKey is random.key


def test_key_from_numpy_seed_matches_jax():
    # A 32-bit seed fills only the low word; a 64-bit one both.
    for seed in [np.int32(-7), np.int64(-7)]:
        assert_same(random.key(seed), jr.PRNGKey(seed))
        assert_same(random.key(fnp.asarray(seed)), jr.PRNGKey(seed))
    assert random.key(np.int8(-3)).tolist() == [0, 2**32 - 3]
    assert random.key(np.uint32(9)).tolist() == [0, 9]


def test_key_traced_seed():
    # The seed path for arrays goes through primitives, so it traces.
    seed = fnp.asarray(np.int64(-5))
    traced = fgrad.make_jaxpr(random.key)(seed)
    assert_same(traced(seed)[0], jr.PRNGKey(-5))


def test_key_rejects_bad_seeds():
    with pytest.raises(TypeError, match="integer"):
        random.key(1.5)
    with pytest.raises(TypeError, match="scalar"):
        random.key(np.arange(2))
    with pytest.raises(OverflowError):
        random.key(2**64)


def test_split_matches_jax():
    for num in [2, (2, 3)]:
        assert_same(random.split(random.key(42), num), jr.split(jr.PRNGKey(42), num))
    assert random.split(random.key(0), 5).shape == (5, 2)
    assert random.split(random.key(0), ()).shape == (2,)


def test_fold_in_matches_jax():
    for data in [0, 3, 2**32 - 1, np.int32(-1), np.uint32(7)]:
        assert_same(random.fold_in(random.key(42), data), jr.fold_in(jr.PRNGKey(42), data))


def test_fold_in_rejects_bad_data():
    with pytest.raises(OverflowError):
        random.fold_in(random.key(0), -1)
    with pytest.raises(TypeError, match="scalar"):
        random.fold_in(random.key(0), np.arange(2))


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (0, TypeError, r"random.key\(0\)"),
        (np.zeros(2, np.int32), TypeError, "dtype int32"),
        (np.zeros(3, np.uint32), TypeError, r"shape \(3,\)"),
        (np.zeros((4, 2), np.uint32), ValueError, "single key"),
        ([0, 1], TypeError, "list"),
    ],
)
def test_key_validation(bad, err, match):
    with pytest.raises(err, match=match):
        random.normal(bad, (2,))


def test_numpy_uint32_key_is_accepted():
    k = np.array([0, 42], np.uint32)
    assert_same(random.uniform(k, (3,)), random.uniform(random.key(42), (3,)))


# ---------------------------------------------------------------- samplers against JAX


# The JAX comparisons share a few shapes: every new (function, shape, dtype) costs JAX
# a compile of about half a second.
SHAPE = (1001,)


@pytest.mark.parametrize(
    "shape, dtype", [(SHAPE, np.uint8), ((), np.uint32), (SHAPE, np.uint32), (SHAPE, np.uint64)]
)
def test_bits_matches_jax(shape, dtype):
    ours = random.bits(random.key(7), shape, dtype)
    assert ours.dtype == dtype and ours.shape == shape
    assert_same(ours, jr.bits(jr.PRNGKey(7), shape, dtype))


def test_bits_default_dtype_is_uint32():
    assert random.bits(random.key(0), (2,)).dtype == np.uint32
    with pytest.raises(ValueError, match="unsigned"):
        random.bits(random.key(0), (2,), np.int32)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_uniform_matches_jax_exactly(dtype):
    ours = random.uniform(random.key(11), SHAPE, dtype)
    assert ours.dtype == dtype
    assert_same(ours, jr.uniform(jr.PRNGKey(11), SHAPE, dtype))
    assert random.uniform(random.key(11), (3, 4), dtype).shape == (3, 4)


@pytest.mark.parametrize("dtype", [np.float32])
def test_uniform_with_bounds_matches_jax_to_one_ulp(dtype):
    # XLA fuses u * (max - min) + min into one FMA; NumPy rounds the product first, so
    # the two differ by at most one rounding of the product (~ulp of the span).
    ours = np.asarray(random.uniform(random.key(11), (1000,), dtype, -3.5, 7.25))
    theirs = np.asarray(jr.uniform(jr.PRNGKey(11), (1000,), dtype, -3.5, 7.25))
    assert np.max(np.abs(ours - theirs)) <= np.spacing(dtype(10.75))
    assert np.mean(ours == theirs) > 0.5


def test_uniform_array_bounds():
    lo = np.array([0.0, 10.0, -5.0], np.float32)
    hi = np.array([1.0, 20.0, -4.0], np.float32)
    x = np.asarray(random.uniform(random.key(0), (1000, 3), minval=lo, maxval=hi))
    assert x.shape == (1000, 3)
    assert (x >= lo).all() and (x < hi).all()
    with pytest.raises(ValueError, match="broadcast"):
        random.uniform(random.key(0), (2,), minval=np.zeros(3))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_normal_matches_jax(dtype, rtol):
    ours = np.asarray(random.normal(random.key(5), (20_000,), dtype))
    theirs = np.asarray(jr.normal(jr.PRNGKey(5), (20_000,), dtype))
    assert ours.dtype == dtype
    # JAX's erf_inv is a float32 polynomial (a few ulp); fgrad's is within 1 ulp.
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol)
    rel = np.abs(ours - theirs) / np.abs(theirs)
    assert np.median(rel) < 10 * np.finfo(dtype).eps


def test_truncated_normal_matches_jax():
    ours = random.truncated_normal(random.key(5), -2.0, 1.5, SHAPE)
    theirs = jr.truncated_normal(jr.PRNGKey(5), -2.0, 1.5, SHAPE, np.float32)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=2e-6)


def test_gumbel_matches_jax():
    ours = random.gumbel(random.key(5), SHAPE, np.float64)
    theirs = jr.gumbel(jr.PRNGKey(5), SHAPE, np.float64)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    "p, mode", [(np.float32(0.3), "low"), (np.float32([0.1, 0.5, 0.9]), "high")]
)
def test_bernoulli_matches_jax(p, mode):
    ours = random.bernoulli(random.key(9), p, (500, 3), mode=mode)
    assert ours.dtype == np.bool_
    assert_same(ours, jr.bernoulli(jr.PRNGKey(9), p, (500, 3), mode=mode))


@pytest.mark.parametrize(
    "dtype, bounds",
    [
        (
            np.int32,
            [
                (0, 10),
                (-5, 5),
                (0, 2**31),  # maxval above the dtype's range
                (-(2**31), 2**31 - 1),
                (3, 3),  # an empty range gives minval
                (5, 2),
            ],
        ),
        (np.int8, [(0, 100), (-200, 300)]),  # narrow types: sampled as int32, clipped
        (np.int64, [(0, 2**40)]),
    ],
)
def test_randint_matches_jax(dtype, bounds):
    for lo, hi in bounds:
        ours = random.randint(random.key(13), (500,), lo, hi, dtype)
        assert ours.dtype == dtype
        assert_same(ours, jr.randint(jr.PRNGKey(13), (500,), lo, hi, dtype))


def test_randint_array_bounds_match_jax():
    lo, hi = np.array([0, 10, 20]), np.array([5, 15, 100])
    ours = random.randint(random.key(1), (4, 3), lo, hi)
    assert ours.dtype == np.int32
    assert_same(ours, jr.randint(jr.PRNGKey(1), (4, 3), lo, hi, jnp.int32))


@pytest.mark.parametrize("n", [100, 70_000])  # 70_000 takes two shuffle rounds
def test_permutation_of_int_matches_jax(n):
    assert_same(random.permutation(random.key(3), n), jr.permutation(jr.PRNGKey(3), n))


@pytest.mark.parametrize("axis, independent", [(0, False), (1, True), (-1, False)])
def test_permutation_of_array_matches_jax(axis, independent):
    x = np.arange(24.0).reshape(4, 6)
    ours = random.permutation(random.key(3), x, axis, independent)
    assert_same(ours, jr.permutation(jr.PRNGKey(3), x, axis, independent))


@pytest.mark.parametrize("axis, shape", [(-1, (7, 2)), (0, None)])
def test_categorical_matches_jax(axis, shape):
    logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]))
    ours = random.categorical(random.key(4), logits, axis, shape)
    assert_same(ours, jr.categorical(jr.PRNGKey(4), logits, axis, shape))


def test_categorical_without_replacement_matches_jax():
    logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]))
    ours = random.categorical(random.key(4), logits, -1, (3, 2), replace=False)
    assert_same(ours, jr.categorical(jr.PRNGKey(4), logits, -1, (3, 2), replace=False))
    rows = np.asarray(ours).T  # each batch row draws 3 distinct categories
    assert all(sorted(r) == [0, 1, 2] for r in rows)


def test_choice_matches_jax():
    k, jk = random.key(6), jr.PRNGKey(6)
    p = np.linspace(0.1, 1.0, 10)
    p /= p.sum()
    assert_same(random.choice(k, 10, (4,), True, p), jr.choice(jk, 10, (4,), True, p))
    assert_same(random.choice(k, 10, (4,), False, p), jr.choice(jk, 10, (4,), False, p))
    # Without p: with replacement JAX's x64 mode draws int64 indices, fgrad (like JAX's
    # default 32-bit mode) int32 ones, so compare with randint; without replacement
    # it is the first entries of a permutation.
    assert_same(random.choice(k, 10, (500,)), jr.randint(jk, (500,), 0, 10, jnp.int32))
    assert_same(random.choice(k, 100, (3,), replace=False), jr.permutation(jk, 100)[:3])
    a = np.arange(20.0).reshape(5, 4)
    assert random.choice(k, a, (2, 3), axis=1).shape == (5, 2, 3)
    with pytest.raises(ValueError, match="larger sample"):
        random.choice(k, 3, (4,), replace=False)


# ---------------------------------------------------------------- statistics


def test_uniform_moments_and_ks():
    for dtype in (np.float32, np.float64):
        x = np.asarray(random.uniform(random.key(21), (N,), dtype), np.float64)
        assert x.min() >= 0.0 and x.max() < 1.0
        tol = 5 * math.sqrt(1 / 12 / N)
        assert abs(x.mean() - 0.5) < tol
        assert abs(x.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / N)
        assert ks_statistic(x, lambda v: np.clip(v, 0, 1)) < ks_critical(N)


def test_uniform_ks_detects_a_wrong_distribution():
    # The KS check is strong enough to reject a slightly skewed sample.
    x = np.asarray(random.uniform(random.key(21), (N,)), np.float64) ** 1.02
    assert ks_statistic(x, lambda v: v) > ks_critical(N)


def test_normal_moments_and_ks():
    x = np.asarray(random.normal(random.key(22), (N,)), np.float64)
    assert abs(x.mean()) < 5 / math.sqrt(N)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / N)
    assert abs(np.mean(x**3)) < 5 * math.sqrt(15 / N)  # skewness 0
    assert abs(np.mean(x**4) - 3) < 5 * math.sqrt(96 / N)  # kurtosis 3
    assert ks_statistic(x, normal_cdf) < ks_critical(N)


def test_normal_float64_ks():
    x = np.asarray(random.normal(random.key(23), (N,), np.float64))
    assert x.dtype == np.float64
    assert ks_statistic(x, normal_cdf) < ks_critical(N)


def test_truncated_normal_bounds_and_ks():
    lo, hi = -1.0, 2.0
    x = np.asarray(random.truncated_normal(random.key(24), lo, hi, (N,)), np.float64)
    assert (x > lo).all() and (x < hi).all()
    a, b = normal_cdf(np.float64(lo)), normal_cdf(np.float64(hi))
    assert ks_statistic(x, lambda v: (normal_cdf(v) - a) / (b - a)) < ks_critical(N)


def test_truncated_normal_array_bounds_and_dtype():
    lower = np.array([-1.0, 0.0, 5.0])
    upper = np.array([1.0, 0.5, 5.5])
    x = random.truncated_normal(random.key(0), lower, upper, (2000, 3), np.float64)
    assert x.dtype == np.float64
    v = np.asarray(x)
    assert (v > lower).all() and (v < upper).all()
    assert random.truncated_normal(random.key(0), lower, upper).shape == (3,)


def test_bernoulli_frequency():
    for p in (0.5, 0.3, 0.01):
        x = np.asarray(random.bernoulli(random.key(25), p, (N,)))
        assert x.dtype == np.bool_
        assert abs(x.mean() - p) < 5 * math.sqrt(p * (1 - p) / N)


def test_bernoulli_default_shape_follows_p():
    p = fnp.asarray([0.0, 1.0, 0.5])
    x = random.bernoulli(random.key(0), p)
    assert x.shape == (3,)
    assert x.tolist()[:2] == [False, True]


def test_randint_frequencies():
    lo, hi = -3, 7
    x = np.asarray(random.randint(random.key(26), (N,), lo, hi))
    assert x.min() == lo and x.max() == hi - 1
    counts = np.bincount(x - lo, minlength=hi - lo)
    expected = N / (hi - lo)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 30  # 9 degrees of freedom: P(chi2 > 30) ~ 4e-4


def test_gumbel_ks():
    x = np.asarray(random.gumbel(random.key(27), (N,)), np.float64)
    assert ks_statistic(x, lambda v: np.exp(-np.exp(-v))) < ks_critical(N)


def test_categorical_frequencies_match_softmax():
    logits = np.array([1.0, -0.5, 2.0, 0.0], np.float32)
    probs = np.exp(logits) / np.exp(logits).sum()
    x = np.asarray(random.categorical(random.key(28), logits, shape=(N,)))
    freq = np.bincount(x, minlength=4) / N
    np.testing.assert_allclose(freq, probs, atol=5 * math.sqrt(0.25 / N))


def test_categorical_batch_along_axis0():
    logits = np.log(np.array([[0.9, 0.1], [0.1, 0.9]], np.float32))  # columns = batch
    x = np.asarray(random.categorical(random.key(29), logits, axis=0, shape=(20_000, 2)))
    assert x.shape == (20_000, 2)
    np.testing.assert_allclose(x.mean(axis=0), [0.1, 0.9], atol=0.015)


def test_split_streams_are_independent():
    k1, k2 = random.split(random.key(30))
    a = np.asarray(random.normal(k1, (N,)), np.float64)
    b = np.asarray(random.normal(k2, (N,)), np.float64)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(N)
    c = np.asarray(random.normal(random.fold_in(random.key(30), 1), (N,)), np.float64)
    assert abs(np.corrcoef(a, c)[0, 1]) < 5 / math.sqrt(N)
    # Neighbouring draws of one stream are uncorrelated too.
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 5 / math.sqrt(N)


def test_split_many_keys_are_distinct():
    keys = np.asarray(random.split(random.key(31), 1000))
    assert len({tuple(k) for k in keys}) == 1000
    firsts = np.array([np.asarray(random.uniform(k, ())) for k in keys[:200]])
    assert ks_statistic(firsts, lambda v: v) < ks_critical(200)


def test_determinism():
    k = random.key(32)
    assert_same(random.bits(k, (1000,)), random.bits(k, (1000,)))
    assert_same(random.normal(k, (100,)), random.normal(random.key(32), (100,)))
    assert not np.array_equal(
        np.asarray(random.bits(k, (10,))), np.asarray(random.bits(random.key(33), (10,)))
    )


def test_permutation_is_a_permutation():
    k = random.key(34)
    assert sorted(np.asarray(random.permutation(k, 1000)).tolist()) == list(range(1000))
    x = np.arange(30).reshape(5, 6)
    cols = np.asarray(random.permutation(k, x, axis=1))
    assert sorted(cols[0].tolist()) == list(range(6))
    assert (cols - cols[:, :1] == cols[0] - cols[0, 0]).all()  # same column order in each row
    ind = np.asarray(random.permutation(k, x, axis=1, independent=True))
    assert all(sorted(r) == sorted(xr) for r, xr in zip(ind.tolist(), x.tolist(), strict=True))
    assert not (ind - ind[:, :1] == ind[0] - ind[0, 0]).all()  # rows shuffled differently


# ---------------------------------------------------------------- transformations


_DRAWS = {
    "normal": lambda k: random.normal(k, (3,)),
    "split": lambda k: random.split(k, 3),
    "fold_in": lambda k: random.fold_in(k, 5),
    "uniform64": lambda k: random.uniform(k, (2, 2), np.float64, -1.0, 2.0),
    "bernoulli": lambda k: random.bernoulli(k, 0.3, (5,)),
    "randint": lambda k: random.randint(k, (4,), 0, 7),
    "permutation": lambda k: random.permutation(k, 6),
    "truncated_normal": lambda k: random.truncated_normal(k, -1.0, 1.0, (4,)),
    "categorical": lambda k: random.categorical(k, fnp.zeros((2, 3))),
    "bits64": lambda k: random.bits(k, (2,), np.uint64),
}


@pytest.mark.parametrize("name", sorted(_DRAWS))
def test_traced_draw_equals_eager(name):
    # Tracing the draw with the key as an input and evaluating the jaxpr gives the
    # eager bits exactly (what a jitted draw runs).
    f = _DRAWS[name]
    k = random.key(35)
    closed = fgrad.make_jaxpr(f)(k)
    assert any(e.primitive.name == "threefry2x32" for e in closed.eqns)
    assert_same(closed(k)[0], f(k))
    if hasattr(fgrad, "jit"):
        assert_same(fgrad.jit(f)(k), f(k))


@pytest.mark.parametrize("name", ["normal", "split", "randint", "permutation", "categorical"])
def test_vmap_over_keys(name):
    f = _DRAWS[name]
    keys = random.split(random.key(38), 4)
    expected = np.stack([np.asarray(f(keys[i])) for i in range(4)])
    assert_same(fgrad.vmap(f)(keys), expected)


def test_vmap_over_seeds():
    keys = fgrad.vmap(random.key)(fnp.arange(3))
    assert keys.tolist() == [[0, 0], [0, 1], [0, 2]]


def test_grad_through_a_function_that_draws():
    key = random.key(36)
    w = fnp.asarray([1.0, 2.0, 3.0])

    def loss(w, key):
        noise = random.normal(key, (3,))
        keep = random.bernoulli(random.fold_in(key, 1), 0.5, (3,))
        return fnp.sum(fnp.where(keep, w * noise, 0.0) ** 2)

    g = np.asarray(fgrad.grad(loss)(w, key))
    noise = np.asarray(random.normal(key, (3,)))
    keep = np.asarray(random.bernoulli(random.fold_in(key, 1), 0.5, (3,)))
    np.testing.assert_allclose(g, np.where(keep, 2 * np.asarray(w) * noise**2, 0.0), rtol=1e-6)
    with pytest.raises(TypeError, match="floating-point"):
        fgrad.grad(loss, argnums=1)(w, key)


def test_grad_through_distribution_parameters():
    key = random.key(37)
    # uniform(min, max) = u * (max - min) + min: d/dmin sum = sum(1 - u).
    u = np.asarray(random.uniform(key, (4,)), np.float64)
    g = fgrad.grad(lambda m: fnp.sum(random.uniform(key, (4,), minval=m, maxval=5.0)))(
        fnp.asarray(1.0)
    )
    np.testing.assert_allclose(float(g), np.sum(1 - u), rtol=1e-5)
    # Reparameterised normal: d/ds sum(s * z) = sum(z).
    z = np.asarray(random.normal(key, (4,)))
    g = fgrad.grad(lambda s: fnp.sum(s * random.normal(key, (4,))))(fnp.asarray(2.0))
    np.testing.assert_allclose(float(g), z.sum(), rtol=1e-6)


def test_keys_flow_through_pytrees():
    keys = {"a": random.key(0), "b": [random.key(1)]}
    leaves = fgrad.tree.tree_leaves(keys)
    assert all(leaf.dtype == np.uint32 and leaf.shape == (2,) for leaf in leaves)
    assert random.key_data(keys["a"]) is keys["a"]


def test_debug_key_reuse_names_both_uses():
    import fgrad

    fgrad.config.update("debug_key_reuse", True)
    try:
        k = random.key(0)
        random.normal(k, (2,))  # first use
        with pytest.raises(random.KeyReuseError) as info:
            random.uniform(k, (2,))  # second use
        msg = str(info.value)
        assert "random.normal" in msg and "random.uniform" in msg
        assert msg.count("test_random.py") == 2
        k1, k2 = random.split(random.key(1))  # split keys are fresh
        random.normal(k1, (2,))
        random.normal(k2, (2,))
        random.truncated_normal(random.key(2), -1.0, 1.0, (3,))  # nested use is one use
    finally:
        fgrad.config.update("debug_key_reuse", False)
    k = random.key(0)
    random.normal(k, (2,))
    random.normal(k, (2,))  # off: no check
