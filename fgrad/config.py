"""Explicit, user-visible configuration (the one piece of module-level mutable state).

Set options as attributes (``fgrad.config.debug_nans = True``) or with
``fgrad.config.update("debug_nans", True)``, as in JAX.
"""

from __future__ import annotations

import os
from typing import Any

_DEFAULTS: dict[str, Any] = {
    # Raise at the first primitive whose output holds a NaN (eager and under jit).
    "debug_nans": False,
    # Raise at the first primitive whose output holds an infinity.
    "debug_infs": False,
    # Log every jit trace/compile with the function name and input signature.
    "log_compiles": False,
    # Make using the same PRNG key twice an error naming both uses.
    "debug_key_reuse": False,
    # Backend that eager operations and jit use when none is named.
    "default_backend": os.environ.get("FGRAD_DEFAULT_BACKEND", "cpu"),
    # Number of compiled programs each jitted function keeps (least recently used go).
    "jit_cache_size": 64,
    # From this many traces of one jitted function on, each retrace warns and names
    # the argument whose signature changed.
    "retrace_warning_threshold": 5,
    # Directory for generated, disk-cached kernels.
    "cache_dir": os.environ.get(
        "FGRAD_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "fgrad")
    ),
}


class Config:
    """Holds fgrad's global options; unknown names are an error, not a silent no-op.

    Example:
        >>> import fgrad
        >>> fgrad.config.update("debug_nans", True)
        >>> fgrad.config.debug_nans
        True
        >>> fgrad.config.update("debug_nans", False)
    """

    def __init__(self) -> None:
        # Options live in the instance __dict__, so reading one (on every eager
        # operation) is a plain attribute lookup.
        for name, value in _DEFAULTS.items():
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"fgrad.config has no option {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        self.update(name, value)

    @property
    def _values(self) -> dict[str, Any]:
        return self.__dict__

    def update(self, name: str, value: Any) -> None:
        """Set option ``name`` to ``value``.

        Args:
            name: one of the option names (see ``fgrad.config.options()``).
            value: its new value.
        """
        if name not in self._values:
            known = ", ".join(sorted(self._values))
            raise AttributeError(f"fgrad.config has no option {name!r}; known: {known}")
        object.__setattr__(self, name, value)

    def options(self) -> dict[str, Any]:
        """Return a copy of all options and their current values."""
        return dict(self._values)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Config({body})"


config = Config()
