"""Backends: each module exports ``run(prim, values, params) -> list of outputs``.

Backends are reached only through ``fgrad.core.get_backend`` (the execution hook);
nothing in ``fgrad.nn`` or ``fgrad.optim`` imports them.
"""
