"""Golden tests of the printed IR: ``str(make_jaxpr(f)(*args))`` in DESIGN.md's format."""

import re
import textwrap

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import core


def golden(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def show(f, *args, **kwargs) -> str:
    return str(fgrad.make_jaxpr(f, **kwargs)(*args))


def test_relu_via_maximum():
    assert show(lambda x: fnp.maximum(x, 0.0), fnp.ones(3)) == golden(
        """
        { lambda ; a:f32[3]. let
            b:f32[3] = max a 0.0
          in (b,) }
        """
    )


def test_design_example_mlp_layer():
    # The example printed in DESIGN.md, character for character.
    design = """
        { lambda ; a:f32[128,784] b:f32[784,512]. let
            c:f32[128,512] = dot_general[contract=((1,), (0,)) batch=((), ())] a b
            d:f32[128,512] = max c 0.0
          in (d,) }
        """
    out = show(lambda x, w: fnp.maximum(x @ w, 0.0), fnp.ones((128, 784)), fnp.ones((784, 512)))
    assert out == golden(design)
    # fnp.dot and fnp.matmul lower to the same equation.
    assert show(
        lambda x, w: fnp.maximum(fnp.dot(x, w), 0.0), fnp.ones((128, 784)), fnp.ones((784, 512))
    ) == golden(design)


def test_dense_layer_with_bias_broadcasts_explicitly():
    out = show(lambda x, w, b: fnp.tanh(x @ w + b), fnp.ones((4, 3)), fnp.ones((3, 2)), fnp.ones(2))
    assert out == golden(
        """
        { lambda ; a:f32[4,3] b:f32[3,2] c:f32[2]. let
            d:f32[4,2] = dot_general[contract=((1,), (0,)) batch=((), ())] a b
            e:f32[4,2] = broadcast_in_dim[shape=(4, 2) broadcast_dimensions=(1,)] c
            f:f32[4,2] = add d e
            g:f32[4,2] = tanh f
          in (g,) }
        """
    )


def test_broadcasting_lowers_to_broadcast_in_dim():
    assert show(lambda x, y: x * y, fnp.ones((2, 1)), fnp.ones((1, 3))) == golden(
        """
        { lambda ; a:f32[2,1] b:f32[1,3]. let
            c:f32[2] = reshape[new_sizes=(2,)] a
            d:f32[2,3] = broadcast_in_dim[shape=(2, 3) broadcast_dimensions=(0,)] c
            e:f32[3] = reshape[new_sizes=(3,)] b
            f:f32[2,3] = broadcast_in_dim[shape=(2, 3) broadcast_dimensions=(1,)] e
            g:f32[2,3] = mul d f
          in (g,) }
        """
    )


def test_reductions():
    assert show(lambda x: fnp.sum(x, axis=1), fnp.ones((2, 3))) == golden(
        """
        { lambda ; a:f32[2,3]. let
            b:f32[2] = reduce_sum[axes=(1,)] a
          in (b,) }
        """
    )
    assert show(lambda x: fnp.mean(x), fnp.ones((2, 3))) == golden(
        """
        { lambda ; a:f32[2,3]. let
            b:f32[] = reduce_sum[axes=(0, 1)] a
            c:f32[] = div b 6.0
          in (c,) }
        """
    )
    assert show(lambda x: fnp.max(x, axis=0, keepdims=True), fnp.ones((2, 3))) == golden(
        """
        { lambda ; a:f32[2,3]. let
            b:f32[3] = reduce_max[axes=(0,)] a
            c:f32[1,3] = reshape[new_sizes=(1, 3)] b
          in (c,) }
        """
    )


def test_closed_over_arrays_become_constvars():
    w = fnp.asarray(np.arange(6.0, dtype=np.float32).reshape(3, 2))
    jaxpr = fgrad.make_jaxpr(lambda x: fnp.tanh(x @ w))(fnp.ones((4, 3)))
    assert str(jaxpr) == golden(
        """
        { lambda a:f32[3,2]; b:f32[4,3]. let
            c:f32[4,2] = dot_general[contract=((1,), (0,)) batch=((), ())] b a
            d:f32[4,2] = tanh c
          in (d,) }
        """
    )
    # The constant's value travels with the jaxpr instead of being baked into the text.
    assert len(jaxpr.consts) == 1
    np.testing.assert_array_equal(np.asarray(jaxpr.consts[0]), np.asarray(w))
    (out,) = jaxpr(fnp.ones((4, 3)))
    np.testing.assert_allclose(np.asarray(out), np.tanh(np.ones((4, 3)) @ np.asarray(w)), rtol=1e-6)
    # A NumPy array closed over is a constvar too, keeping its dtype.
    c = np.arange(3.0)
    assert show(lambda x: x * c, fnp.ones(3, fnp.float64)) == golden(
        """
        { lambda a:f64[3]; b:f64[3]. let
            c:f64[3] = mul b a
          in (c,) }
        """
    )


def test_scalar_constants_print_inline():
    assert show(lambda x: x * 2.0 + 1, fnp.ones(3, fnp.float64)) == golden(
        """
        { lambda ; a:f64[3]. let
            b:f64[3] = mul a 2.0
            c:f64[3] = add b 1.0
          in (c,) }
        """
    )
    assert show(lambda x: x * 0.1, fnp.ones(2, fnp.float64)) == golden(
        """
        { lambda ; a:f64[2]. let
            b:f64[2] = mul a 0.1
          in (b,) }
        """
    )
    i = fnp.asarray(np.arange(3, dtype=np.int32))
    assert show(lambda x: (x + 2) > 1, i) == golden(
        """
        { lambda ; a:i32[3]. let
            b:i32[3] = add a 2
            c:bool[3] = gt b 1
          in (c,) }
        """
    )


def test_float32_literals_print_shortest():
    assert show(lambda x: x * 0.1 + 1e-8, fnp.ones(3)) == golden(
        """
        { lambda ; a:f32[3]. let
            b:f32[3] = mul a 0.1
            c:f32[3] = add b 1e-08
          in (c,) }
        """
    )


def test_casts_comparisons_and_several_outputs():
    assert show(lambda x: (x.astype(fnp.float64), x > 0), fnp.ones(3)) == golden(
        """
        { lambda ; a:f32[3]. let
            b:f64[3] = convert_element_type[new_dtype=float64] a
            c:bool[3] = gt a 0.0
          in (b, c) }
        """
    )
    # Outputs are the leaves of the returned pytree (dict keys sorted); inputs pass through.
    assert show(lambda x: {"b": x * 2.0, "a": (x, fnp.sum(x))}, fnp.ones(2)) == golden(
        """
        { lambda ; a:f32[2]. let
            b:f32[2] = mul a 2.0
            c:f32[] = reduce_sum[axes=(0,)] a
          in (a, c, b) }
        """
    )
    assert show(lambda x: x, fnp.ones(3)) == golden(
        """
        { lambda ; a:f32[3]. let
          in (a,) }
        """
    )


def test_shape_ops_and_indexing():
    assert show(lambda x: x[1:, ::2], fnp.ones((3, 4))) == golden(
        """
        { lambda ; a:f32[3,4]. let
            b:f32[2,2] = slice[start_indices=(1, 0) limit_indices=(3, 4) strides=(1, 2)] a
          in (b,) }
        """
    )
    assert show(lambda x: x.T.reshape(-1), fnp.ones((2, 3))) == golden(
        """
        { lambda ; a:f32[2,3]. let
            b:f32[3,2] = transpose[permutation=(1, 0)] a
            c:f32[6] = reshape[new_sizes=(6,)] b
          in (c,) }
        """
    )
    assert show(lambda x, i: x[i], fnp.ones((5, 2)), fnp.asarray([1, 3])) == golden(
        """
        { lambda ; a:f32[5,2] b:i32[2]. let
            c:f32[2,2] = gather a b
          in (c,) }
        """
    )
    assert show(lambda x: x**3, fnp.ones(2)) == golden(
        """
        { lambda ; a:f32[2]. let
            b:f32[2] = integer_pow[y=3] a
          in (b,) }
        """
    )


def test_batched_matmul():
    assert show(fnp.matmul, fnp.ones((5, 2, 3)), fnp.ones((5, 3, 4))) == golden(
        """
        { lambda ; a:f32[5,2,3] b:f32[5,3,4]. let
            c:f32[5,2,4] = dot_general[contract=((2,), (1,)) batch=((0,), (0,))] a b
          in (c,) }
        """
    )


def test_pytree_inputs_and_static_args():
    # Dict inputs flatten in sorted key order: a is p["b"], b is p["w"].
    assert show(lambda p: p["w"] * p["b"], {"w": fnp.ones(2), "b": fnp.ones(2)}) == golden(
        """
        { lambda ; a:f32[2] b:f32[2]. let
            c:f32[2] = mul b a
          in (c,) }
        """
    )
    assert show(lambda x, n: x * n, fnp.ones(2), 3, static_argnums=1) == golden(
        """
        { lambda ; a:f32[2]. let
            b:f32[2] = mul a 3.0
          in (b,) }
        """
    )


def test_many_variables_get_unique_well_formed_names():
    def f(x):
        for _ in range(20):
            x = fnp.sin(x) * 2.0
        return x

    text = show(f, fnp.ones(1))
    lines = text.splitlines()
    assert lines[0] == "{ lambda ; a:f32[1]. let"
    assert lines[-1].startswith("  in (") and lines[-1].endswith(",) }")
    binders = [re.match(r"    ([a-z]+):f32\[1\] = (sin|mul) ", ln).group(1) for ln in lines[1:-1]]
    assert len(binders) == 40 and len(set(binders)) == 40 and "a" not in binders


def test_jaxpr_object_api():
    jaxpr = fgrad.make_jaxpr(lambda x, y: (x @ y).sum())(fnp.ones((2, 3)), fnp.ones((3, 1)))
    assert isinstance(jaxpr, fgrad.ClosedJaxpr)
    f32 = np.float32
    assert jaxpr.in_avals == [core.ShapedArray((2, 3), f32), core.ShapedArray((3, 1), f32)]
    assert jaxpr.out_avals == [core.ShapedArray((), np.float32)]
    assert [e.primitive.name for e in jaxpr.eqns] == ["dot_general", "reduce_sum"]
    assert all(e.primitive is core.primitives[e.primitive.name] for e in jaxpr.eqns)
    # Every var carries shape and dtype.
    for e in jaxpr.eqns:
        for v in e.outvars:
            assert isinstance(v.aval, core.ShapedArray)
    (out,) = jaxpr(fnp.ones((2, 3)), fnp.asarray(np.float32([[1.0], [2.0], [3.0]])))
    assert out.item() == 12.0
