"""Side-by-side training-step benchmarks: fgrad (eager, jit) against NumPy, JAX, PyTorch, autograd.

Run ``python -m benchmarks.run`` (see ``benchmarks/run.py`` for the options). Layout:

* ``workloads``  - the four workloads: sizes, hyperparameters, float32 parameters and data
  drawn once with NumPy from a fixed seed (every framework starts from these arrays);
* ``fw_fgrad``, ``fw_numpy``, ``fw_jax``, ``fw_torch``, ``fw_autograd`` - one module per
  framework, each building ``init() -> (params, opt_state)`` and
  ``step(params, opt_state, x, y) -> (params, opt_state, loss)`` for every workload it runs;
* ``timing``     - warm-up, the timed loop, medians;
* ``ceiling``    - the mlp step's eight matmuls alone and the machine's matmul GFLOP/s;
* ``machine``    - CPU, versions, BLAS kernel (threadpoolctl), the benchmark's environment;
* ``worker``     - one (workload, framework) cell in its own process, printing JSON;
* ``report``     - loss agreement, ratios, targets and the Markdown page;
* ``run``        - the command line: runs every cell in a fresh subprocess, in sequence.
"""
