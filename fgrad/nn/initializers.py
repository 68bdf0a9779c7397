"""Weight initialisers, as ``jax.nn.initializers``.

Each factory returns ``init(key, shape, dtype=float32) -> array``; ``zeros`` and
``ones`` are initialisers themselves (they ignore the key), as in JAX:

    >>> from fgrad import random
    >>> from fgrad.nn import initializers
    >>> w = initializers.glorot_uniform()(random.key(0), (784, 256))
    >>> w.shape, w.dtype.name
    ((784, 256), 'float32')

Shapes follow fgrad's layouts: dense kernels are ``(in, out)`` and convolution
kernels ``HWIO`` (``(*window, in, out)``), so by default the input axis is -2, the
output axis -1 and every other axis is the receptive field, which multiplies both
fans (``fan_in = in * prod(window)``, ``fan_out = out * prod(window)``).

The variance-scaling family draws with standard deviation ``sqrt(scale / n)``, where
``n`` is the fan the mode names:

=================  =======  ========  ==================  ===============================
initialiser        scale    mode      distribution        reference
=================  =======  ========  ==================  ===============================
glorot / xavier    1        fan_avg   uniform / trunc.    Glorot & Bengio 2010
he / kaiming       2        fan_in    uniform / trunc.    He et al. 2015
lecun              1        fan_in    uniform / trunc.    LeCun et al. 1998
=================  =======  ========  ==================  ===============================

The ``*_normal`` variants use a normal truncated at two standard deviations,
rescaled so the variance after truncation is the promised one (JAX's convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fgrad import numpy as fnp
from fgrad import random
from fgrad.core import Array

__all__ = [
    "constant",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "sparse",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

#: An initialiser: ``init(key, shape, dtype=float32) -> array``.
Initializer = Callable[..., Any]

# Standard deviation of a standard normal truncated to (-2, 2): dividing by it makes a
# two-sigma truncated normal have unit variance.
_TRUNCATED_STDDEV = 0.87962566103423978


def _dtype(dtype) -> np.dtype:
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"initialisers produce floating-point arrays, got dtype {dtype}")
    return dtype


def _shape(shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(d) for d in shape)


# ---------------------------------------------------------------- constants


def zeros(key, shape: Sequence[int], dtype=np.float32):
    """An initialiser returning zeros; ``key`` is ignored.

    Args:
        key: a PRNG key (unused; kept for the common signature).
        shape: output shape.
        dtype: output dtype (float32 default).

    Returns:
        An array of zeros.

    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.zeros(random.key(0), (2,)).tolist()
        [0.0, 0.0]
    """
    del key
    return fnp.zeros(_shape(shape), _dtype(dtype))


def ones(key, shape: Sequence[int], dtype=np.float32):
    """An initialiser returning ones; ``key`` is ignored.

    Args:
        key: a PRNG key (unused).
        shape: output shape.
        dtype: output dtype (float32 default).

    Returns:
        An array of ones.

    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.ones(random.key(0), (2,)).tolist()
        [1.0, 1.0]
    """
    del key
    return fnp.ones(_shape(shape), _dtype(dtype))


def constant(value, dtype=None) -> Initializer:
    """Build an initialiser that fills arrays with ``value``.

    Args:
        value: the fill value (a scalar, or an array broadcastable to the shape).
        dtype: default dtype of the initialiser (float32 when None).

    Returns:
        ``init(key, shape, dtype)``.

    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.constant(0.1)(random.key(0), (2,)).tolist()
        [0.10000000149011612, 0.10000000149011612]
    """

    def init(key, shape: Sequence[int], dtype=dtype):
        del key
        dt = _dtype(dtype)
        return fnp.broadcast_to(fnp.asarray(value, dtype=dt), _shape(shape))

    return init


# ---------------------------------------------------------------- plain distributions


def normal(stddev: float = 1e-2, dtype=None) -> Initializer:
    """Build an initialiser drawing from a normal with mean 0 and ``stddev``.

    Args:
        stddev: standard deviation.
        dtype: default dtype (float32 when None).

    Returns:
        ``init(key, shape, dtype)``.

    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.normal(0.5)(random.key(0), (3, 4)).shape
        (3, 4)
    """

    def init(key, shape: Sequence[int], dtype=dtype):
        dt = _dtype(dtype)
        return random.normal(key, _shape(shape), dt) * Array(np.array(stddev, dt))

    return init


def uniform(scale: float = 1e-2, dtype=None) -> Initializer:
    """Build an initialiser drawing uniformly from ``[0, scale)`` (JAX's convention).

    Args:
        scale: upper bound of the interval.
        dtype: default dtype (float32 when None).

    Returns:
        ``init(key, shape, dtype)``.

    Example:
        >>> import numpy as np
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> w = np.asarray(initializers.uniform(2.0)(random.key(0), (100,)))
        >>> bool(w.min() >= 0 and w.max() < 2)
        True
    """

    def init(key, shape: Sequence[int], dtype=dtype):
        dt = _dtype(dtype)
        return random.uniform(key, _shape(shape), dt) * Array(np.array(scale, dt))

    return init


def truncated_normal(
    stddev: float = 1e-2, dtype=None, lower: float = -2.0, upper: float = 2.0
) -> Initializer:
    """Build an initialiser drawing from a normal truncated to ``(lower, upper)``, scaled.

    ``stddev`` multiplies a standard normal truncated to ``(lower, upper)``; unlike the
    variance-scaling initialisers there is no correction for the variance lost to
    truncation (as in JAX).

    Args:
        stddev: standard deviation of the untruncated normal.
        dtype: default dtype (float32 when None).
        lower: lower truncation bound, in standard deviations.
        upper: upper truncation bound, in standard deviations.

    Returns:
        ``init(key, shape, dtype)``.

    Example:
        >>> import numpy as np
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> w = np.asarray(initializers.truncated_normal(0.1)(random.key(0), (1000,)))
        >>> bool(np.abs(w).max() < 0.2)
        True
    """

    def init(key, shape: Sequence[int], dtype=dtype):
        dt = _dtype(dtype)
        draw = random.truncated_normal(key, lower, upper, _shape(shape), dt)
        return draw * Array(np.array(stddev, dt))

    return init


# ---------------------------------------------------------------- variance scaling


def _axes_size(shape: tuple[int, ...], axes: int | Sequence[int]) -> int:
    if isinstance(axes, int | np.integer):
        return shape[int(axes)]
    return math.prod(shape[int(a)] for a in axes)


def compute_fans(
    shape: Sequence[int],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> tuple[float, float]:
    """Fan-in and fan-out of a dense or convolution kernel.

    Axes other than ``in_axis``, ``out_axis`` and ``batch_axis`` form the receptive
    field (a convolution's window), whose size multiplies both fans.

    Args:
        shape: the kernel's shape, e.g. ``(in, out)`` or HWIO ``(h, w, in, out)``.
        in_axis: axis or axes of the inputs.
        out_axis: axis or axes of the outputs.
        batch_axis: axes to ignore (e.g. a stack of independent kernels).

    Returns:
        ``(fan_in, fan_out)``.

    Example:
        >>> from fgrad.nn.initializers import compute_fans
        >>> compute_fans((3, 3, 16, 32))
        (144.0, 288.0)
    """
    shape = _shape(shape)
    if isinstance(in_axis, int) and in_axis == -2 and len(shape) <= 1:
        raise ValueError(
            f"Can't compute input and output sizes of a {len(shape)}-dimensional weights "
            f"tensor with default in_axis. Must be at least 2D or specify in_axis explicitly."
        )
    in_size = _axes_size(shape, in_axis)
    out_size = _axes_size(shape, out_axis)
    batch_size = _axes_size(shape, batch_axis)
    receptive_field = math.prod(shape) / in_size / out_size / batch_size
    return in_size * receptive_field, out_size * receptive_field


def variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype=None,
) -> Initializer:
    """Build an initialiser with variance ``scale / n`` for the fan ``n`` that ``mode`` names.

    Keeping the variance of each layer's activations (``fan_in``) or of its
    back-propagated gradients (``fan_out``) constant across layers is the argument of
    Glorot & Bengio (2010), who compromise with ``fan_avg``, and He et al. (2015),
    who double the scale to make up for ReLU zeroing half of its inputs.

    Args:
        scale: the variance multiplier (positive).
        mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` (arithmetic mean of the two)
            or ``"fan_geo_avg"`` (geometric mean).
        distribution: ``"truncated_normal"`` (cut at two standard deviations and
            rescaled so the variance after truncation is ``scale / n``), ``"normal"``
            or ``"uniform"`` (on ``[-sqrt(3 scale / n), sqrt(3 scale / n))``).
        in_axis: axis or axes of the inputs.
        out_axis: axis or axes of the outputs.
        batch_axis: axes to ignore when computing the fans.
        dtype: default dtype (float32 when None).

    Returns:
        ``init(key, shape, dtype)``.

    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> init = initializers.variance_scaling(2.0, "fan_in", "normal")
        >>> w = init(random.key(0), (1000, 500))
        >>> round(float(w.std()) ** 2 * 1000, 1)
        2.0
    """
    if mode not in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg"):
        raise ValueError(f"invalid mode for variance scaling initializer: {mode}")
    if distribution not in ("truncated_normal", "normal", "uniform"):
        raise ValueError(f"invalid distribution for variance scaling initializer: {distribution}")

    def init(key, shape: Sequence[int], dtype=dtype):
        shape = _shape(shape)
        dt = _dtype(dtype)
        fan_in, fan_out = compute_fans(shape, in_axis, out_axis, batch_axis)
        denominator = {
            "fan_in": fan_in,
            "fan_out": fan_out,
            "fan_avg": (fan_in + fan_out) / 2,
            "fan_geo_avg": (fan_in * fan_out) ** 0.5,
        }[mode]
        variance = np.array(scale / denominator, dt)
        if distribution == "truncated_normal":
            stddev = np.sqrt(variance) / np.array(_TRUNCATED_STDDEV, dt)
            return random.truncated_normal(key, -2, 2, shape, dt) * Array(stddev)
        if distribution == "normal":
            return random.normal(key, shape, dt) * Array(np.sqrt(variance))
        return random.uniform(key, shape, dt, -1) * Array(np.sqrt(3 * variance))

    return init


def _scaling_factory(scale: float, mode: str, distribution: str, doc: str):
    def factory(
        in_axis: int | Sequence[int] = -2,
        out_axis: int | Sequence[int] = -1,
        batch_axis: int | Sequence[int] = (),
        dtype=None,
    ) -> Initializer:
        return variance_scaling(
            scale,
            mode,
            distribution,
            in_axis=in_axis,
            out_axis=out_axis,
            batch_axis=batch_axis,
            dtype=dtype,
        )

    factory.__doc__ = doc
    return factory


_FACTORY_ARGS = """
    Args:
        in_axis: axis or axes of the inputs (default -2).
        out_axis: axis or axes of the outputs (default -1).
        batch_axis: axes to ignore when computing the fans.
        dtype: default dtype (float32 when None).

    Returns:
        ``init(key, shape, dtype)``.
"""

# Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
# networks" (AISTATS 2010): Var(W) = 2 / (fan_in + fan_out).
glorot_uniform = _scaling_factory(
    1.0,
    "fan_avg",
    "uniform",
    """Glorot (Xavier) uniform: variance ``2 / (fan_in + fan_out)`` (Glorot & Bengio 2010).

    Uniform on ``[-limit, limit)`` with ``limit = sqrt(6 / (fan_in + fan_out))``.
"""
    + _FACTORY_ARGS
    + """
    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.glorot_uniform()(random.key(0), (3, 3, 16, 32)).shape
        (3, 3, 16, 32)
    """,
)
glorot_normal = _scaling_factory(
    1.0,
    "fan_avg",
    "truncated_normal",
    """Glorot (Xavier) normal: variance ``2 / (fan_in + fan_out)`` (Glorot & Bengio 2010).

    A normal truncated at two standard deviations, rescaled to that variance.
"""
    + _FACTORY_ARGS
    + """
    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.glorot_normal()(random.key(0), (4, 5)).shape
        (4, 5)
    """,
)
# He, Zhang, Ren & Sun, "Delving deep into rectifiers" (ICCV 2015): Var(W) = 2 / fan_in,
# so that ReLU layers keep the variance of their pre-activations.
he_uniform = _scaling_factory(
    2.0,
    "fan_in",
    "uniform",
    """He (Kaiming) uniform: variance ``2 / fan_in`` (He et al. 2015), for ReLU networks.

    Uniform on ``[-limit, limit)`` with ``limit = sqrt(6 / fan_in)``.
"""
    + _FACTORY_ARGS
    + """
    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.he_uniform()(random.key(0), (4, 5)).shape
        (4, 5)
    """,
)
he_normal = _scaling_factory(
    2.0,
    "fan_in",
    "truncated_normal",
    """He (Kaiming) normal: variance ``2 / fan_in`` (He et al. 2015), for ReLU networks.

    A normal truncated at two standard deviations, rescaled to that variance.
"""
    + _FACTORY_ARGS
    + """
    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.he_normal()(random.key(0), (4, 5)).shape
        (4, 5)
    """,
)
# LeCun, Bottou, Orr & Mueller, "Efficient BackProp" (1998): Var(W) = 1 / fan_in, which
# keeps unit-variance inputs at unit variance through a linear layer.
lecun_uniform = _scaling_factory(
    1.0,
    "fan_in",
    "uniform",
    """LeCun uniform: variance ``1 / fan_in`` (LeCun et al. 1998).

    Uniform on ``[-limit, limit)`` with ``limit = sqrt(3 / fan_in)``.
"""
    + _FACTORY_ARGS
    + """
    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.lecun_uniform()(random.key(0), (4, 5)).shape
        (4, 5)
    """,
)
lecun_normal = _scaling_factory(
    1.0,
    "fan_in",
    "truncated_normal",
    """LeCun normal: variance ``1 / fan_in`` (LeCun et al. 1998).

    A normal truncated at two standard deviations, rescaled to that variance.
"""
    + _FACTORY_ARGS
    + """
    Example:
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> initializers.lecun_normal()(random.key(0), (4, 5)).shape
        (4, 5)
    """,
)
for _name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
              "lecun_normal"):  # fmt: skip
    globals()[_name].__name__ = globals()[_name].__qualname__ = _name
del _name

xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal


# ---------------------------------------------------------------- orthogonal and sparse


def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype=None) -> Initializer:
    """Build an initialiser returning (scaled) random orthogonal matrices.

    Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning
    in deep linear neural networks" (ICLR 2014): orthogonal weights preserve norms, so
    deep (and recurrent) linear maps neither explode nor vanish at the start.

    The shape is viewed as a matrix whose columns lie along ``column_axis`` (rows:
    all other axes, flattened). The result is the Q factor of a normal matrix with
    the signs of R's diagonal folded in, which makes it uniform (Haar) on the
    orthogonal group (Mezzadri 2007); for non-square shapes the smaller side is
    orthonormal (``Q^T Q = I`` when rows >= columns, ``Q Q^T = I`` otherwise).

    The QR decomposition is computed with NumPy on the concrete normal draw, so the
    initialiser runs eagerly (initialisation happens outside ``jit``); the key must
    be a concrete array, not a traced one.

    Args:
        scale: multiplier of the orthogonal matrix.
        column_axis: the axis holding the columns.
        dtype: default dtype (float32 when None).

    Returns:
        ``init(key, shape, dtype)``; ``shape`` needs at least two axes.

    Example:
        >>> import numpy as np
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> q = np.asarray(initializers.orthogonal()(random.key(0), (4, 4)))
        >>> bool(np.allclose(q.T @ q, np.eye(4), atol=1e-5))
        True
    """

    def init(key, shape: Sequence[int], dtype=dtype):
        shape = _shape(shape)
        dt = _dtype(dtype)
        if len(shape) < 2:
            raise ValueError("orthogonal initializer requires at least a 2D shape")
        if any(d == 0 for d in shape):
            return fnp.zeros(shape, dt)
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        z = np.asarray(
            random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dt), np.float64
        )
        q, r = np.linalg.qr(z)
        q = q * np.sign(np.diag(r))[None, :]
        if n_rows < n_cols:
            q = q.T
        rest = tuple(d for i, d in enumerate(shape) if i != column_axis % len(shape))
        q = np.moveaxis(q.reshape(rest + (n_cols,)), -1, column_axis)
        return Array((scale * q).astype(dt))

    return init


def sparse(sparsity: float, stddev: float = 0.01, dtype=None) -> Initializer:
    """Build an initialiser with a fixed fraction of zeros in every column.

    Martens, "Deep learning via Hessian-free optimization" (ICML 2010) gives each unit
    only a few non-zero incoming weights, so units start out different without large
    weights; ``torch.nn.init.sparse_`` is the same scheme. Here the weights are
    normal with ``stddev``, and in each column (each output unit: the last axis, with
    all other axes flattened into its incoming weights, so ``(in, out)`` dense and
    HWIO conv kernels alike) exactly ``ceil(sparsity * rows)`` entries, chosen at
    random, are zero.

    Args:
        sparsity: the fraction of each column set to zero, in [0, 1].
        stddev: standard deviation of the non-zero entries.
        dtype: default dtype (float32 when None).

    Returns:
        ``init(key, shape, dtype)``; ``shape`` needs at least two axes.

    Example:
        >>> import numpy as np
        >>> from fgrad import random
        >>> from fgrad.nn import initializers
        >>> w = np.asarray(initializers.sparse(0.9)(random.key(0), (100, 8)))
        >>> (w == 0).sum(axis=0).tolist()
        [90, 90, 90, 90, 90, 90, 90, 90]
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")

    def init(key, shape: Sequence[int], dtype=dtype):
        shape = _shape(shape)
        dt = _dtype(dtype)
        if len(shape) < 2:
            raise ValueError("sparse initializer requires at least a 2D shape")
        cols = shape[-1]
        rows = math.prod(shape[:-1])
        num_zeros = math.ceil(sparsity * rows)
        key_w, key_mask = random.split(key)
        w = random.normal(key_w, (rows, cols), dt) * Array(np.array(stddev, dt))
        # The first num_zeros rows of every column are marked, then every column is
        # shuffled independently: a uniformly random subset of zeros per column.
        marked = fnp.broadcast_to(fnp.arange(rows)[:, None] < num_zeros, (rows, cols))
        zero = random.permutation(key_mask, marked, axis=0, independent=True)
        return fnp.reshape(fnp.where(zero, fnp.zeros((), dt), w), shape)

    return init
