"""``fgrad.lax``: the primitives, with ``jax.lax``'s names, signatures and defaults.

Each family lives in its own module, every primitive declared once with its shape
rule, reference impl, VJP and JVP side by side (see docs/adding-a-primitive.md).
"""

from fgrad.lax.bits import (
    bitcast_convert_type,
    erf_inv,
    shift_left,
    shift_right_arithmetic,
    shift_right_logical,
)
from fgrad.lax.contractions import dot, dot_general, dot_general_p
from fgrad.lax.control_flow import (
    cond,
    cond_p,
    fori_loop,
    map,
    scan,
    scan_p,
    switch,
    while_loop,
    while_p,
)
from fgrad.lax.convolution import (
    ConvDimensionNumbers,
    conv_dimension_numbers,
    conv_general_dilated,
    conv_general_dilated_p,
    padtype_to_pads,
)
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
    full,
    pad,
    reshape,
    slice,
    squeeze,
    transpose,
    zeros_like_array,
)
from fgrad.lax.windows import (
    reduce_window,
    reduce_window_max,
    reduce_window_max_p,
    reduce_window_sum,
    reduce_window_sum_p,
    select_and_scatter_add,
    select_and_scatter_add_p,
)
