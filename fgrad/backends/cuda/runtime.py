"""The CUDA runtime layer: lazy ``numba.cuda``, device arrays, kernel compilation, launches.

Nothing here imports ``numba.cuda`` at module import time: ``import fgrad`` must work
on machines without the CUDA extra, a driver or a GPU. ``load()`` imports it on first
use and raises ``CudaUnavailableError`` naming what is missing.

Every device value is a ``CudaArray``: a flat (1-D, contiguous) device buffer plus the
logical shape and dtype. Kernels index flat buffers with the sizes passed as scalar
arguments, so reshapes are free (the same buffer) and kernel sources depend on ranks
and dtypes only, never on sizes: a new batch size launches the same compiled kernels.

Kernels are Python source generated per (pattern, rank, dtype) and compiled once by
``kernel(source, name)``; the sources call scalar math through names bound in
``namespace()`` (``exp``, ``log``, ...): ``math.*`` in real device code, NumPy's
scalar functions under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where
``math.log(0.0)`` would raise instead of returning ``-inf`` as the GPU does.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


class CudaUnavailableError(RuntimeError):
    """CUDA was asked for but numba.cuda, the driver or a GPU is missing."""


_cuda = None  # the numba.cuda module once loaded
_simulated = False


def load():
    """Import ``numba.cuda`` and check a GPU (or the simulator) is there; return the module."""
    global _cuda, _simulated
    if _cuda is not None:
        return _cuda
    try:
        from numba import cuda
    except ImportError as e:  # pragma: no cover - numba is a hard dependency
        raise CudaUnavailableError(
            f"the CUDA backend needs numba.cuda, which failed to import ({e}); install the "
            f"CUDA extra: pip install 'fgrad[cuda]'"
        ) from e
    from numba.core import config as numba_config

    simulated = bool(numba_config.ENABLE_CUDASIM)
    if not simulated:
        try:
            available = cuda.is_available()
        except Exception as e:  # noqa: BLE001 - any driver failure means "not available"
            raise CudaUnavailableError(
                _missing_message(f"the CUDA driver failed: {_one_line(e)}")
            ) from e
        if not available:
            raise CudaUnavailableError(_missing_message(_diagnose(cuda)))
    _cuda, _simulated = cuda, simulated
    return cuda


def _diagnose(cuda) -> str:
    try:
        from numba.cuda.cudadrv.driver import driver

        driver.get_device_count()
    except Exception as e:  # noqa: BLE001 - the driver's own explanation
        return f"no CUDA driver or GPU found ({_one_line(e)})"
    return "numba.cuda found no usable GPU (cuda.is_available() is False)"


def _one_line(e: Exception, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _missing_message(why: str) -> str:
    return (
        f"backend 'cuda' is not available: {why}. It needs an NVIDIA GPU with its driver "
        f"and the CUDA extra (pip install 'fgrad[cuda]', which brings numba-cuda). Without "
        f"a GPU, set NUMBA_ENABLE_CUDASIM=1 before importing fgrad to run the CUDA backend "
        f"on Numba's (slow) CUDA simulator, or use backend='cpu'."
    )


def is_available() -> bool:
    """True when the CUDA backend can run here (a GPU, or Numba's CUDA simulator)."""
    try:
        load()
    except CudaUnavailableError:
        return False
    return True


def simulated() -> bool:
    """True when kernels run on Numba's CUDA simulator instead of a GPU."""
    load()
    return _simulated


# ---------------------------------------------------------------- launch geometry
# The simulator runs every CUDA thread as a Python thread, so there every launch uses
# few threads and lets the grid-stride loops do the work; on a GPU, full blocks.


def threads_per_block() -> int:
    load()
    return 32 if _simulated else 256


def max_blocks() -> int:
    load()
    return 2 if _simulated else 65535


def reduce_threads() -> int:
    """Threads per block of the shared-memory tree reductions (a power of two)."""
    load()
    return 8 if _simulated else 256


def tile() -> int:
    """Side of the shared-memory tiles of the matmul kernel."""
    load()
    return 4 if _simulated else 16


# ---------------------------------------------------------------- device arrays


class CudaArray:
    """An immutable array in GPU memory: a flat device buffer, a shape and a dtype.

    ``np.asarray(x)`` copies it to the host (once: the host copy is kept, the array
    never changes). ``fgrad_backend`` names the backend that owns it, so the core can
    route operations on it to that backend.
    """

    __slots__ = ("buf", "shape", "dtype", "_host")
    fgrad_backend = "cuda"
    __array_priority__ = 50

    def __init__(self, buf, shape: Sequence[int], dtype):
        self.buf = buf
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self._host = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def reshape(self, shape: Sequence[int]) -> CudaArray:
        """The same buffer with another shape of the same size (no copy)."""
        shape = tuple(int(d) for d in shape)
        assert math.prod(shape) == self.size, (shape, self.shape)
        out = CudaArray(self.buf, shape, self.dtype)
        out._host = None if self._host is None else self._host.reshape(shape)
        return out

    def rows(self, i: int) -> CudaArray:
        """Row ``i`` along the leading axis, as a view (no copy)."""
        m = math.prod(self.shape[1:])
        return CudaArray(self.buf[i * m : (i + 1) * m], self.shape[1:], self.dtype)

    def copy_to_host(self) -> np.ndarray:
        """A read-only NumPy copy (cached)."""
        if self._host is None:
            if self.size == 0:
                host = np.empty(self.shape, self.dtype)
            else:
                host = self.buf.copy_to_host()[: self.size].reshape(self.shape)
            host.flags.writeable = False
            self._host = host
        return self._host

    def block_until_ready(self) -> CudaArray:
        if _cuda is not None and not _simulated:
            _cuda.synchronize()
        return self

    # ---- NumPy interop: everything else goes through a host copy
    def __array__(self, dtype=None, copy=None):
        host = self.copy_to_host()
        if dtype is not None and np.dtype(dtype) != host.dtype:
            return host.astype(dtype)
        return np.array(host) if copy else host

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object (a 0-d array)")
        return self.shape[0]

    def item(self, *args):
        return self.copy_to_host().item(*args)

    def tolist(self):
        return self.copy_to_host().tolist()

    def __bool__(self) -> bool:
        return bool(self.copy_to_host())

    def __int__(self) -> int:
        return int(self.copy_to_host())

    def __float__(self) -> float:
        return float(self.copy_to_host())

    def __index__(self) -> int:
        return self.copy_to_host().__index__()

    def __str__(self) -> str:
        return str(self.copy_to_host())

    def __repr__(self) -> str:
        return f"CudaArray({self.copy_to_host()!r})"


def empty(shape: Sequence[int], dtype) -> CudaArray:
    """An uninitialised device array (at least one element is allocated)."""
    cuda = load()
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    return CudaArray(cuda.device_array(max(size, 1), dtype), shape, dtype)


def to_device(x: Any, dtype=None) -> CudaArray:
    """Copy a host value (NumPy array, scalar) to the device; device arrays pass through."""
    if type(x) is CudaArray:
        return x
    cuda = load()
    host = np.asarray(x, dtype=dtype)
    flat = np.ascontiguousarray(host).reshape(-1)
    if flat.size == 0:
        flat = np.zeros(1, host.dtype)
    out = CudaArray(cuda.to_device(flat), host.shape, host.dtype)
    return out


def to_host(x: Any) -> np.ndarray:
    """A NumPy view of any value (device arrays are copied back, once)."""
    if type(x) is CudaArray:
        return x.copy_to_host()
    return np.asarray(x)


def copy_into(dst: CudaArray, offset: int, src: CudaArray) -> None:
    """Device-to-device copy of ``src`` into ``dst``'s flat elements from ``offset``."""
    n = src.size
    if n:
        dst.buf[offset : offset + n].copy_to_device(src.buf[:n])


# ---------------------------------------------------------------- kernels from source

_kernels: dict[tuple[str, str], Any] = {}
_namespace: dict[str, Any] | None = None

SIMULATOR_SWITCH_INTERVAL = 1e-4

#: When a list, every launch appends ``(source, name, argument types)`` to it; the PTX
#: check (``ptxcheck.py``) compiles those for a real GPU without running them.
record_launches: list | None = None


def kernel(source: str, name: str):
    """Compile ``name`` from ``source`` as a CUDA kernel (cached by source text)."""
    key = (source, name)
    k = _kernels.get(key)
    if k is None:
        cuda = load()
        ns = dict(namespace())
        exec(compile(source, f"<fgrad.cuda {name}>", "exec"), ns)  # noqa: S102
        k = _Kernel(cuda.jit(ns[name]), source, name)
        _kernels[key] = k
    return k


class _Kernel:
    __slots__ = ("fn", "source", "name")

    def __init__(self, fn, source: str, name: str):
        self.fn = fn
        self.source = source
        self.name = name

    def launch(self, blocks, threads, *args, shared: int = 0) -> None:
        """Launch on ``blocks`` x ``threads`` with ``shared`` bytes of dynamic shared
        memory (kernels take shared memory as one dynamic array, sliced: the simulator
        gives each thread of a block's first launch its own static shared array
        when they race to create it)."""
        if record_launches is not None:
            record_launches.append((self.source, self.name, arg_types(args)))
        config = (blocks, threads, 0, shared) if shared else (blocks, threads)
        if not _simulated:
            self.fn[config](*args)
            return
        # The simulator runs a block as Python threads and busy-polls them at every
        # syncthreads(): with the interpreter's default 5 ms switch interval a
        # shared-memory reduction crawls. A short interval, for this launch only,
        # makes simulated launches ~15x faster.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SIMULATOR_SWITCH_INTERVAL)
        try:
            self.fn[config](*args)
        finally:
            sys.setswitchinterval(interval)


def arg_types(args) -> list[str]:
    """Portable names of kernel argument types: ``"float32[::1]"`` or ``"int64"``."""
    out = []
    for a in args:
        if hasattr(a, "dtype") and hasattr(a, "shape") and not isinstance(a, np.generic):
            out.append(f"{np.dtype(a.dtype).name}[::1]")
        elif isinstance(a, bool | np.bool_):
            out.append("bool")
        elif isinstance(a, int):
            out.append("int64")
        elif isinstance(a, float):
            out.append("float64")
        else:
            out.append(np.dtype(type(a)).name)
    return out


def launch_elementwise(k: _Kernel, n: int, *args) -> None:
    """Launch a grid-stride kernel over ``n`` items (nothing for ``n == 0``)."""
    if n <= 0:
        return
    tpb = threads_per_block()
    blocks = max(1, min((n + tpb - 1) // tpb, max_blocks()))
    if _simulated:
        tpb = min(tpb, n)
    k.launch(blocks, tpb, *args)


# ---------------------------------------------------------------- scalar functions

# Helpers the generated sources call. Written once; compiled as CUDA device functions
# on a GPU, left as plain Python functions under the simulator.
HELPERS_SOURCE = '''
def erf_inv64(x):
    """Giles' erfinv (GPU Computing Gems, 2011) refined by Halley steps in float64:
    the reference implementation's algorithm, element by element."""
    a = fabs(x)
    if a >= 1.0:
        if a == 1.0:
            return copysign(inf64, x)
        return nan64
    w = -log1p(-a * a)
    if w < 5.0:
        t = w - 2.5
        p = 2.81022636e-08
        p = p * t + 3.43273939e-07
        p = p * t + -3.5233877e-06
        p = p * t + -4.39150654e-06
        p = p * t + 0.00021858087
        p = p * t + -0.00125372503
        p = p * t + -0.00417768164
        p = p * t + 0.246640727
        p = p * t + 1.50140941
    else:
        t = sqrt(w) - 3.0
        p = -0.000200214257
        p = p * t + 0.000100950558
        p = p * t + 0.00134934322
        p = p * t + -0.00367342844
        p = p * t + 0.00573950773
        p = p * t + -0.0076224613
        p = p * t + 0.00943887047
        p = p * t + 1.00167406
        p = p * t + 2.83297682
    y = p * a
    steps = 1
    if w > 16.0:
        lt = -log(1.0 - a)
        y = sqrt(lt)
        for _ in range(3):
            y = sqrt(lt - log(1.7724538509055159 * y))
        steps = 2
    for _ in range(steps):
        if a > 0.5:
            r = (1.0 - a) - erfc(y)
        else:
            r = erf(y) - a
        d = 1.1283791670955126 * exp(-y * y)
        y = y - r / (d + y * r)
    return copysign(y, x)
'''


def _sim_unary(fn):
    def call(x):
        with np.errstate(all="ignore"):
            return fn(x)

    return call


def _sim_math(fn):
    """``math.erf`` and friends on NumPy scalars, keeping the scalar's dtype."""

    def call(x):
        t = type(x) if isinstance(x, np.floating) else np.float64
        try:
            return t(fn(float(x)))
        except (ValueError, OverflowError):
            return t(np.nan)

    return call


_NUMBA_TYPES = "float32 float64 int32 int64 uint32 uint64".split()


def namespace() -> dict[str, Any]:
    """Globals of every generated kernel source."""
    global _namespace
    if _namespace is None:
        _namespace = build_namespace(load(), _simulated)
    return _namespace


def build_namespace(cuda, simulated: bool) -> dict[str, Any]:
    """The kernel globals for a GPU (``simulated=False``) or for the simulator."""
    import numba

    ns: dict[str, Any] = {"cuda": cuda, "np": np, "math": math}
    for name in _NUMBA_TYPES:  # element types of shared arrays, as Numba types
        ns[f"T_{name}"] = getattr(numba, name)
    ns["inf64"], ns["nan64"] = np.float64(np.inf), np.float64(np.nan)
    if simulated:
        for name, fn in {
            "exp": np.exp,
            "log": np.log,
            "log1p": np.log1p,
            "expm1": np.expm1,
            "tanh": np.tanh,
            "sin": np.sin,
            "cos": np.cos,
            "tan": np.tan,
            "sqrt": np.sqrt,
            "fabs": np.abs,
            "floor": np.floor,
            "ceil": np.ceil,
            "rint": np.rint,
        }.items():
            ns[name] = _sim_unary(fn)
        ns["copysign"] = np.copysign
        ns["erf"], ns["erfc"] = _sim_math(math.erf), _sim_math(math.erfc)
        helpers: dict[str, Any] = dict(ns)
        exec(HELPERS_SOURCE, helpers)  # noqa: S102
        ns["erf_inv64"] = _sim_math_erf_inv(helpers["erf_inv64"])
    else:
        from numba.cuda import libdevice

        for name in (
            "exp log log1p expm1 tanh sin cos tan sqrt fabs floor ceil copysign erf erfc"
        ).split():
            ns[name] = getattr(math, name)
        ns["rint"] = libdevice.rint
        helpers = dict(ns)
        exec(HELPERS_SOURCE, helpers)  # noqa: S102
        ns["erf_inv64"] = cuda.jit(device=True)(helpers["erf_inv64"])
    return ns


def _sim_math_erf_inv(fn):
    def call(x):
        with np.errstate(all="ignore"):
            return fn(np.float64(x))

    return call
