"""The CPU backend's Numba kernels against the reference impls, on hypothesis-drawn
shapes, axes, dtypes and values: NaNs, ties, empty axes, non-contiguous operands.

The kernel wrappers send small or NumPy-friendly calls to the reference (see
docs/performance.md, "Eager kernels"); these tests switch that off so that every call
runs the Numba kernel. The last test checks that every registered primitive has a CPU
execution path other than the reference fallback.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from primitive_cases import load_tool

from fgrad.backends import reference
from fgrad.backends.cpu import KERNELS, bits_kernels, index_kernels, reduce_kernels
from fgrad.backends.cpu.emit import EMITTERS
from fgrad.core import primitives

TOOL = load_tool()
TOOL.load_primitives()

DTYPES = ("float32", "float64", "int32", "bool")


@pytest.fixture(autouse=True, scope="module")
def _always_numba():
    saved = reduce_kernels.SMALL, reduce_kernels.ALWAYS, index_kernels.LARGE
    saved_idx = index_kernels.ALWAYS
    reduce_kernels.SMALL, reduce_kernels.ALWAYS = 0, True
    index_kernels.LARGE, index_kernels.ALWAYS = 1 << 62, True
    yield
    reduce_kernels.SMALL, reduce_kernels.ALWAYS, index_kernels.LARGE = saved
    index_kernels.ALWAYS = saved_idx


def ref(name, args, **params):
    out = reference.run(primitives[name], list(args), params)
    return out if primitives[name].multiple_results else out[0]


def assert_same(got, want, ctx=""):
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype), ctx
    if want.dtype.kind == "f":
        tol = 1e-5 if want.dtype.itemsize <= 4 else 1e-12
        finite = np.abs(want[np.isfinite(want)])
        atol = tol * (float(finite.max()) if finite.size else 1.0)
        np.testing.assert_allclose(got, want, rtol=tol, atol=atol, err_msg=ctx)
    else:
        np.testing.assert_array_equal(got, want, err_msg=ctx)


@st.composite
def operands(draw, min_rank=1, max_rank=3, min_side=0, dtypes=DTYPES):
    """An operand with ties (small integers), optional NaN/inf, maybe non-contiguous."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = tuple(draw(st.lists(st.integers(min_side, 5), min_size=min_rank, max_size=max_rank)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        x = rng.integers(0, 2, size=shape).astype(bool)
    elif dtype.kind == "f":
        x = rng.integers(-3, 4, size=shape).astype(dtype) * dtype.type(0.5)
        x += rng.normal(size=shape).astype(dtype) * draw(st.sampled_from([0, 1]))
        if x.size and draw(st.booleans()):
            flat = x.reshape(-1)
            flat[rng.integers(0, flat.size, size=2)] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf])
            )
    else:
        x = rng.integers(-4, 5, size=shape).astype(dtype)
    layout = draw(st.sampled_from(["c", "transposed", "strided"]))
    if layout == "transposed" and x.ndim >= 2:
        x = np.ascontiguousarray(x.T).T  # same values, Fortran order
    elif layout == "strided" and x.ndim >= 1:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    return x


def _axes(draw, ndim):
    return tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))


# ---------------------------------------------------------------- reductions


@settings(max_examples=60)
@given(x=operands(), data=st.data())
@pytest.mark.parametrize("name", ["reduce_sum", "reduce_max", "reduce_min", "reduce_prod"])
def test_reductions(name, x, data):
    axes = _axes(data.draw, x.ndim)
    with np.errstate(all="ignore"):
        want = ref(name, [x], axes=axes)
        got = KERNELS[name](x, axes=axes)
    assert_same(got, want, f"{name} {x.dtype}{list(x.shape)} axes={axes}")


@settings(max_examples=60)
@given(x=operands(min_side=1), data=st.data())
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_reductions(name, x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    index_dtype = np.dtype(data.draw(st.sampled_from(["int32", "int64"])))
    want = ref(name, [x], axis=axis, index_dtype=index_dtype)
    got = KERNELS[name](x, axis=axis, index_dtype=index_dtype)
    assert_same(got, want, f"{name} {x.dtype}{list(x.shape)} axis={axis}")


@settings(max_examples=60)
@given(x=operands(), data=st.data())
def test_cumsum(x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    reverse = data.draw(st.booleans())
    with np.errstate(all="ignore"):
        want = ref("cumsum", [x], axis=axis, reverse=reverse)
        got = KERNELS["cumsum"](x, axis=axis, reverse=reverse)
    assert_same(got, want, f"cumsum {x.dtype}{list(x.shape)} axis={axis} reverse={reverse}")


@settings(max_examples=60)
@given(x=operands(), data=st.data())
def test_argsort(x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    descending = data.draw(st.booleans())
    want = ref("argsort", [x], axis=axis, descending=descending)
    got = reduce_kernels.argsort(x, axis=axis, descending=descending)
    assert_same(got, want, f"argsort {x.dtype}{list(x.shape)} axis={axis} desc={descending}")


def test_argsort_long_rows_merge_stably():
    # Rows longer than the insertion-sort runs, with many ties and NaNs.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(3, 1000)).astype(np.float64)
    x[:, ::97] = np.nan
    for descending in (False, True):
        want = ref("argsort", [x], axis=1, descending=descending)
        assert_same(reduce_kernels.argsort(x, axis=1, descending=descending), want)


def test_sum_matches_numpy_pairwise_bits():
    # Along contiguous rows the float sum uses NumPy's pairwise tree: identical bits.
    rng = np.random.default_rng(1)
    for n in (7, 8, 100, 129, 1000, 5000):
        x = rng.normal(size=(2, n)).astype(np.float32)
        np.testing.assert_array_equal(
            KERNELS["reduce_sum"](x, axes=(1,)), np.sum(x, axis=1, dtype=np.float32)
        )


def test_small_and_inner_reductions_use_numpy_by_default():
    x = np.arange(12.0).reshape(3, 4)
    saved = reduce_kernels.SMALL, reduce_kernels.ALWAYS
    try:
        reduce_kernels.SMALL, reduce_kernels.ALWAYS = 8192, False
        assert_same(KERNELS["reduce_sum"](x, axes=(1,)), x.sum(1))
        big = np.ones((128, 128), np.float32)
        assert_same(KERNELS["reduce_max"](big, axes=(0,)), big.max(0))
        assert_same(KERNELS["argmax"](big, axis=0, index_dtype=np.dtype("int32")),
                    np.zeros(128, np.int32))  # fmt: skip
    finally:
        reduce_kernels.SMALL, reduce_kernels.ALWAYS = saved


# ---------------------------------------------------------------- gather and copies


@settings(max_examples=60)
@given(x=operands(min_side=1), data=st.data())
def test_gather(x, data):
    n = x.shape[0]
    idx_shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=2)))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    idx = rng.integers(-2 * n - 1, 2 * n + 2, size=idx_shape).astype(
        data.draw(st.sampled_from(["int32", "int64"]))
    )
    assert_same(KERNELS["gather"](x, idx), ref("gather", [x, idx]), f"gather {idx}")


@settings(max_examples=60)
@given(x=operands(min_rank=0), data=st.data())
def test_pad(x, data):
    config = tuple(
        (data.draw(st.integers(-2, 3)), data.draw(st.integers(-2, 3)), data.draw(st.integers(0, 2)))
        for _ in range(x.ndim)
    )
    for n, (lo, hi, i) in zip(x.shape, config):
        if lo + hi + n + max(n - 1, 0) * i < 0:
            return  # rejected by the shape rule
    v = np.asarray(x.dtype.type(7))
    got = KERNELS["pad"](x, v, padding_config=config)
    assert_same(got, ref("pad", [x, v], padding_config=config), f"pad {config}")


@settings(max_examples=40)
@given(x=operands(), data=st.data())
def test_concatenate(x, data):
    dim = data.draw(st.integers(0, x.ndim - 1))
    part = np.take(x, np.arange(min(1, x.shape[dim])), axis=dim)
    xs = (x, part, x[::-1] if x.ndim else x)
    want = ref("concatenate", xs, dimension=dim)
    assert_same(index_kernels.concatenate(*xs, dimension=dim), want, f"concat dim={dim}")


@settings(max_examples=60)
@given(x=operands(), data=st.data())
def test_dynamic_update_slice(x, data):
    sizes = [data.draw(st.integers(0, n)) for n in x.shape]
    update = np.full(sizes, x.dtype.type(1), x.dtype)
    starts = [np.int32(data.draw(st.integers(-7, 7))) for _ in x.shape]
    want = ref("dynamic_update_slice", [x, update, *starts])
    got = KERNELS["dynamic_update_slice"](x, update, *starts)
    assert_same(got, want, f"dus sizes={sizes} starts={starts}")


# ---------------------------------------------------------------- bits


@st.composite
def uint32s(draw, shape):
    seed = draw(st.integers(0, 2**31 - 1))
    return (
        np.random.default_rng(seed)
        .integers(0, 2**32, size=shape, dtype=np.uint64)
        .astype(np.uint32)
    )


@settings(max_examples=40)
@given(data=st.data())
def test_threefry2x32_bit_exact(data):
    shape = tuple(data.draw(st.lists(st.integers(0, 5), max_size=3)))
    x1, x2 = data.draw(uint32s(shape)), data.draw(uint32s(shape))
    scalar_keys = data.draw(st.booleans())
    k1, k2 = (data.draw(uint32s(())), data.draw(uint32s(()))) if scalar_keys else (x2, x1)
    got = KERNELS["threefry2x32"](k1, k2, x1, x2)
    for g, w in zip(got, ref("threefry2x32", [k1, k2, x1, x2])):
        assert_same(g, w)


def test_threefry2x32_known_answer():
    u = np.uint32
    out = KERNELS["threefry2x32"](*(np.asarray(u(0)) for _ in range(4)))
    assert [hex(int(v)) for v in out] == ["0x6b200159", "0x99ba4efe"]


@settings(max_examples=20)
@given(shape=st.lists(st.integers(0, 6), max_size=3))
def test_iota_2x32_shape(shape):
    shape = tuple(shape)
    for g, w in zip(
        KERNELS["iota_2x32_shape"](shape=shape), ref("iota_2x32_shape", [], shape=shape)
    ):
        assert_same(g, w)


@settings(max_examples=30)
@given(data=st.data())
def test_erf_inv(data):
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    special = [0.0, -0.0, 1.0, -1.0, 1.5, -2.0, np.nan, 0.5, 1 - 1e-7, -(1 - 1e-12), 1e-30]
    x = np.concatenate([rng.uniform(-1, 1, size=data.draw(st.integers(0, 20))), special])
    x = x.astype(dtype)
    assert_same(KERNELS["erf_inv"](x), ref("erf_inv", [x]))


@settings(max_examples=40)
@given(data=st.data())
@pytest.mark.parametrize("name", ["shift_left", "shift_right_logical", "shift_right_arithmetic"])
def test_shifts(name, data):
    dtype = np.dtype(data.draw(st.sampled_from(["int8", "int32", "uint32", "int64", "uint64"])))
    info = np.iinfo(dtype)
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    shape = tuple(data.draw(st.lists(st.integers(0, 5), max_size=2)))
    x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if data.draw(st.booleans()):  # in-range, out-of-range and negative amounts
        y = rng.integers(-3, info.bits + 3, size=shape).astype(dtype)
    else:
        y = np.asarray(dtype.type(data.draw(st.integers(0, info.bits + 1))))
    assert_same(KERNELS[name](x, y), ref(name, [x, y]), f"{name} {dtype}")


# ---------------------------------------------------------------- coverage


def test_every_primitive_has_a_cpu_path():
    """Every fgrad primitive runs as a Numba kernel, a fused Numba loop, a view, a
    compiled loop or inlined call under jit, a BLAS call, a host callback, or NumPy
    where that measured faster than a Numba kernel; none is left on the NumPy reference
    fallback. A new primitive fails here until it gets one of those."""
    covered = (
        set(KERNELS)
        | set(EMITTERS)
        | TOOL.VIEWS
        | TOOL.CONTROL_FLOW
        | TOOL.CALLS
        | TOOL.HOST
        | TOOL.BLAS
        | TOOL.NUMPY_FASTER
    )
    missing = sorted(set(TOOL.fgrad_primitives()) - covered)
    assert not missing, f"primitives with no CPU kernel: {missing}"


def test_numpy_faster_primitives_still_have_a_tested_kernel():
    assert {"argsort", "concatenate"} == TOOL.NUMPY_FASTER
    assert callable(reduce_kernels.argsort) and callable(index_kernels.concatenate)
    assert bits_kernels.erf_inv_scalar(0.0) == 0.0
