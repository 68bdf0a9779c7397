"""Test configuration: hypothesis profiles and the JAX oracle in float64."""

import os

# The CUDA backend is tested on Numba's CUDA simulator (no GPU needed); the variable
# must be set before numba.cuda is imported, and does not affect numba.njit CPU code.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from hypothesis import HealthCheck, settings

# CI and the default run use a small, deterministic budget; FGRAD_HYPOTHESIS=thorough
# runs the large one.
settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "huge", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("FGRAD_HYPOTHESIS", "ci"))

try:  # JAX is a test oracle (dev extra); compare in float64.
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
except ImportError:  # pragma: no cover - the dev extra installs it
    pass
