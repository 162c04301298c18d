"""One job of a warm group (engine.serve): rendered as `python -m engine.generate ARGV` would render it, by
the same functions, with the models the group loaded; then the group is left as the job found it.

Whether the group may go on after a failed job (`healthy`): only when every rank is sure to be at the same
point, with no collective left half done. That holds for a failure found before the job's first collective
(bad input, an engine key that does not match: every rank checks the same files alike), for a cancel (the
ranks agree on it at a step boundary), for bad input found later (every rank meets it at the same point),
and for any user_input or engine_error on a single process. Anything else (oom, comm, killed, an error on
one rank of several) ends the group, and the worker starts the next job cold.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import faulthandler
import gc
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.attention import Kernel
from engine.cli_args import build_parser
from engine.errors import EXIT_OK, BadInputError
from engine.failures import reporting_failure
from engine.generate import check_inputs, exit_code, failure_of, render_job, report_failure, start_job
from engine.pipeline import FLF2VPipeline
from engine.reporting import Reporter
from engine.runtime import TAIL_TIMEOUT_KNOB, Runtime, setup_logging
from engine.telemetry import CANCELLED
from engine.warm_protocol import WARM_CLASSES, JobEnd, JobFile, cancel_path, key_differences, key_values

log = logging.getLogger("flf2v.engine")

# Test hook: a job whose prompt contains this text runs out of memory at its first step, on the last rank
# (as a CUDA OOM would), so that the tests can see an OOM end a warm group without a GPU.
TEST_OOM_ENV = "FLF2V_TEST_OOM"


class Cancelled(Exception):
    """The job's cancel file was seen; every rank raises this at the same step."""

    failure_class = CANCELLED

    def __init__(self, step: int, steps: int) -> None:
        super().__init__(f"cancelled at step {step}/{steps}")


class KeyMismatch(Exception):
    """The job needs models loaded otherwise than this group's."""

    failure_class = "engine_error"


@dataclass
class Group:
    """A loaded warm group, as each of its ranks holds it."""

    folder: Path
    args: argparse.Namespace  # the group's own flags (its engine key, log folder and events)
    runtime: Runtime
    reporter: Reporter  # the group's own events (G/events.jsonl)
    key: dict[str, Any]
    pipeline: FLF2VPipeline | None = None
    attention: Kernel | None = None  # the kernel the loaded DiT runs (engine.attention), set with `pipeline`
    load_seconds: float = 0.0
    # Where a failure is reported now (the peer watch too): the job's reporter while one runs, else the group's.
    current: Reporter | None = None

    def reporting(self) -> Reporter:
        return self.current or self.reporter


@dataclass(frozen=True)
class Outcome:
    ok: bool
    failure: str | None
    healthy: bool
    code: int  # the process's exit code, should the group end after this job


def run_job(group: Group, job: JobFile) -> Outcome:
    """Render `job` on this rank; rank 0 writes its end file (after its done or error event)."""
    runtime = group.runtime
    started = time.time()
    try:
        args = _parse(job.argv)
    except BadInputError as exc:
        log.error(f"Job {job.seq}: {exc.message}")
        return _end(group, job, Outcome(False, "user_input", True, exit_code(exc)))
    _switch_log(runtime, args.log_dir)
    reporter = Reporter(runtime, args.events)
    group.current = reporter
    ranks_in_step = True  # no collective of this job has run yet, so every rank is at the same point
    try:
        task, layout = check_inputs(args, runtime.world_size)
        differences = key_differences(group.key, key_values(args, runtime.world_size))
        if differences:
            raise KeyMismatch(
                "this job needs the models loaded otherwise than its warm group: " + "; ".join(differences)
            )
        if group.pipeline is None:
            raise RuntimeError("the warm group has no models loaded")
        log.info(
            f"Warm group {group.folder}, job {job.seq}: the models are loaded already ({group.load_seconds:.2f} s "
            f"saved). Parallelism: {group.pipeline.plan.describe()}"
        )
        reporter.after_step = step_hook(group, job, args)
        ranks_in_step = False
        assert group.attention is not None  # loaded with the pipeline, checked just above
        seed = start_job(args, task, reporter, load_saved_s=group.load_seconds, attention=group.attention)
        render_job(args, task, layout, group.pipeline, seed, reporter, started, keep_group=True)
        # Rank 0's save is done before any rank takes the next job. The other ranks wait here through rank 0's
        # decode and save, which is rank 0's work alone: with the tail's own limit, not a collective's.
        runtime.rendezvous("waiting for rank 0 to decode and save the video", runtime.tail_timeout_s,
                           f"{TAIL_TIMEOUT_KNOB} (seconds)")  # fmt: skip
        log.info("Finished.")
        outcome = Outcome(True, None, True, EXIT_OK)
    except BaseException as exc:
        outcome = _failed(group, reporter, exc, ranks_in_step)
    finally:
        reporter.after_step = None
    if outcome.healthy:
        if not outcome.ok:
            _rest_models(group, args)
        _release_memory(runtime)
        reporter.memory(freed=True)  # the figures the next job starts from
    reporter.close()
    group.current = None
    if group.pipeline is not None:
        group.pipeline.reporter = group.reporter  # the job's is closed
    _switch_log(runtime, group.args.log_dir)
    return _end(group, job, outcome)


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        raise BadInputError(f"the job's engine arguments do not parse: {argv!r}") from None


def _failed(group: Group, reporter: Reporter, exc: BaseException, ranks_in_step: bool) -> Outcome:
    runtime = group.runtime
    with reporting_failure():
        trace = traceback.format_exc()
        exc, failure = failure_of(exc, runtime)
        alike = ranks_in_step or runtime.world_size == 1 or failure in ("user_input", CANCELLED)
        healthy = failure in WARM_CLASSES and alike
        if not healthy and runtime.watch is not None:
            runtime.watch.unwinding()
        if isinstance(exc, Cancelled | KeyMismatch | BadInputError):
            trace = ""  # the user's doing or the worker's: one line says it all
        if not healthy or runtime.is_main:  # every rank saw a healthy failure alike: rank 0 reports it
            report_failure(reporter, exc, failure, trace)
        else:
            log.info(f"Job stopped ({failure}; rank 0 reports it): {exc}")
    if isinstance(exc, BadInputError) and runtime.is_main:
        sys.stderr.write(f"error: {exc.message}\n")
    return Outcome(False, failure, healthy, exit_code(exc))


def step_hook(group: Group, job: JobFile, args: argparse.Namespace) -> Callable[[int, int], None]:
    """After each step, on every rank: rank 0 looks for the cancel file and every rank takes its answer, so
    all stop at the same step."""
    runtime = group.runtime
    cancel = cancel_path(group.folder, job.seq)
    oom_marker = os.environ.get(TEST_OOM_ENV)

    def after_step(step: int, steps: int) -> None:
        if oom_marker and oom_marker in args.prompt and step == 1 and runtime.rank == runtime.world_size - 1:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated by {TEST_OOM_ENV})")
        asked = runtime.is_main and cancel.exists()
        if runtime.broadcast_object(asked):
            raise Cancelled(step, steps)

    return after_step


def _rest_models(group: Group, args: argparse.Namespace) -> None:
    """After a job that stopped part way, the models go where a finished job leaves them (off the device
    with --offload_model), so the next job starts from the same memory."""
    if not args.offload_model or group.pipeline is None:
        return
    models = group.pipeline.models
    models.transformer.to("cpu")
    models.image_encoder.to("cpu")
    if not args.t5_cpu:
        models.text_encoder.to("cpu")


def _release_memory(runtime: Runtime) -> None:
    """Free what the job made: unreachable objects, the CUDA cache, the C heap's free pages; peaks restart."""
    gc.collect()
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap pages otherwise
    runtime.reset_peak()


def _switch_log(runtime: Runtime, log_dir: str | None) -> None:
    """This rank's log lines go to LOG_DIR/rank<r>.log from now on."""
    previous = runtime.log_file
    runtime.log_file = setup_logging(runtime.rank, log_dir)
    if runtime.log_file is None:
        faulthandler.enable(sys.stderr)  # not the file about to be closed
    if previous is not None:
        previous.close()


def _end(group: Group, job: JobFile, outcome: Outcome) -> Outcome:
    if group.runtime.is_main:
        JobEnd(job.seq, outcome.ok, outcome.failure, outcome.healthy).write(group.folder)
    return outcome
