"""Device implementations of the non-elementwise primitives.

``LOWERINGS[name](eqn)`` returns a *runner* ``run(ins) -> outs`` over ``CudaArray``s for
one equation, or None when that equation has no device form (the program then runs
the primitive's reference implementation on the host, with a copy each way).

Every kernel is generated source compiled once per (structure, rank, dtype), with
sizes, strides and offsets as scalar arguments (see ``runtime``):

* views: ``reshape``, ``squeeze``, ``expand_dims``, ``bitcast_convert_type`` reuse the
  buffer;
* strided copies: ``transpose``, ``slice``, ``concatenate``, ``pad``,
  ``dynamic_slice``, ``dynamic_update_slice`` (start indices read on the device);
* shared-memory tree reductions, one block per output element: ``reduce_sum``,
  ``reduce_max``, ``reduce_min``, ``reduce_prod``, ``argmax``, ``argmin``;
  ``cumsum`` as one sequential scan per line;
* ``dot_general``: a tiled shared-memory matmul over (batch, M, K) x (batch, K, N)
  strided views (operands that are no such view are transposed first);
* ``conv_general_dilated`` (the canonical NHWC/HWIO layout the primitive uses, 1-3
  spatial axes) and ``reduce_window_sum``/``reduce_window_max`` (pooling) as direct
  kernels, one thread per output element; ``select_and_scatter_add`` (the max-pooling
  VJP) one thread per operand element, summing overlapping windows without atomics;
* ``gather``, and ``scatter`` with ``add``/``min``/``max`` as atomics and ``set`` as two
  passes so that the last duplicate index wins, as on the host;
* ``threefry2x32`` and ``iota_2x32_shape``: the random bits, bit-identical to the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from fgrad.backends.cuda import runtime
from fgrad.backends.cuda.emit import DEVICE_DTYPES, np_type
from fgrad.backends.cuda.runtime import CudaArray, empty, launch_elementwise
from fgrad.core import Eqn

LOWERINGS: dict[str, Callable[[Eqn], Callable | None]] = {}


def lowering(*names: str):
    def register(fn):
        for n in names:
            LOWERINGS[n] = fn
        return fn

    return register


def strides(shape: Sequence[int]) -> list[int]:
    """Row-major element strides."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def _on_device(eqn: Eqn) -> bool:
    avals = [v.aval for v in list(eqn.invars) + list(eqn.outvars)]
    return all(a.dtype in DEVICE_DTYPES for a in avals)


_NUMERIC = frozenset(
    np.dtype(t) for t in ("float32", "float64", "int32", "int64", "uint32", "uint64")
)


def _unravel(rank: int, sizes: str = "s", index: str = "i", coord: str = "c") -> list[str]:
    """Source lines setting ``c0..c{rank-1}`` to the coordinates of flat ``index``."""
    if rank == 0:
        return []
    lines = [f"r = {index}"]
    for d in range(rank - 1, 0, -1):
        lines += [f"{coord}{d} = r % {sizes}{d}", f"r = r // {sizes}{d}"]
    lines.append(f"{coord}0 = r")
    return lines


def _grid_loop(params: list[str], body: list[str], name: str, pre: Sequence[str] = ()) -> str:
    lines = [f"def {name}({', '.join(params)}):"]
    lines += ["    " + p for p in pre]
    lines += ["    i = cuda.grid(1)", "    step = cuda.gridsize(1)", "    while i < n:"]
    lines += ["        " + b for b in body]
    lines.append("        i += step")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- views


@lowering("reshape", "squeeze", "expand_dims")
def _view(eqn: Eqn):
    shape = eqn.outvars[0].aval.shape
    return lambda ins: [ins[0].reshape(shape)]


@lowering("bitcast_convert_type")
def _bitcast(eqn: Eqn):
    aval = eqn.outvars[0].aval
    if not _on_device(eqn):
        return None

    def run(ins):
        x = ins[0]
        if x.size == 0:
            return [empty(aval.shape, aval.dtype)]
        return [CudaArray(x.buf.view(aval.dtype), aval.shape, aval.dtype)]

    return run


# ---------------------------------------------------------------- strided copies


def _gather_copy_source(rank: int) -> str:
    """``dst[i] = src[base + sum_d c_d * t_d]`` over the coordinates ``c`` of ``i``."""
    params = ["n", *[f"s{d}" for d in range(rank)], *[f"t{d}" for d in range(rank)], "base"]
    addr = " + ".join(["base"] + [f"c{d} * t{d}" for d in range(rank)])
    return _grid_loop(params + ["src", "dst"], _unravel(rank) + [f"dst[i] = src[{addr}]"], "gcopy")


def _place_source(rank: int) -> str:
    """``dst[sum_d (o_d + c_d * e_d) * T_d] = src[i]`` where that lands inside ``S``."""
    params = ["n"] + [f"s{d}" for d in range(rank)]
    params += [f"o{d}" for d in range(rank)] + [f"e{d}" for d in range(rank)]
    params += [f"S{d}" for d in range(rank)] + [f"T{d}" for d in range(rank)]
    body = _unravel(rank) + ["ok = True", "a = 0"]
    for d in range(rank):
        body += [
            f"p = o{d} + c{d} * e{d}",
            f"if p < 0 or p >= S{d}:",
            "    ok = False",
            f"a += p * T{d}",
        ]
    body += ["if ok:", "    dst[a] = src[i]"]
    return _grid_loop(params + ["src", "dst"], body, "place")


def gather_copy(x: CudaArray, shape, elem_strides, base: int = 0) -> CudaArray:
    """A new array of ``shape`` with element ``c`` read from ``x.flat[base + c . strides]``."""
    out = empty(shape, x.dtype)
    n = out.size
    if n:
        k = runtime.kernel(_gather_copy_source(len(shape)), "gcopy")
        launch_elementwise(k, n, n, *shape, *elem_strides, base, x.buf, out.buf)
    return out


def place(src: CudaArray, dst: CudaArray, offsets, steps) -> None:
    """Write ``src`` into ``dst`` at ``offsets + c * steps`` (parts outside are dropped)."""
    n = src.size
    if n == 0:
        return
    rank = len(src.shape)
    k = runtime.kernel(_place_source(rank), "place")
    args = [n, *src.shape, *offsets, *steps, *dst.shape, *strides(dst.shape), src.buf, dst.buf]
    launch_elementwise(k, n, *args)


_FILL = _grid_loop(["n", "v", "dst"], ["dst[i] = v[0]"], "fill")


def fill(shape, dtype, value: CudaArray) -> CudaArray:
    """A new array of ``shape`` filled with the device scalar ``value``."""
    out = empty(shape, dtype)
    if out.size:
        launch_elementwise(runtime.kernel(_FILL, "fill"), out.size, out.size, value.buf, out.buf)
    return out


def copy(x: CudaArray) -> CudaArray:
    out = empty(x.shape, x.dtype)
    runtime.copy_into(out, 0, x)
    return out


@lowering("transpose")
def _transpose(eqn: Eqn):
    perm = tuple(eqn.params["permutation"])
    shape = eqn.outvars[0].aval.shape
    in_strides = strides(eqn.invars[0].aval.shape)
    if perm == tuple(range(len(perm))):
        return lambda ins: [ins[0]]  # immutable: no copy needed
    return lambda ins: [gather_copy(ins[0], shape, [in_strides[p] for p in perm])]


@lowering("slice")
def _slice(eqn: Eqn):
    p = eqn.params
    shape = eqn.outvars[0].aval.shape
    st = strides(eqn.invars[0].aval.shape)
    base = sum(s * t for s, t in zip(p["start_indices"], st))
    steps = [t * k for t, k in zip(st, p["strides"])]
    return lambda ins: [gather_copy(ins[0], shape, steps, base)]


@lowering("broadcast_in_dim")
def _broadcast(eqn: Eqn):
    # Normally fused; alone (e.g. of a literal) it is a copy with zero strides.
    x_shape = eqn.invars[0].aval.shape
    shape = eqn.outvars[0].aval.shape
    st = strides(x_shape)
    out_st = [0] * len(shape)
    for j, d in enumerate(eqn.params["broadcast_dimensions"]):
        if x_shape[j] != 1:
            out_st[d] = st[j]
    return lambda ins: [gather_copy(ins[0], shape, out_st)]


@lowering("concatenate")
def _concatenate(eqn: Eqn):
    axis = eqn.params["dimension"]
    aval = eqn.outvars[0].aval

    def run(ins):
        out = empty(aval.shape, aval.dtype)
        offset = 0
        for x in ins:
            offs = [0] * len(aval.shape)
            offs[axis] = offset
            place(x, out, offs, [1] * len(aval.shape))
            offset += x.shape[axis]
        return [out]

    return run


@lowering("pad")
def _pad(eqn: Eqn):
    config = eqn.params["padding_config"]
    aval = eqn.outvars[0].aval

    def run(ins):
        x, v = ins
        out = fill(aval.shape, aval.dtype, v)
        place(x, out, [lo for lo, _, _ in config], [i + 1 for _, _, i in config])
        return [out]

    return run


def _starts_source(rank: int, kind: str) -> str:
    """dynamic_slice (``kind == "slice"``) or dynamic_update_slice (``"update"``) with
    the start indices read from device scalars; as JAX, a negative start counts from
    the end, then starts are clamped so that the window stays inside the operand."""
    params = ["n"] + [f"s{d}" for d in range(rank)] + [f"N{d}" for d in range(rank)]
    params += [f"T{d}" for d in range(rank)] + [f"q{d}" for d in range(rank)]
    body = _unravel(rank)
    addr = []
    for d in range(rank):
        body += [
            f"b{d} = np.int64(q{d}[0])",
            f"if b{d} < 0:",
            f"    b{d} += N{d}",
            f"if b{d} > N{d} - s{d}:",
            f"    b{d} = N{d} - s{d}",
            f"if b{d} < 0:",
            f"    b{d} = 0",
        ]
        addr.append(f"(b{d} + c{d}) * T{d}")
    a = " + ".join(addr) if addr else "0"
    body.append(f"dst[i] = src[{a}]" if kind == "slice" else f"dst[{a}] = src[i]")
    return _grid_loop(params + ["src", "dst"], body, "dyn")


@lowering("dynamic_slice")
def _dynamic_slice(eqn: Eqn):
    aval = eqn.outvars[0].aval
    x_shape = eqn.invars[0].aval.shape
    rank = len(x_shape)

    def run(ins):
        x, starts = ins[0], ins[1:]
        out = empty(aval.shape, aval.dtype)
        if out.size:
            k = runtime.kernel(_starts_source(rank, "slice"), "dyn")
            args = [out.size, *aval.shape, *x_shape, *strides(x_shape)]
            args += [s.buf for s in starts] + [x.buf, out.buf]
            launch_elementwise(k, out.size, *args)
        return [out]

    return run


@lowering("dynamic_update_slice")
def _dynamic_update_slice(eqn: Eqn):
    x_shape = eqn.invars[0].aval.shape
    u_shape = eqn.invars[1].aval.shape
    rank = len(x_shape)

    def run(ins):
        x, u, starts = ins[0], ins[1], ins[2:]
        out = copy(x)
        if u.size:
            k = runtime.kernel(_starts_source(rank, "update"), "dyn")
            args = [u.size, *u_shape, *x_shape, *strides(x_shape)]
            args += [s.buf for s in starts] + [u.buf, out.buf]
            launch_elementwise(k, u.size, *args)
        return [out]

    return run


# ---------------------------------------------------------------- reductions


def _combine(op: str, a: str, b: str) -> str:
    """Source of ``a = op(a, b)``; max/min propagate NaN like NumPy."""
    if op == "sum":
        return f"{a} = {a} + {b}"
    if op == "prod":
        return f"{a} = {a} * {b}"
    cmp = ">" if op == "max" else "<"
    return f"if {b} {cmp} {a} or {b} != {b}:\n    {a} = {b}"


def _identity(op: str, dtype: np.dtype):
    if op == "sum":
        return 0
    if op == "prod":
        return 1
    if dtype.kind == "f":
        return -np.inf if op == "max" else np.inf
    info = np.iinfo(dtype)
    return info.min if op == "max" else info.max


def _const(value, dtype) -> str:
    dtype = np.dtype(dtype)
    v = np.asarray(value).astype(dtype).item()
    if isinstance(v, float) and not math.isfinite(v):
        v = "np.inf" if v > 0 else ("-np.inf" if v < 0 else "np.nan")
    return f"{np_type(dtype)}({v})"


def _indent(lines: list[str], n: int) -> list[str]:
    pad = "    " * n
    return [pad + x for line in lines for x in line.split("\n")]


def _collapse(shape, axes):
    """Merge adjacent axes of the same kind (kept/reduced): (sizes, kinds)."""
    sizes, kinds = [], []
    for d, n in enumerate(shape):
        if n == 1:
            continue
        red = d in axes
        if kinds and kinds[-1] == red:
            sizes[-1] *= n
        else:
            sizes.append(n)
            kinds.append(red)
    return sizes, kinds


def _reduce_source(kinds: list[bool], op: str, dtype: np.dtype, arg: bool) -> str:
    """Block-per-output tree reduction over the collapsed axes ``kinds`` (True = reduced).

    Kernel arguments: number of outputs and reduced elements, the sizes of the kept
    and reduced axes (inner to outer each) with their input strides, input, output.
    """
    tpb = runtime.reduce_threads()
    kept = [i for i, k in enumerate(kinds) if not k]
    red = [i for i, k in enumerate(kinds) if k]
    params = ["n_out", "n_red"]
    params += [f"ks{j}" for j in range(len(kept))] + [f"kt{j}" for j in range(len(kept))]
    params += [f"rs{j}" for j in range(len(red))] + [f"rt{j}" for j in range(len(red))]
    params += ["x", "out"]
    init = _const(_identity(op, dtype) if not arg else 0, dtype)
    lines = [f"def reduce({', '.join(params)}):"]
    body = [
        f"sh = cuda.shared.array(0, T_{dtype.name})[:{tpb}]",
        # argmax/argmin: the indices follow the values in the same dynamic buffer
        f"shi = cuda.shared.array(0, T_int64)[{tpb * dtype.itemsize // 8}:]" if arg else "",
        "t = cuda.threadIdx.x",
        "o = cuda.blockIdx.x",
        "while o < n_out:",
    ]
    loop = ["base = 0", "r = o"]
    for j in range(len(kept) - 1, -1, -1):
        loop += [f"base += (r % ks{j}) * kt{j}", f"r = r // ks{j}"]
    loop += [f"acc = {init}", "acci = np.int64(-1)", "k = t", "while k < n_red:"]
    inner = ["addr = base", "r = k"]
    for j in range(len(red) - 1, -1, -1):
        inner += [f"addr += (r % rs{j}) * rt{j}", f"r = r // rs{j}"]
    inner.append("v = x[addr]")
    if arg:
        inner += [_better(op, "v", "k", "acc", "acci"), "    acc = v", "    acci = k"]
    else:
        inner.append(_combine(op, "acc", "v"))
    inner.append(f"k += {tpb}")
    loop += _indent(inner, 1)
    loop += ["sh[t] = acc"] + (["shi[t] = acci"] if arg else []) + ["cuda.syncthreads()"]
    loop += [f"w = {tpb // 2}", "while w > 0:", "    if t < w:"]
    if arg:
        tree = [
            "b = sh[t + w]",
            "bi = shi[t + w]",
            _better(op, "b", "bi", "sh[t]", "shi[t]"),
            "    sh[t] = b",
            "    shi[t] = bi",
        ]
    else:
        tree = ["a = sh[t]", _combine(op, "a", "sh[t + w]"), "sh[t] = a"]
    loop += _indent(tree, 2)
    loop += ["    cuda.syncthreads()", "    w = w // 2", "if t == 0:"]
    loop.append("    out[o] = shi[0]" if arg else "    out[o] = sh[0]")
    loop += ["cuda.syncthreads()", "o += cuda.gridDim.x"]
    body += _indent(loop, 1)
    lines += _indent([b for b in body if b], 1)
    return "\n".join(lines) + "\n"


def _better(op: str, v: str, vi: str, a: str, ai: str) -> str:
    """``if <(v, vi) beats (a, ai)>:`` for argmax/argmin: the first NaN wins, then the
    largest (smallest) value, ties to the lower index; index -1 is 'nothing yet'."""
    cmp = ">" if op == "max" else "<"
    return (
        f"if {vi} >= 0 and ({ai} < 0 or ({v} != {v} and ({a} == {a} or {vi} < {ai})) or "
        f"({a} == {a} and ({v} {cmp} {a} or ({v} == {a} and {vi} < {ai})))):"
    )


def _lines_source(kinds: list[bool], op: str, dtype: np.dtype, arg: bool) -> str:
    """One thread per output element, reducing sequentially: for reductions whose
    innermost axis is kept (neighbouring threads then read neighbouring elements: a
    bias gradient, a sum over the batch) or that reduce only a few elements each.
    Same arguments as ``_reduce_source``."""
    kept = [i for i, k in enumerate(kinds) if not k]
    red = [i for i, k in enumerate(kinds) if k]
    params = ["n", "n_red"]
    params += [f"ks{j}" for j in range(len(kept))] + [f"kt{j}" for j in range(len(kept))]
    params += [f"rs{j}" for j in range(len(red))] + [f"rt{j}" for j in range(len(red))]
    body = ["base = 0", "r = i"]
    for j in range(len(kept) - 1, -1, -1):
        body += [f"base += (r % ks{j}) * kt{j}", f"r = r // ks{j}"]
    init = _const(_identity(op, dtype) if not arg else 0, dtype)
    body += [f"acc = {init}", "acci = np.int64(-1)", "for k in range(n_red):"]
    inner = ["addr = base", "r = k"]
    for j in range(len(red) - 1, -1, -1):
        inner += [f"addr += (r % rs{j}) * rt{j}", f"r = r // rs{j}"]
    inner.append("v = x[addr]")
    if arg:
        inner += [_better(op, "v", "k", "acc", "acci"), "    acc = v", "    acci = k"]
    else:
        inner.append(_combine(op, "acc", "v"))
    body += _indent(inner, 1)
    body.append("out[i] = acci" if arg else "out[i] = acc")
    return _grid_loop(params + ["x", "out"], body, "reduce")


#: Reductions of at most this many elements per output run one thread per output.
SEQUENTIAL_REDUCE = 16


def _reduce_runner(eqn: Eqn, op: str, axes, arg: bool):
    x_aval, out_aval = eqn.invars[0].aval, eqn.outvars[0].aval
    dtype = x_aval.dtype
    if dtype not in _NUMERIC:
        return None
    sizes, kinds = _collapse(x_aval.shape, set(axes))
    st = strides(sizes)
    kept = [(n, s) for n, s, k in zip(sizes, st, kinds) if not k]
    red = [(n, s) for n, s, k in zip(sizes, st, kinds) if k]
    n_out, n_red = out_aval.size, math.prod(n for n, _ in red)
    args = [n_out, n_red, *[n for n, _ in kept], *[s for _, s in kept]]
    args += [n for n, _ in red] + [s for _, s in red]
    if (kinds and not kinds[-1]) or n_red <= SEQUENTIAL_REDUCE:
        source = _lines_source(kinds, op, dtype, arg)

        def launch(k, x, out):
            launch_elementwise(k, n_out, *args, x.buf, out.buf)

    else:
        source = _reduce_source(kinds, op, dtype, arg)

        def launch(k, x, out):
            blocks = max(1, min(n_out, runtime.max_blocks()))
            tpb = runtime.reduce_threads()
            shared = tpb * (dtype.itemsize + (8 if arg else 0))
            k.launch(blocks, tpb, *args, x.buf, out.buf, shared=shared)

    def run(ins):
        out = empty(out_aval.shape, out_aval.dtype)
        if n_out:
            launch(runtime.kernel(source, "reduce"), ins[0], out)
        return [out]

    return run


for _name, _op in (
    ("reduce_sum", "sum"),
    ("reduce_max", "max"),
    ("reduce_min", "min"),
    ("reduce_prod", "prod"),
):
    LOWERINGS[_name] = lambda eqn, _op=_op: _reduce_runner(eqn, _op, eqn.params["axes"], False)
LOWERINGS["argmax"] = lambda eqn: _reduce_runner(eqn, "max", (eqn.params["axis"],), True)
LOWERINGS["argmin"] = lambda eqn: _reduce_runner(eqn, "min", (eqn.params["axis"],), True)


_CUMSUM = _grid_loop(
    ["n", "m", "inner", "rev", "x", "out"],
    [
        "base = (i // inner) * m * inner + i % inner",
        "k = m - 1 if rev else 0",
        "d = -inner if rev else inner",
        "a = base + k * inner",
        "acc = x[a]",
        "out[a] = acc",
        "for _ in range(m - 1):",
        "    a += d",
        "    acc = acc + x[a]",
        "    out[a] = acc",
    ],
    "cumsum",
)


@lowering("cumsum")
def _cumsum(eqn: Eqn):
    aval = eqn.outvars[0].aval
    if aval.dtype not in _NUMERIC:
        return None
    axis = eqn.params["axis"]
    m = aval.shape[axis]
    inner = math.prod(aval.shape[axis + 1 :])
    lines = aval.size // m if m else 0
    rev = 1 if eqn.params["reverse"] else 0

    def run(ins):
        out = empty(aval.shape, aval.dtype)
        if lines:
            k = runtime.kernel(_CUMSUM, "cumsum")
            launch_elementwise(k, lines, lines, m, inner, rev, ins[0].buf, out.buf)
        return [out]

    return run


# ---------------------------------------------------------------- dot_general


def _matmul_source(dtype: np.dtype) -> str:
    t = runtime.tile()
    zero = _const(0, dtype)
    return f"""
def matmul(nb, m, n, kk, a, asb, asm, ask, b, bsb, bsk, bsn, out):
    ta = cuda.shared.array(0, T_{dtype.name})[:{t * t}]
    tb = cuda.shared.array(0, T_{dtype.name})[{t * t}:{2 * t * t}]
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * {t} + ty
    col = cuda.blockIdx.x * {t} + tx
    z = cuda.blockIdx.z
    while z < nb:
        acc = {zero}
        for k0 in range(0, kk, {t}):
            ka = k0 + tx
            if row < m and ka < kk:
                ta[ty * {t} + tx] = a[z * asb + row * asm + ka * ask]
            else:
                ta[ty * {t} + tx] = {zero}
            kb = k0 + ty
            if kb < kk and col < n:
                tb[ty * {t} + tx] = b[z * bsb + kb * bsk + col * bsn]
            else:
                tb[ty * {t} + tx] = {zero}
            cuda.syncthreads()
            for q in range({t}):
                acc += ta[ty * {t} + q] * tb[q * {t} + tx]
            cuda.syncthreads()
        if row < m and col < n:
            out[(z * m + row) * n + col] = acc
        z += cuda.gridDim.z
"""


def _group_view(shape, st, dims) -> tuple[int, int] | None:
    """(size, stride) of ``dims`` (in this order) merged into one axis, or None."""
    dims = [d for d in dims if shape[d] != 1]
    size = math.prod(shape[d] for d in dims)
    if not dims:
        return size, 0
    for a, b in zip(dims, dims[1:]):
        if st[a] != st[b] * shape[b]:
            return None
    return size, st[dims[-1]]


def _bmk_view(shape, groups):
    """Strides of a (B, M, K)-style view of a contiguous array, or None."""
    st = strides(shape)
    views = [_group_view(shape, st, g) for g in groups]
    return None if any(v is None for v in views) else views


@lowering("dot_general")
def _dot_general(eqn: Eqn):
    x, y = (v.aval for v in eqn.invars)
    out = eqn.outvars[0].aval
    if x.dtype not in _NUMERIC:
        return None
    (lc, rc), (lb, rb) = eqn.params["contract"], eqn.params["batch"]
    lf = [d for d in range(x.ndim) if d not in lc and d not in lb]
    rf = [d for d in range(y.ndim) if d not in rc and d not in rb]
    x_groups, y_groups = [list(lb), lf, list(lc)], [list(rb), list(rc), rf]
    nb = math.prod(x.shape[d] for d in lb)
    m = math.prod(x.shape[d] for d in lf)
    n = math.prod(y.shape[d] for d in rf)
    kk = math.prod(x.shape[d] for d in lc)
    x_view, y_view = _bmk_view(x.shape, x_groups), _bmk_view(y.shape, y_groups)
    x_perm = [d for g in x_groups for d in g]
    y_perm = [d for g in y_groups for d in g]
    source = _matmul_source(x.dtype)

    def operand(v: CudaArray, view, perm, sizes):
        if view is not None:
            return v, [s for _, s in view]
        shape = [v.shape[d] for d in perm]
        st = strides(v.shape)
        t = gather_copy(v, shape, [st[d] for d in perm])
        b, r, c = sizes
        return t, [r * c if b > 1 else 0, c if r > 1 else 0, 1 if c > 1 else 0]

    def run(ins):
        res = empty(out.shape, out.dtype)
        if res.size == 0:
            return [res]
        a, (asb, asm, ask) = operand(ins[0], x_view, x_perm, (nb, m, kk))
        b, (bsb, bsk, bsn) = operand(ins[1], y_view, y_perm, (nb, kk, n))
        t = runtime.tile()
        grid = ((n + t - 1) // t, (m + t - 1) // t, min(nb, 65535))
        k = runtime.kernel(source, "matmul")
        k.launch(
            grid,
            (t, t),
            *(nb, m, n, kk, a.buf, asb, asm, ask, b.buf, bsb, bsk, bsn, res.buf),
            shared=2 * t * t * out.dtype.itemsize,
        )
        return [res]

    return run


# ---------------------------------------------------------------- convolution and pooling


def _conv_source(nd: int, dtype: np.dtype) -> str:
    """Direct NHWC x HWIO convolution over ``nd`` spatial axes, one thread per output.

    Arguments: n (outputs), then per spatial axis the input size, output size, window
    size, stride, kernel dilation, input dilation and low padding; C, I, O, O per group;
    lhs, rhs, out. A window tap reads the input where its position in the dilated,
    padded input falls on an input element; elsewhere it reads a zero and is skipped.
    """
    params = ["n"]
    for d in range(nd):
        params += [f"h{d}", f"q{d}", f"w{d}", f"st{d}", f"rd{d}", f"ld{d}", f"lo{d}"]
    params += ["cc", "ci", "co", "cg", "x", "k", "out"]
    body = ["c = i % co", "r = i // co"]
    for d in range(nd - 1, -1, -1):
        body += [f"o{d} = r % q{d}", f"r = r // q{d}"]
    body += ["b = r", "g = c // cg", f"acc = {_const(0, dtype)}"]
    ind = ""
    for d in range(nd):
        body += [
            f"{ind}for k{d} in range(w{d}):",
            f"{ind}    p{d} = o{d} * st{d} + k{d} * rd{d} - lo{d}",
            f"{ind}    if p{d} >= 0 and p{d} % ld{d} == 0 and p{d} // ld{d} < h{d}:",
        ]
        ind += "        "
    xa, ka = "b", "k0"
    for d in range(nd):
        xa = f"({xa}) * h{d} + p{d} // ld{d}"
        if d:
            ka = f"({ka}) * w{d} + k{d}"
    body += [
        f"{ind}xb = ({xa}) * cc + g * ci",
        f"{ind}kb = ({ka}) * ci * co + c",
        f"{ind}for j in range(ci):",
        f"{ind}    acc += x[xb + j] * k[kb + j * co]",
        "out[i] = acc",
    ]
    return _grid_loop(params, body, "conv")


@lowering("conv_general_dilated")
def _conv(eqn: Eqn):
    lhs, rhs = (v.aval for v in eqn.invars)
    out = eqn.outvars[0].aval
    nd = lhs.ndim - 2
    if not 1 <= nd <= 3 or lhs.dtype not in _NUMERIC:
        return None
    p = eqn.params
    g = p["feature_group_count"]
    args = [out.size]
    for d in range(nd):
        args += [
            lhs.shape[1 + d],
            out.shape[1 + d],
            rhs.shape[d],
            p["window_strides"][d],
            p["rhs_dilation"][d],
            p["lhs_dilation"][d],
            p["padding"][d][0],
        ]
    co = rhs.shape[-1]
    args += [lhs.shape[-1], rhs.shape[-2], co, co // g]
    source = _conv_source(nd, lhs.dtype)

    def run(ins):
        res = empty(out.shape, out.dtype)
        if res.size:
            if lhs.size == 0 or rhs.size == 0:
                return [fill(out.shape, out.dtype, runtime.to_device(np.zeros((), out.dtype)))]
            k = runtime.kernel(source, "conv")
            launch_elementwise(k, res.size, *args, ins[0].buf, ins[1].buf, res.buf)
        return [res]

    return run


def _window_source(rank: int, op: str, dtype: np.dtype) -> str:
    """Sliding-window sum/max over every axis, one thread per output element; padded
    positions hold the reduction's identity, so they are skipped."""
    params = ["n"] + [f"q{d}" for d in range(rank)] + [f"h{d}" for d in range(rank)]
    params += [f"w{d}" for d in range(rank)] + [f"st{d}" for d in range(rank)]
    params += [f"lo{d}" for d in range(rank)] + ["x", "out"]
    body = _unravel(rank, sizes="q", coord="o")
    body.append(f"acc = {_const(_identity(op, dtype), dtype)}")
    ind, addr = "", "0"
    for d in range(rank):
        body += [
            f"{ind}for k{d} in range(w{d}):",
            f"{ind}    p{d} = o{d} * st{d} + k{d} - lo{d}",
            f"{ind}    if p{d} >= 0 and p{d} < h{d}:",
        ]
        ind += "        "
        addr = f"({addr}) * h{d} + p{d}"
    body.append(f"{ind}v = x[{addr}]")
    body += [ind + line for line in _combine(op, "acc", "v").split("\n")]
    body.append("out[i] = acc")
    return _grid_loop(params, body, "window")


def _window_runner(op: str):
    def lower(eqn: Eqn):
        x, out = eqn.invars[0].aval, eqn.outvars[0].aval
        if x.dtype not in _NUMERIC:
            return None
        p = eqn.params
        rank = x.ndim
        args = [out.size, *out.shape, *x.shape, *p["window_dimensions"]]
        args += [*p["window_strides"], *[lo for lo, _ in p["padding"]]]
        source = _window_source(rank, op, x.dtype)

        def run(ins):
            res = empty(out.shape, out.dtype)
            if res.size:
                k = runtime.kernel(source, "window")
                launch_elementwise(k, res.size, *args, ins[0].buf, res.buf)
            return [res]

        return run

    return lower


LOWERINGS["reduce_window_sum"] = _window_runner("sum")
LOWERINGS["reduce_window_max"] = _window_runner("max")


def _select_scatter_source(rank: int, dtype: np.dtype) -> str:
    """The max-pooling VJP, one thread per element ``i`` of the operand (and output).

    The thread visits, in row-major order, every window that holds its element, finds
    that window's first maximum (row-major within the window; padding is the lowest
    value, so it is chosen only as a window's first position when nothing beats it,
    and then the window's source goes nowhere; a NaN is the maximum once seen, as
    ``np.argmax``) and adds the window's ``source`` element when that maximum is ``i``.
    Overlapping windows are summed by the one thread that owns the element: no
    atomics, and the same order as the reference's ``np.add.at``.

    Arguments: n (operand elements), then per axis the window-output size ``q``, the
    operand size ``h``, window size, stride and low padding; src, x, out.
    """
    params = ["n"] + [f"q{d}" for d in range(rank)] + [f"h{d}" for d in range(rank)]
    params += [f"w{d}" for d in range(rank)] + [f"st{d}" for d in range(rank)]
    params += [f"lo{d}" for d in range(rank)] + ["src", "x", "out"]
    lowest = _const(_identity("max", dtype), dtype)
    body = _unravel(rank, sizes="h", coord="c")
    body.append(f"acc = {_const(0, dtype)}")
    for d in range(rank):
        # The windows o holding the element: o * st <= t < o * st + w, 0 <= o < q, with
        # t its position in the padded operand (integer divisions of non-negatives only).
        body += [
            f"t{d} = c{d} + lo{d}",
            f"a{d} = t{d} - w{d} + 1",
            f"ob{d} = 0",
            f"if a{d} > 0:",
            f"    ob{d} = (a{d} + st{d} - 1) // st{d}",
            f"oe{d} = -1",
            f"if t{d} >= 0:",
            f"    oe{d} = t{d} // st{d}",
            f"if oe{d} > q{d} - 1:",  # no builtin min: it does not compile for CUDA here
            f"    oe{d} = q{d} - 1",
        ]
    ind = ""
    for d in range(rank):
        body.append(f"{ind}for o{d} in range(ob{d}, oe{d} + 1):")
        ind += "    "
    body += [f"{ind}bv = {lowest}", f"{ind}bp = np.int64(-1)", f"{ind}started = False"]
    addr = "0"
    for d in range(rank):
        body += [
            f"{ind}for k{d} in range(w{d}):",
            f"{ind}    p{d} = o{d} * st{d} + k{d} - lo{d}",
            f"{ind}    in{d} = p{d} >= 0 and p{d} < h{d}",
        ]
        ind += "    "
        addr = f"({addr}) * h{d} + p{d}"
    inside = " and ".join(f"in{d}" for d in range(rank)) or "True"
    body += [
        f"{ind}if not started:",
        f"{ind}    started = True",
        f"{ind}    if {inside}:",
        f"{ind}        bv = x[{addr}]",
        f"{ind}        bp = {addr}",
        f"{ind}elif {inside}:",
        f"{ind}    v = x[{addr}]",
        f"{ind}    if v > bv or (v != v and bv == bv):",
        f"{ind}        bv = v",
        f"{ind}        bp = {addr}",
    ]
    ind = "    " * rank
    src_addr = "0"
    for d in range(rank):
        src_addr = f"({src_addr}) * q{d} + o{d}"
    body += [f"{ind}if bp == i:", f"{ind}    acc += src[{src_addr}]", "out[i] = acc"]
    return _grid_loop(params, body, "select_scatter")


@lowering("select_and_scatter_add")
def _select_and_scatter_add(eqn: Eqn):
    src, x = (v.aval for v in eqn.invars)
    out = eqn.outvars[0].aval
    if x.dtype not in _NUMERIC or src.dtype != x.dtype:
        return None
    p = eqn.params
    args = [out.size, *src.shape, *x.shape, *p["window_dimensions"]]
    args += [*p["window_strides"], *[lo for lo, _ in p["padding"]]]
    source = _select_scatter_source(x.ndim, x.dtype)

    def run(ins):
        if src.size == 0:
            return [fill(out.shape, out.dtype, runtime.to_device(np.zeros((), out.dtype)))]
        res = empty(out.shape, out.dtype)
        if res.size:
            k = runtime.kernel(source, "select_scatter")
            launch_elementwise(k, res.size, *args, ins[0].buf, ins[1].buf, res.buf)
        return [res]

    return run


# ---------------------------------------------------------------- gather and scatter

_GATHER = _grid_loop(
    ["n", "rows", "width", "x", "idx", "out"],
    [
        "j = np.int64(idx[i // width])",
        "if j < 0:",
        "    j += rows",
        "if j < 0:",
        "    j = 0",
        "if j > rows - 1:",
        "    j = rows - 1",
        "out[i] = x[j * width + i % width]",
    ],
    "gather",
)


@lowering("gather")
def _gather(eqn: Eqn):
    x, out = eqn.invars[0].aval, eqn.outvars[0].aval
    if not _on_device(eqn):
        return None
    rows, width = x.shape[0], math.prod(x.shape[1:])

    def run(ins):
        res = empty(out.shape, out.dtype)
        if res.size:
            k = runtime.kernel(_GATHER, "gather")
            launch_elementwise(k, res.size, res.size, rows, width, ins[0].buf, ins[1].buf, res.buf)
        return [res]

    return run


def _scatter_source(mode: str) -> str:
    body = [
        "j = np.int64(idx[i // width])",
        "if j < 0:",
        "    j += rows",
        "if j >= 0 and j < rows:",
        "    a = j * width + i % width",
    ]
    if mode == "add":
        body.append("    cuda.atomic.add(out, a, u[i])")
    elif mode in ("min", "max"):
        body.append(f"    cuda.atomic.{mode}(out, a, u[i])")
    elif mode == "claim":  # pass 1 of "set": the last update of each element wins
        body.append("    cuda.atomic.max(win, a, i // width)")
    else:  # pass 2 of "set"
        body += ["    if win[a] == i // width:", "        out[a] = u[i]"]
    params = ["n", "rows", "width", "idx", "u", "win" if mode in ("claim", "set") else "_", "out"]
    return _grid_loop(params, body, "scatter")


_ATOMIC = frozenset(
    np.dtype(t) for t in ("float32", "float64", "int32", "int64", "uint32", "uint64")
)


@lowering("scatter")
def _scatter(eqn: Eqn):
    x = eqn.invars[0].aval
    mode = eqn.params["mode"]
    if mode == "mul" or not _on_device(eqn):
        return None  # no atomic multiply: the host runs it
    if mode != "set" and x.dtype not in _ATOMIC:
        return None
    rows, width = x.shape[0], math.prod(x.shape[1:])

    def run(ins):
        xv, idx, u = ins
        out = copy(xv)
        n = u.size
        if n == 0:
            return [out]
        if mode == "set":
            win = fill((max(out.size, 1),), np.int64, runtime.to_device(np.int64(-1)))
            for step in ("claim", "set"):
                k = runtime.kernel(_scatter_source(step), "scatter")
                launch_elementwise(k, n, n, rows, width, idx.buf, u.buf, win.buf, out.buf)
        else:
            k = runtime.kernel(_scatter_source(mode), "scatter")
            launch_elementwise(k, n, n, rows, width, idx.buf, u.buf, u.buf, out.buf)
        return [out]

    return run


# ---------------------------------------------------------------- random bits

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry_source() -> str:
    """Threefry-2x32 (20 rounds) unrolled, in uint64 arithmetic masked to 32 bits.

    Every constant is a uint64: Numba types a mix of signed and unsigned 64-bit integers
    as float64, which would lose bits.
    """
    lines = [
        "M = np.uint64(0xFFFFFFFF)",
        "PARITY = np.uint64(0x1BD11BDA)",
        *[f"R{r} = np.uint64({r})" for r in range(33)],
        "",
        "",
        "def threefry(n, k1, f1, k2, f2, x1, g1, x2, g2, oa, ob):",
        "    i = cuda.grid(1)",
        "    step = cuda.gridsize(1)",
        "    while i < n:",
        "        ka = np.uint64(k1[i * f1])",
        "        kb = np.uint64(k2[i * f2])",
        "        kc = ka ^ kb ^ PARITY",
        "        a = (np.uint64(x1[i * g1]) + ka) & M",
        "        b = (np.uint64(x2[i * g2]) + kb) & M",
    ]
    keys = ("ka", "kb", "kc")
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            lines += [
                "        a = (a + b) & M",
                f"        b = (((b << R{r}) | (b >> R{32 - r})) & M) ^ a",
            ]
        lines += [
            f"        a = (a + {keys[(group + 1) % 3]}) & M",
            f"        b = (b + {keys[(group + 2) % 3]} + R{group + 1}) & M",
        ]
    lines += ["        oa[i] = np.uint32(a)", "        ob[i] = np.uint32(b)", "        i += step"]
    return "\n".join(lines) + "\n"


@lowering("threefry2x32")
def _threefry(eqn: Eqn):
    shape = eqn.outvars[0].aval.shape
    n = math.prod(shape)
    full = [1 if v.aval.size == n and n > 1 else 0 for v in eqn.invars]
    source = _threefry_source()

    def run(ins):
        a, b = empty(shape, np.uint32), empty(shape, np.uint32)
        if n:
            k = runtime.kernel(source, "threefry")
            args = [x for v, f in zip(ins, full) for x in (v.buf, f)]
            launch_elementwise(k, n, n, *args, a.buf, b.buf)
        return [a, b]

    return run


_IOTA = "M = np.uint64(0xFFFFFFFF)\nS = np.uint64(32)\n\n\n" + _grid_loop(
    ["n", "hi", "lo"],
    ["c = np.uint64(i)", "hi[i] = np.uint32(c >> S)", "lo[i] = np.uint32(c & M)"],
    "iota",
)


@lowering("iota_2x32_shape")
def _iota(eqn: Eqn):
    shape = eqn.params["shape"]
    n = math.prod(shape)

    def run(ins):
        hi, lo = empty(shape, np.uint32), empty(shape, np.uint32)
        if n:
            launch_elementwise(runtime.kernel(_IOTA, "iota"), n, n, hi.buf, lo.buf)
        return [hi, lo]

    return run
