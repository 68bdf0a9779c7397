"""Rank 1 raises while rank 0 waits in a collective; the job must end, not hang.

Run by tests/test_distributed.py, which expects a non-zero exit status within seconds.

Usage: mpiexec -n 2 python dp_failure.py {early|late}

* early: rank 1 fails right after importing fgrad.distributed, before any MPI call
  (rank 0 waits in a barrier);
* late: after a successful allreduce, rank 1 fails while rank 0 waits in a broadcast.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from fgrad import distributed as dist


def main(mode: str) -> None:
    me = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    if mode == "early":
        if me == 1:
            raise RuntimeError("deliberate failure on rank 1 (early)")
        dist.barrier()
    else:
        dist.allreduce_sum({"w": np.ones(4)})
        if dist.rank() == 1:
            raise RuntimeError("deliberate failure on rank 1 (late)")
        dist.broadcast({"w": np.ones(4)})
    print(f"rank {me} got past the collective: the failure was not propagated", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
