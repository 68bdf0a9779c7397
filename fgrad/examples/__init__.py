"""The example training scripts, found and run by name.

The scripts live in the repository's ``examples/`` directory (read them: each is a
self-contained lesson); this package finds them from a source checkout or an editable
install (``pip install -e ".[examples]"``) and runs one by name::

    python -m fgrad.examples                 # list them, with one line each
    python -m fgrad.examples cnn_digits      # run one (arguments after the name pass on)
    python -m fgrad.examples cnn_digits --epochs 5 --out results/

``fgrad.examples.common`` holds the few helpers the scripts share (progress bar,
plots, output directory, timing).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from types import ModuleType

__all__ = ["examples_dir", "list_examples", "load_example", "run_example"]


def examples_dir() -> str:
    """The directory holding the example scripts (``<repo>/examples``).

    Raises:
        FileNotFoundError: fgrad was installed from a wheel, which does not ship them.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.normpath(os.path.join(here, os.pardir, os.pardir, "examples"))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            "fgrad.examples: the example scripts ship with the source repository, not "
            f"with an installed wheel (looked in {path!r}). Clone the repository and run "
            'pip install -e ".[examples]" from it.'
        )
    return path


def list_examples() -> dict[str, str]:
    """``{name: first line of its docstring}`` for every script in ``examples/``."""
    directory = examples_dir()
    out = {}
    for filename in sorted(os.listdir(directory)):
        if not filename.endswith(".py") or filename.startswith("_"):
            continue
        with open(os.path.join(directory, filename), encoding="utf-8") as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        out[filename[:-3]] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (its ``main(argv)`` runs it)."""
    names = list_examples()
    if name not in names:
        raise KeyError(f"no example named {name!r}; the examples are: {', '.join(names)}")
    path = os.path.join(examples_dir(), name + ".py")
    module_name = f"fgrad_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def run_example(name: str, argv: list[str] | None = None) -> dict:
    """Run ``examples/<name>.py`` with command-line ``argv``; returns its metrics."""
    return load_example(name).main(argv)
