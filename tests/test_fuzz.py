"""Fuzzing: random chains of fgrad.numpy operations agree with NumPy or fail cleanly.

Each example draws a dtype, a shape and a chain of operations, runs the chain on NumPy
and on fgrad, and requires either equal results (values and NumPy 2 dtypes), or both
to fail — fgrad then with its own clear error, never an internal one (AttributeError,
KeyError, a Numba typing error, ...). ``FGRAD_HYPOTHESIS=thorough`` runs a large budget.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp

DTYPES = [np.float32, np.float64, np.int32, np.bool_]
INTERNAL = (
    AttributeError,
    KeyError,
    AssertionError,
    NotImplementedError,
    RecursionError,
    UnboundLocalError,
    NameError,
)

UNARY = {
    "negative": (fnp.negative, np.negative),
    "abs": (fnp.abs, np.abs),
    "exp": (fnp.exp, np.exp),
    "log1p_abs": (lambda x: fnp.log1p(fnp.abs(x)), lambda x: np.log1p(np.abs(x))),
    "tanh": (fnp.tanh, np.tanh),
    "square": (fnp.square, np.square),
    "sign": (fnp.sign, np.sign),
    "sum": (lambda x: fnp.sum(x), lambda x: np.sum(x)),
    "sum0": (lambda x: fnp.sum(x, axis=0), lambda x: np.sum(x, axis=0)),
    "mean-1": (lambda x: fnp.mean(x, axis=-1), lambda x: np.mean(x, axis=-1)),
    "max": (lambda x: fnp.max(x), lambda x: np.max(x)),
    "min0k": (
        lambda x: fnp.min(x, axis=0, keepdims=True),
        lambda x: np.min(x, axis=0, keepdims=True),
    ),
    "cumsum": (lambda x: fnp.cumsum(x), lambda x: np.cumsum(x)),
    "argmax": (lambda x: fnp.argmax(x), lambda x: np.argmax(x)),
    "sort": (lambda x: fnp.sort(x), lambda x: np.sort(x)),
    "ravel": (fnp.ravel, np.ravel),
    "T": (lambda x: x.T, lambda x: x.T),
    "expand0": (lambda x: fnp.expand_dims(x, 0), lambda x: np.expand_dims(x, 0)),
    "first": (lambda x: x[0], lambda x: x[0]),
    "tail": (lambda x: x[..., 1:], lambda x: x[..., 1:]),
    "rev": (lambda x: x[::-1], lambda x: x[::-1]),
    "concat": (lambda x: fnp.concatenate([x, x], axis=0), lambda x: np.concatenate([x, x], axis=0)),
    "stack": (lambda x: fnp.stack([x, x], axis=-1), lambda x: np.stack([x, x], axis=-1)),
    "astype32": (lambda x: x.astype(fnp.float32), lambda x: x.astype(np.float32)),
    "isfinite": (fnp.isfinite, np.isfinite),
    "clip": (lambda x: fnp.clip(x, -1, 1), lambda x: np.clip(x, -1, 1)),
}
BINARY = {
    "add": (fnp.add, np.add),
    "subtract": (fnp.subtract, np.subtract),
    "multiply": (fnp.multiply, np.multiply),
    "divide": (fnp.divide, np.divide),
    "maximum": (fnp.maximum, np.maximum),
    "minimum": (fnp.minimum, np.minimum),
    "greater": (fnp.greater, np.greater),
    "equal": (fnp.equal, np.equal),
    "where": (lambda x, y: fnp.where(x > y, x, y), lambda x, y: np.where(x > y, x, y)),
    "matmul": (fnp.matmul, np.matmul),
}


@st.composite
def programs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    steps = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            steps.append(("u", draw(st.sampled_from(sorted(UNARY)))))
        else:
            kind = draw(st.sampled_from(["same", "row", "scalar", "pyfloat", "pyint", "bad"]))
            steps.append(
                ("b", draw(st.sampled_from(sorted(BINARY))), kind, draw(st.sampled_from(DTYPES)))
            )
    seed = draw(st.integers(0, 2**16))
    return dtype, shape, steps, seed


def _operand(rng, shape, dtype):
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    return (rng.normal(size=shape) * 3).astype(dtype)


def _other(kind, rng, shape, dtype):
    if kind == "same":
        return _operand(rng, shape, dtype)
    if kind == "row":
        return _operand(rng, shape[-1:], dtype)
    if kind == "scalar":
        return _operand(rng, (), dtype)
    if kind == "pyfloat":
        return 1.5
    if kind == "pyint":
        return 2
    return _operand(rng, (shape[-1] + 1,) if shape else (2, 3), dtype)  # "bad": mismatched


def _run(steps, x, rng_seed, lib):
    rng = np.random.default_rng(rng_seed)
    for step in steps:
        if step[0] == "u":
            fn = UNARY[step[1]][0 if lib == "fgrad" else 1]
            x = fn(x)
        else:
            _, name, kind, dtype = step
            shape = tuple(np.shape(x))
            y = _other(kind, rng, shape, dtype)
            if lib == "fgrad" and isinstance(y, np.ndarray):
                y = fnp.asarray(y)
            x = BINARY[name][0 if lib == "fgrad" else 1](x, y)
    return x


@settings(deadline=None)
@given(programs())
def test_random_operation_chains_match_numpy_or_fail_cleanly(program):
    dtype, shape, steps, seed = program
    base = _operand(np.random.default_rng(seed), shape, dtype)
    with np.errstate(all="ignore"):
        try:
            expected = np.asarray(_run(steps, base, seed + 1, "numpy"))
            np_error = None
        except Exception as e:  # NumPy rejects it: fgrad must reject it too
            np_error = e
    try:
        got = _run(steps, fnp.asarray(base), seed + 1, "fgrad")
    except INTERNAL as e:
        pytest.fail(
            f"internal error {type(e).__name__}: {e} for {steps} on {dtype.__name__}{shape}"
        )
    except Exception as e:
        # Where NumPy also refuses, any clear error will do; where NumPy has a result
        # (e.g. its legacy axis=0 on 0-d arrays), fgrad may refuse only with its own
        # FgradTypeError, which names the operation, the shapes and the user's line.
        if np_error is None and not isinstance(e, fgrad.FgradTypeError):
            pytest.fail(
                f"fgrad raised {type(e).__name__}: {e} where NumPy gave a result, "
                f"for {steps} on {np.dtype(dtype).name}{shape}"
            )
        assert str(e), "errors must carry a message"
        return
    if np_error is not None:
        pytest.fail(f"NumPy raised {np_error!r} but fgrad returned, for {steps}")
    assert isinstance(got, fgrad.Array)
    got = np.asarray(got)
    assert got.shape == expected.shape, steps
    if ("u", "argmax") in steps:
        # Indices are int32, as in JAX (NumPy uses its 64-bit intp); what is computed
        # from them may then be int32 where NumPy has int64.
        assert got.dtype == expected.dtype or (got.dtype, expected.dtype) == (
            np.dtype(np.int32),
            np.dtype(np.int64),
        ), (steps, got.dtype, expected.dtype)
    else:
        assert got.dtype == expected.dtype, (steps, got.dtype, expected.dtype)
    if np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-5, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, expected)
