"""A warm group's ranks agree, on real gloo ranks: on the next job or the stop (rank 0's view wins, even when
another rank saw something else first), on stopping when idle, and on the step a cancelled job stops at."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest
import torch

from engine.reporting import Reporter
from engine.runtime import Runtime
from engine.serve import next_job
from engine.warm_job import Cancelled, Group, step_hook
from engine.warm_protocol import JobFile, request_cancel, request_stop, stop_path
from tests.unit.gloo_ranks import run_ranks

pytestmark = pytest.mark.slow


def _group(rank: int, world: int, folder: Path) -> Group:
    runtime = Runtime(rank=rank, local_rank=rank, world_size=world, device=torch.device("cpu"))
    return Group(folder, argparse.Namespace(log_dir=None), runtime, Reporter(runtime, None), key={})


def _rank_zero_decides(rank: int, world: int, folder: Path) -> None:
    group = _group(rank, world, folder)
    JobFile(1, 7, ["--prompt", "a"]).write(folder)
    assert next_job(group, 1, None) == JobFile(1, 7, ["--prompt", "a"])
    JobFile(2, 8, ["--prompt", "b"]).write(folder)
    if rank == 0:
        time.sleep(0.5)  # rank 1 sees job 2 and waits for rank 0, which finds the stop file written meanwhile
        request_stop(folder)
    assert next_job(group, 2, None) is None


def _idle_rank_zero_stops_every_rank(rank: int, world: int, folder: Path) -> None:
    started = time.monotonic()
    assert next_job(_group(rank, world, folder), 1, idle_exit_s=0.5) is None
    assert 0.5 <= time.monotonic() - started < 10
    assert stop_path(folder).exists()


def _cancel_at_one_step(rank: int, world: int, folder: Path) -> None:
    group = _group(rank, world, folder)
    hook = step_hook(group, JobFile(1, 7, []), argparse.Namespace(prompt="a"))
    hook(1, 4)
    if rank == 0:
        request_cancel(folder, 1)  # before rank 0's check of step 2; rank 1 may be there already, waiting for it
    with pytest.raises(Cancelled, match=r"^cancelled at step 2/4$"):
        hook(2, 4)


def _agreements(rank: int, world: int, root: Path) -> None:
    # One spawn for the three: each rank's import of the engine is most of the time.
    for case in (_rank_zero_decides, _idle_rank_zero_stops_every_rank, _cancel_at_one_step):
        folder = root / case.__name__
        folder.mkdir(exist_ok=True)
        case(rank, world, folder)


def test_the_ranks_agree_on_the_next_job_on_an_idle_stop_and_on_the_cancelled_step(tmp_path):
    run_ranks(_agreements, 2, tmp_path, tmp_path)
