"""debug_nans / debug_infs, debug_print and tracer reprs."""

import warnings

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp


@pytest.fixture
def nan_checks():
    fgrad.config.update("debug_nans", True)
    fgrad.config.update("debug_infs", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
    fgrad.config.update("debug_nans", False)
    fgrad.config.update("debug_infs", False)


def test_debug_nans_names_the_primitive_and_line_eagerly(nan_checks):
    x = fnp.asarray([1.0, -1.0])
    with pytest.raises(FloatingPointError) as info:
        fnp.log(x)  # the offending line
    msg = str(info.value)
    assert "log produced NaN" in msg and "f32[2]" in msg and "test_debugging.py" in msg


def test_debug_nans_under_jit_reruns_unfused_to_find_the_primitive(nan_checks):
    @fgrad.jit
    def f(x):
        y = x * 2.0
        return fnp.sqrt(y - 5.0).sum()  # NaN comes from here

    with pytest.raises(FloatingPointError) as info:
        f(fnp.ones(3))
    msg = str(info.value)
    assert "sqrt produced NaN" in msg and "test_debugging.py" in msg and "unfused" in msg


def test_debug_nans_in_backward_pass_names_the_forward_equation(nan_checks):
    def loss(x):
        return (fnp.sqrt(x) * 0.0).sum()  # d sqrt at 0 is inf; inf * 0 = NaN

    with pytest.raises(FloatingPointError) as info:
        fgrad.grad(loss)(fnp.zeros(2))
    msg = str(info.value)
    assert "VJP of" in msg and "test_debugging.py" in msg


def test_debug_flags_off_means_no_checks():
    assert fgrad.jit(lambda x: fnp.log(x))(fnp.asarray([-1.0])).item() != 0.0  # NaN, no error


def test_debug_print_inside_jit_grad_and_vmap(capsys):
    def f(x):
        fgrad.debug_print("x={} y={y}", x, y=x * 2.0)
        return (x * x).sum()

    fgrad.jit(f)(fnp.asarray([1.0, 2.0]))
    fgrad.jit(f)(fnp.asarray([3.0, 4.0]))  # same program, new values
    fgrad.grad(f)(fnp.asarray([5.0, 6.0]))
    fgrad.vmap(lambda v: fgrad.debug_print("v={}", v))(fnp.asarray([7.0, 8.0]))
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "x=[1. 2.] y=[2. 4.]",
        "x=[3. 4.] y=[6. 8.]",
        "x=[5. 6.] y=[10. 12.]",
        "v=[7. 8.]",
    ]


def test_tracer_repr_shows_type_and_origin():
    seen = []
    fgrad.make_jaxpr(lambda x: seen.append(repr(x * 2.0)) or x)(fnp.ones(3))
    assert "f32[3]" in seen[0] and "test_debugging.py" in seen[0]
    np.testing.assert_equal(len(seen), 1)
