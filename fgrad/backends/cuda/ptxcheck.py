"""Compile recorded kernel launches for a real GPU, without a GPU: a PTX check.

The simulator runs kernels as Python, so it cannot tell whether Numba can compile
them for the device (a NumPy function unsupported in CUDA code, a float64 sneaking
into integer arithmetic, a shared-memory declaration). This module compiles every
kernel the simulator launched, with the argument types it was launched with, through
Numba's real CUDA pipeline down to PTX (NVVM, from a CUDA toolkit; no driver or GPU
needed), and through ``ptxas`` when the toolkit has it.

Usage (``records.json`` holds ``runtime.record_launches`` from a simulated run)::

    python -m fgrad.backends.cuda.ptxcheck records.json [--cc 8.0]

It must run WITHOUT ``NUMBA_ENABLE_CUDASIM``. Prints each kernel that fails to compile
and a summary; exits 1 when any fails, 77 when there is no CUDA toolkit to check with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

#: Exit status when no CUDA toolkit is installed (the check could not run).
NO_TOOLKIT = 77


def toolkit_problem(cc=(8, 0)) -> str | None:
    """Why Numba cannot compile kernels to PTX here (no or an incomplete CUDA toolkit:
    NVVM, and for numba-cuda also NVRTC), or None when it can."""
    try:
        from numba import cuda

        _without_a_device(cc)

        def probe(x):
            x[0] = 1.0

        cuda.compile_ptx(probe, (_numba_type("float32[::1]"),), cc=cc)
    except Exception as e:  # noqa: BLE001 - any failure means "cannot compile here"
        return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return None


def _numba_type(spec: str):
    import numba

    if spec.endswith("[::1]"):
        return numba.from_dtype(np.dtype(spec[:-5]))[::1]
    if spec == "bool":
        return numba.boolean
    return numba.from_dtype(np.dtype(spec))


def check(records, cc=(8, 0), ptxas: bool = True) -> list[tuple[str, str]]:
    """Compile each distinct ``(source, name, argtypes)``; return ``(what, error)`` failures."""
    from numba import cuda
    from numba.core import config

    from fgrad.backends.cuda.runtime import build_namespace

    if config.ENABLE_CUDASIM:
        raise RuntimeError(
            "the PTX check needs Numba's real CUDA target: unset NUMBA_ENABLE_CUDASIM"
        )
    _without_a_device(cc)
    ns0 = build_namespace(cuda, simulated=False)
    ptxas_bin = shutil.which("ptxas") or _toolkit_ptxas()
    seen = set()
    failures = []
    for source, name, types in records:
        key = (source, name, tuple(types))
        if key in seen:
            continue
        seen.add(key)
        what = f"{name}({', '.join(types)})"
        try:
            ns = dict(ns0)
            exec(compile(source, f"<fgrad.cuda {name}>", "exec"), ns)  # noqa: S102
            sig = tuple(_numba_type(t) for t in types)
            ptx, _ = cuda.compile_ptx(ns[name], sig, cc=cc)
            if ptxas and ptxas_bin:
                try:
                    _assemble(ptxas_bin, ptx, cc)
                except _PtxasTooOld as e:  # NVVM is newer than the toolkit's ptxas
                    print(f"ptxcheck: not assembling ({e})")
                    ptxas_bin = None
        except Exception as e:  # noqa: BLE001 - report every failure
            failures.append((what, f"{type(e).__name__}: {str(e)[:2000]}\n{source}"))
    return failures


def _without_a_device(cc) -> None:
    """Let device functions compile with no GPU: Numba asks the current device for its
    compute capability when a kernel calls one; answer ``cc`` instead."""
    from numba.cuda import dispatcher

    class _Device:
        compute_capability = cc

    if hasattr(dispatcher, "get_current_device"):
        dispatcher.get_current_device = lambda: _Device()


def _toolkit_ptxas() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    path = os.path.join(home, "bin", "ptxas")
    return path if os.path.exists(path) else None


def _assemble(ptxas_bin: str, ptx: str, cc) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        out = subprocess.run(
            [ptxas_bin, f"-arch=sm_{cc[0]}{cc[1]}", src, "-o", os.path.join(tmp, "k.cubin")],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            if "Unsupported .version" in out.stderr:
                raise _PtxasTooOld(out.stderr.strip().splitlines()[0])
            raise RuntimeError(f"ptxas failed: {out.stderr.strip()}")


class _PtxasTooOld(RuntimeError):
    """The installed ptxas cannot read the PTX version Numba emits."""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cc = (8, 0)
    if "--cc" in argv:
        i = argv.index("--cc")
        major, minor = argv[i + 1].split(".")
        cc = (int(major), int(minor))
        del argv[i : i + 2]
    problem = toolkit_problem(cc)
    if problem:
        print(f"ptxcheck: cannot compile for a GPU here, nothing checked ({problem})")
        return NO_TOOLKIT
    with open(argv[0]) as f:
        records = json.load(f)
    failures = check(records, cc)
    n = len({(s, k, tuple(t)) for s, k, t in records})
    for what, err in failures:
        print(f"FAIL {what}\n{err}\n")
    print(f"ptxcheck: {n - len(failures)} of {n} kernel signatures compile for sm_{cc[0]}{cc[1]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
