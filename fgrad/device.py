"""``device_put``: move the arrays of a pytree to a backend's memory.

A backend with its own memory (``cuda``) exports ``device_put(value) -> Array``; the
host backends (``cpu``, ``reference``) keep NumPy arrays, so putting a value there
copies it back from a device if it lives on one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fgrad import tree as tree_util
from fgrad.config import config
from fgrad.core import Array, Tracer, get_backend, python_scalar_dtype


def _host_array(x: Any) -> Array:
    if isinstance(x, bool | int | float) and not isinstance(x, np.generic):
        return Array(np.asarray(x, dtype=python_scalar_dtype(x)))
    host = np.asarray(x)  # copies a device array back to the host
    return x if type(x) is Array and type(x._v) is np.ndarray else Array(np.array(host))


def device_put(x: Any, backend: str | None = None) -> Any:
    """Place every array leaf of the pytree ``x`` on ``backend``.

    Args:
        x: a pytree of arrays (fgrad Arrays, NumPy arrays, Python scalars).
        backend: "cpu", "reference" or "cuda"; default ``fgrad.config.default_backend``.

    Returns:
        The same pytree with fgrad Arrays as leaves. Under a transformation (inside
        ``jit`` or ``grad``) traced leaves are returned unchanged.

    Raises:
        CudaUnavailableError: for "cuda" without a GPU (or Numba's CUDA simulator).

    Example:
        >>> import numpy as np
        >>> from fgrad.device import device_put  # also fgrad.device_put
        >>> params = device_put({"w": np.ones(2)}, "cpu")
        >>> params["w"].tolist()
        [1.0, 1.0]
    """
    module = get_backend(backend or config.default_backend)
    put = getattr(module, "device_put", None) or _host_array

    def leaf(v):
        if isinstance(v, Tracer):
            return v
        return put(v)

    return tree_util.tree_map(leaf, x)
