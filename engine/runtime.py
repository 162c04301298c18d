"""Process-level concerns of one rank: process group, device, logging, seed and memory figures."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import random
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch
import torch.distributed as dist

from engine.devices import check_device
from engine.errors import BadInputError, PeerLostError
from engine.memory_stats import NvmlProcessMemory, memory_figures, reset_peak

LOG_FORMAT = "[%(asctime)s] %(levelname)s: %(message)s"
DEFAULT_TIMEOUT_S = 600.0
DIST_TIMEOUT_KNOB = "FLF2V_DIST_TIMEOUT"
# What a hung collective's message tells the user to raise: the job's flag, whose default that variable sets.
COLLECTIVE_TIMEOUT_HINT = "--collective_timeout (seconds; FLF2V_DIST_TIMEOUT sets its default)"
# The wait for the other ranks to finish loading is not a collective's: loading differs between ranks (a cold
# page cache, a slow disk) by more than any collective takes, so it has a limit of its own.
LOAD_TIMEOUT_KNOB = "FLF2V_LOAD_TIMEOUT"
DEFAULT_LOAD_TIMEOUT_S = 3600.0
# A warm group's other ranks wait for rank 0's tail (decode and save) before the next job: work of rank 0 alone,
# which takes as long as the clip, so it has a limit of its own too.
TAIL_TIMEOUT_KNOB = "FLF2V_TAIL_TIMEOUT"
DEFAULT_TAIL_TIMEOUT_S = 3600.0
# NCCL's own watchdog aborts the process at its timeout without a word; ours reports first (see parallel.watch).
NCCL_TIMEOUT_MARGIN_S = 60.0


class RankWatch(Protocol):
    """What the runtime and the error path ask of the peer watch. engine.parallel.watch.PeerWatch is one; it
    builds on the runtime, so the runtime names only this."""

    def waiting(
        self, what: str, limit_s: float | None = None, knob: str = COLLECTIVE_TIMEOUT_HINT
    ) -> contextlib.AbstractContextManager[None]: ...

    def stop(self) -> None: ...

    def lost_peer(self, wait_s: float = 0.0) -> PeerLostError | None: ...

    def unwinding(self) -> None: ...


@dataclass
class Runtime:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    log_file: TextIO | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    watch: RankWatch | None = None
    load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S
    tail_timeout_s: float = DEFAULT_TAIL_TIMEOUT_S
    # A gloo group for waits longer than a collective's timeout (NCCL's watchdog would end those); None: the
    # default group is gloo already.
    cpu_group: Any = None
    nvml: NvmlProcessMemory | None = None  # made at the first CUDA memory figure

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def gpu_name(self) -> str | None:
        """The GPU model this rank computes on (None on the CPU), as the recipe records it."""
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    def waiting(
        self, what: str, limit_s: float | None = None, knob: str = COLLECTIVE_TIMEOUT_HINT
    ) -> contextlib.AbstractContextManager[None]:
        """A region spent waiting on the other ranks, timed by the peer watch when there is one (RankWatch.waiting
        says what `limit_s` and `knob` are)."""
        return self.watch.waiting(what, limit_s, knob) if self.watch is not None else contextlib.nullcontext()

    def synchronize(self) -> None:
        """Wait for this rank's queued GPU work. On NCCL a collective returns once queued; called at the end
        of a waiting region, this makes a hung one block inside the region, where the watch times it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def barrier(self, what: str = "a barrier") -> None:
        if self.distributed:
            with self.waiting(what):
                dist.barrier()
                self.synchronize()

    def rendezvous(self, what: str, limit_s: float, knob: str) -> None:
        """Every rank meets here, waiting up to `limit_s` rather than the collective timeout (a barrier on the
        CPU group with its own timeout, timed by the peer watch with that limit; a dead peer still ends the
        wait at once). `knob` names the setting that raises the limit."""
        if not self.distributed:
            return
        with self.waiting(what, limit_s, knob):
            dist.monitored_barrier(group=self.cpu_group, timeout=timedelta(seconds=limit_s), wait_all_ranks=True)

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's value, on every rank."""
        if not self.distributed:
            return value
        box = [value if self.rank == 0 else None]
        with self.waiting("a broadcast from rank 0"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def memory(self) -> dict[str, int]:
        """This rank's memory figures (engine.memory_stats): CUDA allocator and NVML, or RSS on the CPU."""
        if self.nvml is None and self.device.type == "cuda":
            self.nvml = NvmlProcessMemory(self.device)
        return memory_figures(self.device, self.nvml)

    def reset_peak(self) -> None:
        """Peaks count from now: each stage reports its own (engine.memory_stats)."""
        reset_peak(self.device)

    def finish(self) -> None:
        """The collective part of the run is over: every rank meets, the peer watch stops, and the process
        group is left. Called once the latent is denoised, before rank 0's tail (decode and save), so the other
        ranks never wait on that tail, however long it takes, and may exit. The watch stops before any rank may
        exit, so no rank's normal exit looks like a lost peer to another. Again after that: nothing to do."""
        if not self.distributed:
            return
        self.barrier("the last barrier")
        if self.watch is not None:
            self.watch.stop()
            self.watch = None
        self.barrier()
        dist.destroy_process_group()

    def close(self, failed: bool = False) -> None:
        """Stop the watch and leave the process group. After a failure the group is not destroyed:
        destroy_process_group waits for the communicators' pending work, which a lost or stuck peer never
        completes (gloo waits up to its timeout, NCCL can block for good). NCCL's communicators are
        aborted instead, which does not wait; gloo's are left to the process's end (see `failures.leave`)."""
        if self.watch is not None:
            self.watch.stop()
            self.watch = None
        if self.distributed:
            if not failed:
                dist.destroy_process_group()
            elif self.device.type == "cuda":
                # A private torch.distributed function (no public abort exists); torch itself uses it to
                # drop groups without a collective. Not used on gloo, where it waits as destroy does.
                with contextlib.suppress(Exception):
                    dist.distributed_c10d._abort_process_group()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    check_device(choice, local_rank)  # generate checks it before anything loads; other callers get it here
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_runtime(device_choice: str, log_dir: str | None, timeout_s: float | None = None) -> Runtime:
    """`timeout_s`: the collective timeout (--collective_timeout); None takes FLF2V_DIST_TIMEOUT, else 600."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(device_choice, local_rank)
    log_file = setup_logging(rank, log_dir)
    # Every rank's log says where it ran: across nodes, the failing rank's node is found from its log alone.
    logging.getLogger("flf2v.engine").info(
        f"rank {rank} of {world_size} on node {socket.gethostname()} (local rank {local_rank}, pid {os.getpid()})"
    )
    timeout_s = timeout_s if timeout_s is not None else dist_timeout_s()
    load_timeout_s = seconds_from_env(LOAD_TIMEOUT_KNOB, DEFAULT_LOAD_TIMEOUT_S)
    tail_timeout_s = seconds_from_env(TAIL_TIMEOUT_KNOB, DEFAULT_TAIL_TIMEOUT_S)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        margin = NCCL_TIMEOUT_MARGIN_S if backend == "nccl" else 0.0
        kwargs: dict[str, Any] = {
            "backend": backend,
            "init_method": "env://",
            "timeout": timedelta(seconds=timeout_s + margin),
        }
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(rank=rank, world_size=world_size, **kwargs)
    cpu_group = None
    if dist.is_initialized() and dist.get_backend() != "gloo":
        cpu_group = dist.new_group(backend="gloo")
    return Runtime(
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        device=device,
        log_file=log_file,
        timeout_s=timeout_s,
        load_timeout_s=load_timeout_s,
        tail_timeout_s=tail_timeout_s,
        cpu_group=cpu_group,
    )


def dist_timeout_s() -> float:
    """FLF2V_DIST_TIMEOUT: the longest any rank waits on the others (seconds, default 600)."""
    return seconds_from_env(DIST_TIMEOUT_KNOB, DEFAULT_TIMEOUT_S)


def seconds_from_env(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable `name`; `default` when unset or blank."""
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise BadInputError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise BadInputError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def setup_logging(rank: int, log_dir: str | None) -> TextIO | None:
    """Official-style log lines: rank 0 to stdout at INFO, every rank to LOG_DIR/rank<r>.log when given.

    Library progress bars are switched off: the step progress goes to the log as lines, never as
    carriage-return animations, so nothing is written for a terminal that is not there.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    formatter = logging.Formatter(LOG_FORMAT)
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    console.setFormatter(formatter)
    root.addHandler(console)
    log_file: TextIO | None = None
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_file = open(Path(log_dir) / f"rank{rank}.log", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        file_handler = logging.StreamHandler(log_file)
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
        # A hard crash or a hang dumped with SIGUSR1 still leaves Python stacks in the rank's log.
        faulthandler.enable(log_file)
    logging.captureWarnings(True)
    for name in ("diffusers", "transformers", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from diffusers.utils import logging as dlogging
        from transformers.utils import logging as tlogging

        dlogging.disable_progress_bar()
        tlogging.disable_progress_bar()
    except ImportError:
        pass
    return log_file


def resolve_seed(runtime: Runtime, base_seed: int) -> int:
    """-1 means random: rank 0 draws it and every rank takes rank 0's."""
    seed = base_seed if base_seed >= 0 else random.randint(0, sys.maxsize)
    return int(runtime.broadcast_object(seed))
