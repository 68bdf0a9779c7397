"""Write ``docs/primitives.md``: every registered primitive and which rules and kernels it has.

Usage::

    python tools/gen_primitive_table.py           # rewrite docs/primitives.md
    python tools/gen_primitive_table.py --check   # exit 1 if the file is out of date

The table is generated from the registry (``fgrad.core.primitives``) after importing
every module that declares primitives, so a new primitive forces a regenerated table
(``tests/test_primitives.py`` checks the checked-in file is current).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pkgutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_PATH = os.path.join(ROOT, "docs", "primitives.md")

# Optional backends whose import needs extra hardware or packages (their kernels are
# still listed, through ``_kernel_names``, when they import).
# The CUDA backend is read for its kernel tables, not imported as part of the sweep.
SKIP_PREFIXES = ("fgrad.backends.cuda",)


def load_primitives() -> dict[str, str]:
    """Import every fgrad module, so that every primitive is registered wherever it is
    declared; return ``{module: error}`` for the modules that failed to import."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import fgrad

    errors = {}
    for info in pkgutil.walk_packages(fgrad.__path__, "fgrad.", onerror=lambda name: None):
        if info.name.startswith(SKIP_PREFIXES):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:  # a module being written must not hide the others
            errors[info.name] = f"{type(e).__name__}: {e}"
    return errors


def declaring_module(prim) -> str | None:
    """The fgrad module declaring ``prim`` (where its rules are defined), or None for a
    primitive declared outside the package (e.g. a toy one made by a test)."""
    for rule in (prim.shape_rule, prim.vjp_rule, prim.jvp_rule, prim.impl):
        mod = getattr(rule, "__module__", None) or ""
        if mod == "fgrad" or mod.startswith("fgrad."):
            return mod
    return None


def fgrad_primitives() -> dict:
    """The registry restricted to primitives the fgrad package declares."""
    from fgrad import core

    return {n: p for n, p in core.primitives.items() if declaring_module(p) is not None}


def _kernel_names(module: str, table: str = "KERNELS") -> set[str] | None:
    """Names in a backend module's kernel table, or None when the module is absent."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
        return set(getattr(importlib.import_module(module), table, {}))
    except Exception:
        return None


#: CPU kernels that call BLAS through NumPy rather than running Numba loops.
_BLAS_KERNELS = {"conv_general_dilated"}
#: Primitives the CPU backend runs as BLAS calls without a ``KERNELS`` entry.
BLAS = {"dot_general"}
#: Primitives whose NumPy impl returns a view of its operand (or a reinterpretation of
#: its bytes): no data moves, so there is nothing for a kernel to do.
VIEWS = {
    "reshape",
    "squeeze",
    "expand_dims",
    "broadcast_in_dim",
    "slice",
    "dynamic_slice",
    "transpose",
    "bitcast_convert_type",
}
#: Control flow: under ``jit`` a loop in the compiled driver whose bodies are compiled
#: programs (``compiler._control_flow_runner``).
CONTROL_FLOW = {"scan", "cond", "while"}
#: Call primitives: ``jit`` inlines their bodies (``compiler.inline_calls``).
CALLS = {"checkpoint", "custom_jvp_call", "custom_vjp_call"}
#: Host callbacks: they run Python by design.
HOST = {"debug_print"}
#: Primitives with a Numba kernel that measured slower than NumPy on every layout, so
#: the backend keeps NumPy (docs/performance.md, "Eager kernels").
NUMPY_FASTER = {"argsort", "concatenate"}


def _cpu_kernel(name: str, kernels: set[str], fused: set[str]) -> str:
    if name in _BLAS_KERNELS and name in kernels:
        return "BLAS (NumPy)"
    if name in kernels:
        return "Numba"
    if name in fused:
        return "Numba (fused, under jit)"
    if name in BLAS:
        return "BLAS (NumPy)"
    if name in VIEWS:
        return "view (no copy)"
    if name in CONTROL_FLOW:
        return "compiled loop (jit)"
    if name in CALLS:
        return "inlined under jit"
    if name in HOST:
        return "host callback"
    if name in NUMPY_FASTER:
        return "NumPy (faster than Numba)"
    return "NumPy fallback"


def render() -> str:
    """The Markdown text of the coverage table for the current registry."""
    prims = fgrad_primitives()
    cpu = _kernel_names("fgrad.backends.cpu") or set()
    fused = _kernel_names("fgrad.backends.cpu.emit", "EMITTERS") or set()
    cuda = (_kernel_names("fgrad.backends.cuda.kernels", "LOWERINGS") or set()) | (
        _kernel_names("fgrad.backends.cuda.emit", "EMITTERS") or set()
    )

    def has(rule) -> str:
        return "yes" if rule is not None else "**missing**"

    rows = []
    for name, p in prims.items():
        diff = p.differentiable
        rows.append(
            (
                declaring_module(p),
                name,
                has(p.shape_rule),
                has(p.impl),
                has(p.vjp_rule) if diff else "n/a (not differentiable)",
                has(p.jvp_rule) if diff else "n/a (not differentiable)",
                "yes" if p.batch_rule is not None else "no",
                _cpu_kernel(name, cpu, fused),
                "numba.cuda" if cuda and name in cuda else "no",
            )
        )
    rows.sort()
    lines = [
        "# Primitives",
        "",
        "<!-- Generated by tools/gen_primitive_table.py from fgrad.core.primitives; do not",
        "     edit by hand. tests/test_primitives.py fails when this file is out of date. -->",
        "",
        "Every primitive in the registry, where it is declared and which of its rules and",
        "backend kernels exist. *Reference impl* is the plain-NumPy oracle",
        "(`fgrad/backends/reference.py` runs it). *CPU kernel*: `Numba` when",
        "`fgrad.backends.cpu.KERNELS` has a compiled kernel (eager and under `jit`);",
        "`Numba (fused, under jit)` when the CPU compiler fuses it into generated loops",
        "(`fgrad.backends.cpu.emit.EMITTERS`) while eager calls use NumPy; `view (no copy)`",
        "for primitives whose NumPy impl returns a view (nothing to compute);",
        "`compiled loop (jit)` for control flow (a driver loop over compiled bodies);",
        "`inlined under jit` for call primitives; `host callback` for Python callbacks;",
        "`BLAS (NumPy)` for contractions; `NumPy (faster than Numba)` where a Numba kernel",
        "exists but measured slower (docs/performance.md); otherwise the NumPy reference",
        "runs. *CUDA kernel*: `numba.cuda` when `fgrad.backends.cuda` lowers it",
        "to a device kernel (its `LOWERINGS` or fused `EMITTERS`); otherwise it runs on the host.",
        "Integer-valued primitives (comparisons, argmax, ...) are not differentiable, so they",
        "have no VJP or JVP. `tests/test_primitives.py` checks every rule listed here against",
        "finite differences, the backends against the reference, and JAX where it has a",
        "counterpart; `tests/primitive_cases.py` holds each primitive's test inputs.",
        "",
        f"{len(rows)} primitives: "
        f"{sum(p.differentiable for p in prims.values())} differentiable, "
        f"{sum(r[7] == 'Numba' for r in rows)} with a Numba CPU kernel and "
        f"{sum(r[7].startswith('Numba (') for r in rows)} fused by the CPU compiler, "
        f"{sum(r[8] == 'numba.cuda' for r in rows)} with a CUDA kernel, "
        f"{sum(r[6] == 'yes' for r in rows)} with a batching rule.",
        "",
        "| primitive | module | shape rule | reference impl | VJP | JVP | batching "
        "| CPU kernel | CUDA kernel |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mod, name, *cols in rows:
        lines.append(f"| `{name}` | `{mod}` | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    errors = load_primitives()
    for mod, err in errors.items():
        print(f"warning: could not import {mod}: {err}", file=sys.stderr)
    text = render()
    if args.check:
        current = open(DOC_PATH, encoding="utf-8").read() if os.path.exists(DOC_PATH) else ""
        if current != text:
            print(f"{DOC_PATH} is out of date: run python tools/gen_primitive_table.py")
            return 1
        return 0
    os.makedirs(os.path.dirname(DOC_PATH), exist_ok=True)
    with open(DOC_PATH, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {DOC_PATH} ({len(text.splitlines())} lines)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
