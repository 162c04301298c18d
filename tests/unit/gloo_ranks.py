"""Run a function on several ranks of a real gloo process group, in spawned processes.

An assertion that fails on any rank fails the calling test, with that rank's traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable[..., None], world: int, store: str, args: tuple[Any, ...]) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
        # Leave together: a rank that tears its group down while its peer still finishes a collective can
        # abort the peer inside gloo ("terminate called without an active exception", SIGABRT), seen under
        # load. On a failure there is no barrier: spawn reports it and stops the other rank.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., None], world: int, tmp_path: Path, *args: Any) -> None:
    """fn(rank, world, *args) on `world` ranks; fn must be importable (defined at a module's top level)."""
    store = tmp_path / f"gloo-store-{fn.__name__}"
    mp.spawn(_entry, args=(fn, world, str(store), args), nprocs=world, join=True)
