"""A warm group: `python -m engine.serve --group_dir G <engine-key flags> --log_dir G --events G/events.jsonl`
(alone or under torchrun) loads the models once, then renders the jobs the worker hands it through the group
folder, one after another, each exactly as a one-shot `python -m engine.generate` would (engine.warm_job).

The folder's files and their JSON are engine.warm_protocol's. While idle, every rank only polls the folder:
no collective runs, so idle time never meets a collective's timeout. Rank 0 decides what comes next (job n,
or the stop file) and the others take its decision, so every rank runs the same jobs in the same order.

Exit codes: 0 when stopped (G/stop, or idle for --idle_exit_s); 2 on bad group flags; otherwise as
engine.generate: the code of the job or failure that ended the group.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from engine.checks import check_checkpoint
from engine.cli_args import apply_defaults, build_parser, validate
from engine.devices import check_device
from engine.errors import EXIT_BAD_INPUT, EXIT_OK, BadInputError
from engine.tasks import TaskConfig
from engine.warm_protocol import POLL_S, JobFile, Ready, key_values, request_stop, stop_path

if TYPE_CHECKING:
    from engine.checks import CheckpointLayout
    from engine.warm_job import Group

log = logging.getLogger("flf2v.engine")


def build_serve_parser() -> argparse.ArgumentParser:
    parser = build_parser(prog="python -m engine.serve")
    parser.add_argument("--group_dir", required=True, help="the group folder: jobs, cancels, stop (the worker's)")
    parser.add_argument(
        "--idle_exit_s", type=float, default=None, help="exit after this many seconds without a job (default: never)"
    )
    return parser


def check_group(args: argparse.Namespace, world_size: int) -> TaskConfig:
    """The group's flags, checked as a job's would be before anything loads."""
    apply_defaults(args, world_size)
    # validate() checks a job's own flags too; a group has none, so those are given placeholders here.
    task = validate(argparse.Namespace(**{**vars(args), "prompt": "-", "first_frame": "-", "last_frame": "-"}),
                    world_size)  # fmt: skip
    if args.idle_exit_s is not None and not args.idle_exit_s > 0:
        raise BadInputError(f"--idle_exit_s {args.idle_exit_s} must be a positive number of seconds")
    check_device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    return task


def main(argv: list[str] | None = None) -> int:
    from engine.generate import report_bad_input

    args = build_serve_parser().parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    try:
        task = check_group(args, world_size)
        layout = check_checkpoint(args.ckpt_dir, task)
    except BadInputError as exc:
        report_bad_input(args, rank, exc)
        return EXIT_BAD_INPUT
    return _serve(args, task, layout, world_size, rank)


def _serve(args: argparse.Namespace, task: TaskConfig, layout: CheckpointLayout, world_size: int, rank: int) -> int:
    from engine.attention import resolve_attention
    from engine.failures import classify, install_signal_handlers, reporting_failure
    from engine.generate import exit_code, failure_of, load_models, not_started, report_failure
    from engine.parallel.watch import start_peer_watch
    from engine.reporting import Reporter
    from engine.runtime import init_runtime
    from engine.warm_job import Group

    install_signal_handlers()
    try:
        runtime = init_runtime(args.device, args.log_dir, args.collective_timeout)
    except BaseException as exc:
        return not_started(args, rank, exc)
    group = Group(Path(args.group_dir), args, runtime, Reporter(runtime, args.events), key_values(args, world_size))
    code = EXIT_OK
    try:
        start_peer_watch(runtime, lambda exc: report_failure(group.reporting(), exc, classify(exc), ""))
        loading = time.perf_counter()
        group.attention = resolve_attention(args.attn, runtime.device)
        group.pipeline = load_models(args, task, layout, group.reporter, group.attention)
        runtime.barrier("the end of loading")
        group.load_seconds = time.perf_counter() - loading
        # What lives as long as the group (modules, models) leaves the collector's reach, so that collecting
        # what a job made, after each job, scans that job's objects only (a full scan here takes 0.5 s).
        gc.collect()
        gc.freeze()
        startup = time.time() - psutil.Process().create_time()
        if runtime.is_main:
            Ready(round(group.load_seconds, 3), os.getpid(), world_size, group.key, round(startup, 3)).write(
                group.folder
            )
        log.info(
            f"Warm group loaded in {group.load_seconds:.2f} s ({startup:.1f} s from the process's start); waiting "
            f"for jobs in {group.folder / 'jobs'}"
        )
        code = _serve_jobs(group, args.idle_exit_s)
        if code == EXIT_OK:
            runtime.finish()
            log.info("Warm group stopped.")
        return code
    except BaseException as exc:
        code = -1
        with reporting_failure():
            if runtime.watch is not None:
                runtime.watch.unwinding()
            trace = traceback.format_exc()
            exc, failure = failure_of(exc, runtime)
            report_failure(group.reporting(), exc, failure, trace)
        return exit_code(exc)
    finally:
        group.reporter.close()
        runtime.close(failed=code != EXIT_OK)


def _serve_jobs(group: Group, idle_exit_s: float | None) -> int:
    """Jobs 1, 2, 3, ... until the stop file (0) or a job that leaves the group unhealthy (its exit code)."""
    from engine.warm_job import run_job

    seq = 1
    while True:
        job = next_job(group, seq, idle_exit_s)
        if job is None:
            return EXIT_OK
        log.info(f"Job {seq} (attempt {job.attempt_id}): rendering warm")
        outcome = run_job(group, job)
        log.info(f"Job {seq} ended: " + ("done" if outcome.ok else f"failed ({outcome.failure})"))
        if not outcome.healthy:
            log.error(f"Job {seq} left the group unhealthy ({outcome.failure}): the group ends")
            return outcome.code
        seq += 1


def next_job(group: Group, seq: int, idle_exit_s: float | None) -> JobFile | None:
    """Job `seq`, or None to stop: what rank 0 found, on every rank. Each rank polls the folder until it sees
    the job or the stop file, without any collective; only then do the ranks meet, for rank 0's answer."""
    runtime = group.runtime
    idle_since = time.monotonic()
    while True:
        stop = stop_path(group.folder).exists()
        job = None if stop else JobFile.read(group.folder, seq)
        if (
            runtime.is_main
            and job is None
            and not stop
            and idle_exit_s is not None
            and time.monotonic() - idle_since > idle_exit_s
        ):
            log.info(f"No job for {idle_exit_s:g} s: the group stops")
            request_stop(group.folder)  # the other ranks stop on the same file
            stop = True
        if stop or job is not None:
            break
        time.sleep(POLL_S)
    decided = runtime.broadcast_object(None if stop or job is None else asdict(job))
    return JobFile(**decided) if decided is not None else None


if __name__ == "__main__":
    exit_status = main()
    if exit_status != EXIT_OK:
        from engine.failures import leave

        leave(exit_status)
    sys.exit(exit_status)
