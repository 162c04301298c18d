"""The engine's command line: the official generate.py flags for FLF2V plus ours (torch-free).

The app validates a submission with the same functions before it queues anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from engine.errors import BadInputError
from engine.limits import check_engine_args
from engine.tasks import (
    SOLVERS,
    TASKS,
    TaskConfig,
    frame_num_problem,
    size_problem,
)


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.lower()
    if lowered in ("yes", "true", "t", "y", "1"):
        return True
    if lowered in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


def bool_or_auto(value: str | bool) -> str | bool:
    if isinstance(value, str) and value.lower() == "auto":
        return "auto"
    try:
        return str2bool(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto, True or False, got {value!r}") from None


def resolve_cfg_batch(choice: str | bool, device_type: str) -> bool:
    """`--cfg_batch auto`: one batch of 2 on the CPU, where it is verified to give what two forwards give
    (fp32, tests/unit/test_cfg_batch.py); two separate forwards on CUDA, the official code's numerics, since
    bf16 kernels at batch 2 are not verified there to match batch 1. True or False is taken as given."""
    if choice == "auto":
        return device_type != "cuda"
    return bool(choice)


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags give one line naming the problem and exit code 2, as bad input does everywhere."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser(prog: str = "python -m engine.generate") -> argparse.ArgumentParser:
    p = _OneLineParser(prog=prog, description="Wan2.1 first-last-frame-to-video generation.")
    # The official generate.py flags, same names and meanings.
    p.add_argument("--task", default="flf2v-14B", help="flf2v-14B, or flf2v-tiny for the embedded model")
    p.add_argument("--size", default=None, help="area as WIDTH*HEIGHT; the aspect ratio follows the first frame")
    p.add_argument("--frame_num", type=int, default=None, help="frames to generate, 4n+1 (default 81)")
    p.add_argument("--ckpt_dir", default=None, help="checkpoint folder, official or diffusers layout")
    p.add_argument(
        "--offload_model",
        type=str2bool,
        default=None,
        help="move models off the GPU between phases (default: True on one process, else False)",
    )
    p.add_argument("--ulysses_size", type=int, default=1, help="Ulysses sequence-parallel degree")
    p.add_argument("--ring_size", type=int, default=1, help="ring attention degree (only 1 is supported)")
    p.add_argument("--t5_fsdp", action="store_true", default=False, help="shard T5 with FSDP")
    p.add_argument("--t5_cpu", action="store_true", default=False, help="keep T5 on the CPU")
    p.add_argument("--dit_fsdp", action="store_true", default=False, help="shard the DiT with FSDP")
    p.add_argument("--save_file", default=None, help="output mp4 path (default: official naming pattern)")
    p.add_argument("--prompt", default=None, help="text prompt")
    p.add_argument("--base_seed", type=int, default=-1, help="seed; -1 picks one at random on rank 0")
    p.add_argument("--first_frame", default=None, help="image of the first frame")
    p.add_argument("--last_frame", default=None, help="image of the last frame")
    p.add_argument("--sample_solver", default="unipc", help="unipc or dpm++")
    p.add_argument("--sample_steps", type=int, default=None, help="sampling steps (default 50)")
    p.add_argument("--sample_shift", type=float, default=None, help="flow-matching shift (default 16)")
    p.add_argument("--sample_guide_scale", type=float, default=None, help="classifier-free guidance (default 5.0)")
    # Ours.
    p.add_argument("--neg_prompt", default=None, help="negative prompt (default: the official one for flf2v)")
    p.add_argument("--events", default=None, help="append telemetry events (JSON lines) to this file")
    p.add_argument("--log_dir", default=None, help="also write this rank's log to LOG_DIR/rank<r>.log")
    p.add_argument(
        "--device", default="auto", choices=("auto", "cuda", "cpu"), help="where to run (default: cuda when available)"
    )
    p.add_argument(
        "--cfg_batch",
        type=bool_or_auto,
        default="auto",
        help="run the conditional and unconditional passes as one batch of 2: True, False, or auto (the "
        "default: batched on the CPU, separate forwards on CUDA)",
    )
    p.add_argument(
        "--dump_video",
        default=None,
        help="also save the decoded video as float32 .npy [3, F, H, W] (for exact comparisons)",
    )
    p.add_argument(
        "--preview_every", type=int, default=0, help="write a small preview PNG of the latent every k steps (0: off)"
    )
    p.add_argument(
        "--preview_dir",
        default=None,
        help="folder of the preview PNGs (default: previews/ beside --events, else beside --log_dir's logs)",
    )
    return p


def task_of(args: argparse.Namespace) -> TaskConfig:
    if args.task not in TASKS:
        raise BadInputError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}")
    return TASKS[args.task]


def apply_defaults(args: argparse.Namespace, world_size: int) -> argparse.Namespace:
    """Fill the task's defaults the way the official generate.py does."""
    task = task_of(args)
    if args.size is None:
        args.size = task.default_size
    if args.frame_num is None:
        args.frame_num = task.frame_num
    if args.sample_steps is None:
        args.sample_steps = task.sample_steps
    if args.sample_shift is None:
        args.sample_shift = task.sample_shift
    if args.sample_guide_scale is None:
        args.sample_guide_scale = task.sample_guide_scale
    if args.offload_model is None:
        args.offload_model = world_size == 1
    if args.neg_prompt is None or not args.neg_prompt.strip():
        args.neg_prompt = task.neg_prompt
    if args.preview_every and args.preview_dir is None:
        beside = args.events and os.path.dirname(os.path.abspath(args.events))
        args.preview_dir = os.path.join(beside or args.log_dir or os.getcwd(), "previews")
    return args


def validate(args: argparse.Namespace, world_size: int) -> TaskConfig:
    """Check everything that needs neither torch nor the files; raises BadInputError with one line. Ranges and
    text first (engine.limits), so no later check meets a number beyond 64 bits or a text that is not UTF-8."""
    check_engine_args(args)
    task = task_of(args)
    problem = size_problem(task, args.size)
    if problem:
        raise BadInputError(problem)
    problem = frame_num_problem(args.frame_num)
    if problem:
        raise BadInputError(problem)
    if args.sample_solver not in SOLVERS:
        raise BadInputError(f"unknown sample_solver {args.sample_solver!r}; choose one of {', '.join(SOLVERS)}")
    if args.prompt is None or not args.prompt.strip():
        raise BadInputError('the prompt is empty; give one with --prompt "..."')
    for flag in ("first_frame", "last_frame"):
        if not getattr(args, flag):
            raise BadInputError(f"--{flag} is required: the path of an image")
    if not args.ckpt_dir:
        raise BadInputError("--ckpt_dir is required: the folder of an official or diffusers checkpoint")
    if args.ring_size != 1:
        raise BadInputError("ring attention is not implemented; use --ulysses_size for sequence parallelism")
    if world_size % args.ulysses_size:
        raise BadInputError(f"ulysses_size {args.ulysses_size} must divide the number of processes ({world_size})")
    if args.t5_cpu and args.t5_fsdp:
        raise BadInputError(
            "--t5_cpu keeps the whole T5 on the CPU and --t5_fsdp shards it across the ranks' devices; give one of them"
        )
    if args.ulysses_size > 1 and task.num_heads % args.ulysses_size:
        raise BadInputError(
            f"ulysses_size {args.ulysses_size} must divide the model's {task.num_heads} attention heads"
        )
    return task
