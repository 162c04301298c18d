"""The engine's command line: the official generate.py flags for FLF2V plus ours (torch-free).

The app validates a submission with the same functions before it queues anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from engine.errors import BadInputError
from engine.flags import BOOL, FLAGS, SWITCH, Flag, check_engine_args, str2bool
from engine.tasks import (
    SOLVERS,
    TASKS,
    TaskConfig,
    frame_num_problem,
    size_problem,
)


def resolve_cfg_batch(choice: str | bool, device_type: str) -> bool:
    """`--cfg_batch auto`: one batch of 2 on the CPU, where it is verified to give what two forwards give
    (fp32, tests/unit/test_cfg_batch.py); two separate forwards on CUDA, the official code's numerics, since
    bf16 kernels at batch 2 are not verified there to match batch 1. True or False is taken as given."""
    if choice == "auto":
        return device_type != "cuda"
    return bool(choice)


def layout_ranks(cfg_size: int, ulysses_size: int, ring_size: int) -> int:
    return cfg_size * ulysses_size * ring_size


def layout_problem(cfg_size: int, ulysses_size: int, ring_size: int, world_size: int) -> str | None:
    """The parallel layout must use every rank once: cfg x ulysses x ring ranks, as the official code asserts
    for ulysses x ring. More ranks would compute the same video twice. With no layout at all (every size 1),
    any number of ranks share the models' memory (FSDP) and each computes the whole video, as officially."""
    ranks = layout_ranks(cfg_size, ulysses_size, ring_size)
    if ranks == 1 or ranks == world_size:
        return None
    return (
        f"cfg_size {cfg_size} x ulysses_size {ulysses_size} x ring_size {ring_size} needs {ranks} ranks, not "
        f"{world_size}: run {ranks} (flf2v --gpus {ranks}, or --nodes x --gpus-per-node = {ranks}; torchrun "
        f"--nproc_per_node x --nnodes = {ranks}) or change the sizes"
    )


def resolve_dtype(choice: str, device_type: str) -> str:
    """`--dtype auto`: the official bf16 recipe on CUDA, float32 on the CPU. bf16 or fp32 is taken as given."""
    if choice == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return choice


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags give one line naming the problem and exit code 2, as bad input does everywhere."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _converter(flag: Flag) -> Callable[[str], Any] | None:
    if flag.parse is not None:
        return flag.parse
    if flag.kind == BOOL:
        return str2bool
    return None if flag.type is str else flag.type


def _add(parser: argparse.ArgumentParser, flag: Flag) -> None:
    if flag.kind == SWITCH:
        parser.add_argument(f"--{flag.name}", action="store_true", default=flag.default, help=flag.help)
        return
    choices = flag.choices if flag.parser_choices else None
    parser.add_argument(f"--{flag.name}", type=_converter(flag), default=flag.default, choices=choices, help=flag.help)


def build_parser(prog: str = "python -m engine.generate") -> argparse.ArgumentParser:
    """The official generate.py flags, same names and meanings, then ours (engine.flags)."""
    p = _OneLineParser(prog=prog, description="Wan2.1 first-last-frame-to-video generation.")
    for flag in FLAGS:
        _add(p, flag)
    return p


def task_of(args: argparse.Namespace) -> TaskConfig:
    if args.task not in TASKS:
        raise BadInputError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}", field="task")
    return TASKS[args.task]


def apply_defaults(args: argparse.Namespace, world_size: int) -> argparse.Namespace:
    """Fill the task's defaults the way the official generate.py does."""
    task = task_of(args)
    for flag in FLAGS:
        if flag.from_task and getattr(args, flag.name) is None:
            setattr(args, flag.name, getattr(task, flag.from_task))
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
        raise BadInputError(problem, field="size")
    problem = frame_num_problem(args.frame_num)
    if problem:
        raise BadInputError(problem, field="frame_num")
    if args.sample_solver not in SOLVERS:
        raise BadInputError(
            f"unknown sample_solver {args.sample_solver!r}; choose one of {', '.join(SOLVERS)}", field="sample_solver"
        )
    if args.prompt is None or not args.prompt.strip():
        raise BadInputError('the prompt is empty; give one with --prompt "..."', field="prompt")
    for flag in ("first_frame", "last_frame"):
        if not getattr(args, flag):
            raise BadInputError(f"--{flag} is required: the path of an image", field=flag)
    if not args.ckpt_dir:
        raise BadInputError(
            "--ckpt_dir is required: the folder of an official or diffusers checkpoint", field="ckpt_dir"
        )
    if args.ring_size != 1:
        raise BadInputError(
            "ring attention is not implemented; use --ulysses_size for sequence parallelism", field="ring_size"
        )
    problem = layout_problem(args.cfg_size, args.ulysses_size, args.ring_size, world_size)
    if problem:
        raise BadInputError(problem, field="gpus")
    if args.t5_cpu and args.t5_fsdp:
        raise BadInputError(
            "--t5_cpu keeps the whole T5 on the CPU and --t5_fsdp shards it across the ranks' devices; give one of "
            "them",
            field="t5_cpu",
        )
    if args.ulysses_size > 1 and task.num_heads % args.ulysses_size:
        raise BadInputError(
            f"ulysses_size {args.ulysses_size} must divide the model's {task.num_heads} attention heads",
            field="ulysses_size",
        )
    return task
