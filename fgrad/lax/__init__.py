"""``fgrad.lax``: the primitives, with ``jax.lax``'s names, signatures and defaults.

Each family lives in its own module, every primitive declared once with its shape
rule, reference impl, VJP and JVP side by side (see docs/adding-a-primitive.md).
"""

from fgrad.lax.contractions import dot, dot_general, dot_general_p
from fgrad.lax.elementwise import (
    RoundingMethod,
    abs,
    add,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    ceil,
    convert_element_type,
    cos,
    div,
    eq,
    erf,
    exp,
    expm1,
    floor,
    ge,
    gt,
    integer_pow,
    le,
    log,
    log1p,
    logistic,
    lt,
    max,
    min,
    mul,
    ne,
    neg,
    pow,
    round,
    rsqrt,
    select,
    select_n,
    sign,
    sin,
    sqrt,
    stop_gradient,
    sub,
    tan,
    tanh,
)
from fgrad.lax.indexing import gather_p, scatter_p
from fgrad.lax.reductions import (
    argmax,
    argmin,
    argsort,
    cumsum,
    reduce_max,
    reduce_min,
    reduce_prod,
    reduce_sum,
)
from fgrad.lax.shapes import (
    broadcast,
    broadcast_in_dim,
    concatenate,
    dynamic_slice,
    dynamic_update_slice,
    expand_dims,
    pad,
    reshape,
    slice,
    squeeze,
    transpose,
)

# Bitwise names as jax.lax spells them.
bitwise_and = bitwise_and
and_ = bitwise_and
or_ = bitwise_or
xor = bitwise_xor
not_ = bitwise_not
