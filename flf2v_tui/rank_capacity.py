"""How many ranks a job may have to ever run on this machine, sized the way the worker sizes its pool.

Submit asks this so that a job that could never start here (`--gpus 1000` on a box with two GPUs) is refused
with the number this machine has, instead of waiting forever in the queue.
"""

from __future__ import annotations

import os

from engine.errors import BadInputError
from flf2v_tui.gpus import GpuSource, GpuUnavailable, default_source
from flf2v_tui.worker.pool import PoolError, parse_gpu_list

# A CPU job runs one process per rank in one CPU slot, each with the whole model's share of the work. Up to
# twice the cores still runs (the demo's 2 ranks on a 1-core box); 1000 ranks on 2 cores never ends well.
CPU_RANKS_PER_CORE = 2
OTHER_WORKER_FLAG = "--other-worker"


class NeverFitsHere(BadInputError):
    """A job that no worker started here could ever run. The check can be waived (the job is for a worker
    elsewhere): the CLI says so with its flag, the submit form with its switch (`saying`)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem  # what is wrong and the fix, up to the waiver
        super().__init__(self.saying(OTHER_WORKER_FLAG))

    def saying(self, waiver: str) -> str:
        """The message, naming `waiver` as the way to skip this check."""
        return f"{self.problem}, or {waiver} if a worker elsewhere (or one started with --cpu-slots) will run it"


def cpu_cores() -> int:
    """The cores this process (and so a worker started like it) may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def rank_capacity(source: GpuSource | None = None) -> tuple[int, str]:
    """(the most ranks one job may have here, why), as a worker started here without options would see it:
    FLF2V_GPUS, else every GPU NVML sees, else CPU ranks."""
    listed = os.environ.get("FLF2V_GPUS") or None  # read as Pool.build reads it
    if listed is not None:
        try:
            count = len(parse_gpu_list(listed, "FLF2V_GPUS"))
        except PoolError as exc:
            raise NeverFitsHere(f"{exc} (a worker started here refuses it too); fix it") from None
        return count, f"FLF2V_GPUS gives the worker {count} GPU{'s' if count > 1 else ''}"
    try:
        devices = (source or default_source()).devices()
    except (GpuUnavailable, OSError, ValueError):  # no driver, or a FLF2V_FAKE_GPUS file that does not read
        devices = []
    if devices:
        return len(devices), f"this machine has {len(devices)} GPU{'s' if len(devices) > 1 else ''}"
    cores = cpu_cores()
    most = CPU_RANKS_PER_CORE * cores
    return most, f"this machine has no GPU, and {cores} core{'s' if cores > 1 else ''} run at most {most} CPU ranks"


def check_fits_here(gpus: int, source: GpuSource | None = None) -> None:
    most, why = rank_capacity(source)
    if gpus > most:
        raise NeverFitsHere(f"--gpus {gpus}: {why}, so it could never start here; give --gpus {most} or less")
