"""Content-addressed, disk-cached Numba kernels.

Numba caches compiled code only for functions that live in a real file, so each
generated kernel's source is written once to ``<cache_dir>/kernels/k_<hash>.py`` and
imported from there; its ``@njit(cache=True)`` then loads from Numba's on-disk cache in
a new process instead of compiling. The in-memory map (hash -> dispatcher) is bounded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable

from fgrad.config import config


def _library_stamp() -> str:
    """Hash of the modules generated kernels import: Numba's cache does not notice
    when a callee changes, so a new library version must give new kernel files."""
    from fgrad.backends.cpu import fastmath, seglib

    h = hashlib.sha1()
    for module in (fastmath, seglib):
        with open(module.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


_HEADER = f"# fgrad kernel libraries {_library_stamp()}\nimport math\nimport numpy as np\nimport numba\n\n"
_MAX_LOADED = 1024
_loaded: OrderedDict[str, Callable] = OrderedDict()


def _kernel_dir() -> str:
    path = os.path.join(config.cache_dir, "kernels")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w") as f:
            f.write("")
        return path
    except OSError:
        # A read-only home: fall back to a per-user temp dir (still a real file).
        path = os.path.join(tempfile.gettempdir(), f"fgrad-kernels-{os.getuid()}")
        os.makedirs(path, exist_ok=True)
        return path


def load_kernel(source: str, name: str) -> Callable:
    """Return the Numba dispatcher defined as ``name`` in ``source`` (cached).

    Args:
        source: Python source defining ``name`` with ``@numba.njit(cache=True, ...)``;
            must not depend on array sizes, so programs for new batch sizes reuse it.
        name: the function's name in the source.
    """
    digest = hashlib.sha1((_HEADER + source).encode()).hexdigest()[:20]
    fn = _loaded.get(digest)
    if fn is not None:
        _loaded.move_to_end(digest)
        return fn
    directory = _kernel_dir()
    modname = f"fgrad_kernel_{digest}"
    path = os.path.join(directory, f"{modname}.py")
    if not os.path.exists(path):
        # Write atomically: concurrent processes may generate the same kernel.
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(_HEADER + source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    fn = getattr(module, name)
    _loaded[digest] = fn
    while len(_loaded) > _MAX_LOADED:
        old, _ = _loaded.popitem(last=False)
        sys.modules.pop(f"fgrad_kernel_{old}", None)
    return fn
