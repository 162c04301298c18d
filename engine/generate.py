"""Entry point: `python -m engine.generate` (alone or under torchrun), with the official generate.py flags.

Exit codes: 0 on success, 2 on bad input (one line on stderr, before any weights load), 1 on any other
failure, 128 + n when stopped by signal n. An `error` event is written first whenever the process still can.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from engine import __version__
from engine.checks import check_checkpoint, check_image, check_save_file
from engine.cli_args import apply_defaults, build_parser, validate
from engine.devices import check_device
from engine.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, BadInputError, PeerLostError
from engine.tasks import TaskConfig
from engine.telemetry import EventWriter

if TYPE_CHECKING:
    import torch

    from engine.attention import Kernel
    from engine.checks import CheckpointLayout
    from engine.pipeline import FLF2VPipeline as Pipeline
    from engine.reporting import Reporter
    from engine.runtime import Runtime

log = logging.getLogger("flf2v.engine")

# How long a failed collective waits for the peer watch to see a dying peer's process gone.
PEER_EXIT_WAIT_S = 2.0


def check_inputs(args: argparse.Namespace, world_size: int) -> tuple[TaskConfig, CheckpointLayout]:
    apply_defaults(args, world_size)
    task = validate(args, world_size)
    check_device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    check_image(args.first_frame, "first frame")
    check_image(args.last_frame, "last frame")
    layout = check_checkpoint(args.ckpt_dir, task)
    check_save_file(args.save_file)
    return task, layout


def _parallel_notes(args: argparse.Namespace, world_size: int) -> None:
    if world_size == 1 and (args.t5_fsdp or args.dit_fsdp):
        log.info("--t5_fsdp/--dit_fsdp have no effect on a single process; the models are loaded whole")


def failure_of(exc: BaseException, runtime: Runtime) -> tuple[BaseException, str]:
    """The exception to report and its class. A collective that failed because a peer died is reported as
    that peer's loss, which names the rank to look at."""
    from engine.failures import classify

    failure = classify(exc)
    if failure == "comm" and runtime.watch is not None and not isinstance(exc, PeerLostError):
        lost = runtime.watch.lost_peer(wait_s=PEER_EXIT_WAIT_S)
        if lost is not None:
            return PeerLostError(f"{lost} ({type(exc).__name__}: {exc})"), failure
    return exc, failure


def report_failure(reporter: Reporter, exc: BaseException, failure: str, trace: str) -> None:
    from engine.failures import log_line

    # The event first: it is what the worker acts on, and logging can block (a full pipe) or be cut short
    # by the peer watch ending the process.
    if isinstance(exc, BadInputError):
        trace = ""  # bad input found at load is the user's to fix: one line, as before any weights load
    reporter.error(exc, failure, trace)
    log.log(*log_line(exc, failure, trace, reporter.position()))


def run(args: argparse.Namespace) -> int:
    """One job, cold: load the models, then render it, with the same two functions a warm group uses
    (engine.serve: load_models once, then start_job and render_job for each job)."""
    from engine.failures import classify, install_signal_handlers, reporting_failure

    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    started = time.time()
    try:
        task, layout = check_inputs(args, world_size)
    except BadInputError as exc:
        report_bad_input(args, rank, exc)
        return EXIT_BAD_INPUT

    install_signal_handlers()
    from engine.attention import resolve_attention
    from engine.parallel.watch import start_peer_watch
    from engine.reporting import Reporter
    from engine.runtime import init_runtime

    try:
        runtime = init_runtime(args.device, args.log_dir, args.collective_timeout)
    except BaseException as exc:
        return not_started(args, rank, exc)
    reporter = Reporter(runtime, args.events)
    failed = False
    try:
        start_peer_watch(runtime, lambda exc: report_failure(reporter, exc, classify(exc), ""))
        attention = resolve_attention(args.attn, runtime.device)
        seed = start_job(args, task, reporter, load_saved_s=None, attention=attention)
        pipeline = load_models(args, task, layout, reporter, attention)
        render_job(args, task, layout, pipeline, seed, reporter, started)  # leaves the process group itself
        log.info("Finished.")
        return EXIT_OK
    except BaseException as exc:
        failed = True
        with reporting_failure():
            if runtime.watch is not None:
                runtime.watch.unwinding()
            trace = traceback.format_exc()
            exc, failure = failure_of(exc, runtime)
            report_failure(reporter, exc, failure, trace)
        if isinstance(exc, BadInputError):
            sys.stderr.write(f"error: {exc.message}\n")
        return exit_code(exc)
    finally:
        reporter.close()
        runtime.close(failed=failed)


def report_bad_input(args: argparse.Namespace, rank: int, exc: BadInputError) -> None:
    """Bad input found before anything ran: one line on stderr, and rank 0's `error` event."""
    sys.stderr.write(f"error: {exc.message}\n")
    if rank == 0 and args.events:
        events = EventWriter(args.events, rank)
        events.emit("error", type="BadInputError", message=exc.message, traceback="", **{"class": "user_input"})
        events.close()


def start_job(
    args: argparse.Namespace, task: TaskConfig, reporter: Reporter, load_saved_s: float | None, attention: Kernel
) -> int:
    """The job's `start` event and opening log lines; its seed, the same on every rank (a collective).
    `load_saved_s`: None for a cold job, else the load seconds of the warm group that renders it. `attention`:
    the kernel the DiT runs (engine.attention.resolve_attention), the warm group's for a warm job."""
    from engine.cli_args import resolve_cfg_batch, resolve_dtype
    from engine.runtime import resolve_seed

    runtime = reporter.runtime
    # `auto` becomes what this device runs, so the start event and the recipe say which it was.
    # Under CFG-parallel each rank runs one branch, never a batch of 2.
    args.cfg_batch = resolve_cfg_batch(args.cfg_batch, runtime.device.type) and args.cfg_size == 1
    args.dtype = resolve_dtype(args.dtype, runtime.device.type)
    args.attn = attention.name  # `auto` becomes the kernel it picked, for the recipe and a faithful rerun
    reporter.emit(
        "start",
        task=task.name,
        world_size=runtime.world_size,
        device=str(runtime.device),
        args=vars(args),
        engine_version=__version__,
        attention=attention.describe(),
        warm=load_saved_s is not None,
        load_saved_s=round(load_saved_s or 0.0, 3),
    )
    log.info(f"Generation job args: {args}")
    log.info(f"Generation model config: {task}")
    _parallel_notes(args, runtime.world_size)
    seed = resolve_seed(runtime, args.base_seed)
    log.info(f"Input prompt: {args.prompt}")
    log.info(f"Input first frame: {args.first_frame}")
    log.info(f"Input last frame: {args.last_frame}")
    log.info(f"Seed: {seed}")
    return seed


def load_models(
    args: argparse.Namespace, task: TaskConfig, layout: CheckpointLayout, reporter: Reporter, attention: Kernel
) -> Pipeline:
    """Load once: the pipeline with every model loaded and laid out over the ranks (engine-key flags only)."""
    from engine.parallel import ParallelPlan
    from engine.pipeline import FLF2VPipeline

    runtime = reporter.runtime
    plan = ParallelPlan.of(
        runtime.world_size, runtime.rank, args.dit_fsdp, args.t5_fsdp, args.ulysses_size, args.cfg_size
    )
    pipeline = FLF2VPipeline(task, layout, runtime, reporter, plan, args.dtype, attention, args.compile)
    log.info("Creating WanFLF2V pipeline.")
    pipeline.load(t5_cpu=args.t5_cpu, offload=args.offload_model)
    return pipeline


def render_job(
    args: argparse.Namespace,
    task: TaskConfig,
    layout: CheckpointLayout,
    pipeline: Pipeline,
    seed: int,
    reporter: Reporter,
    started: float,
    keep_group: bool = False,
) -> None:
    """Render one job with loaded models, its events going to `reporter`; rank 0 saves the video.
    `keep_group`: a warm group's job, whose ranks stay in the process group for the next job (a one-shot run
    leaves it once the latent is denoised, before rank 0's decode: FLF2VPipeline.generate)."""
    from engine.conditioning import load_rgb
    from engine.pipeline import GenerationRequest

    pipeline.reporter = reporter
    log.info("Generating video ...")
    request = GenerationRequest(
        first_frame=load_rgb(args.first_frame),
        last_frame=load_rgb(args.last_frame),
        prompt=args.prompt,
        neg_prompt=args.neg_prompt,
        size=args.size,
        frame_num=args.frame_num,
        steps=args.sample_steps,
        shift=args.sample_shift,
        guide_scale=args.sample_guide_scale,
        solver=args.sample_solver,
        seed=seed,
        offload=args.offload_model,
        cfg_batch=args.cfg_batch,
        t5_cpu=args.t5_cpu,
        preview_every=args.preview_every,
        preview_dir=args.preview_dir,
    )
    if keep_group:
        latent = pipeline.sample(request)
        video = pipeline.decode(latent) if reporter.runtime.is_main else None
    else:
        video = pipeline.generate(request)
    if pipeline.cfg is not None and pipeline.cfg.fell_back_at is not None:
        args.cfg_batch = False  # the recipe: the steps from the OOM on ran as separate forwards
    if reporter.runtime.is_main and video is not None:
        _save(args, task, layout, seed, video, reporter, started)


def not_started(args: argparse.Namespace, rank: int, exc: BaseException) -> int:
    """The rank could not start (its process group never formed: a peer that died first, a rendezvous that
    timed out): its `error` event is written all the same, so the failure keeps its class."""
    from engine.failures import classify

    trace = traceback.format_exc()
    failure = classify(exc)
    if isinstance(exc, BadInputError):
        sys.stderr.write(f"error: {exc.message}\n")
    else:
        log.error(f"Could not start rank {rank} ({failure}): {type(exc).__name__}: {exc}\n{trace}")
        sys.stderr.write(f"error: rank {rank} could not start: {type(exc).__name__}: {exc}\n")
    if args.events:
        events = EventWriter(args.events, rank)
        events.emit("error", type=type(exc).__name__, message=str(exc), traceback=trace, **{"class": failure})
        events.close()
    return exit_code(exc)


def exit_code(exc: BaseException) -> int:
    """Bad input has its own code; a rank stopped by a signal exits as a shell reports one (128 + its number)."""
    if isinstance(exc, BadInputError):
        return EXIT_BAD_INPUT
    signum = getattr(exc, "signum", None)
    return 128 + signum if signum else EXIT_FAILURE


def _save(
    args: argparse.Namespace,
    task: TaskConfig,
    layout: CheckpointLayout,
    seed: int,
    video: torch.Tensor,
    reporter: Reporter,
    started: float,
) -> None:
    from engine.fidelity import endpoint_psnr
    from engine.mp4 import write_mp4
    from engine.recipe import build_recipe, checkpoint_fingerprint, recipe_comment
    from engine.video import default_file_name, to_uint8_frames

    out = (
        Path(args.save_file)
        if args.save_file
        else Path.cwd() / default_file_name(task.name, args.size, args.ulysses_size, args.ring_size, args.prompt)
    )
    with reporter.stage("save"):
        log.info(f"Saving generated video to {out}")
        frames = to_uint8_frames(video)
        files = [path for paths in layout.files.values() for path in paths]
        fingerprint = checkpoint_fingerprint(layout.root, files)
        runtime = reporter.runtime
        recipe = build_recipe(vars(args), seed, runtime.world_size, __version__, fingerprint, runtime.gpu_name)
        # The recipe travels inside the mp4, so a copied or renamed video still says how it was made.
        path = write_mp4(frames, out, fps=task.sample_fps, metadata={"comment": recipe_comment(recipe)})
        if args.dump_video:
            import numpy as np

            np.save(args.dump_video, video.float().cpu().numpy())
    reporter.emit(
        "done",
        output=str(path.resolve()),
        frames=int(frames.shape[0]),
        fps=task.sample_fps,
        seconds=round(time.time() - started, 3),
        width=int(frames.shape[2]),
        height=int(frames.shape[1]),
        recipe=recipe,
        **endpoint_psnr(frames, args.first_frame, args.last_frame),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    code = main()
    if code != EXIT_OK:
        from engine.failures import leave

        leave(code)
    sys.exit(code)
