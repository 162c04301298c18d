"""Every flag of `python -m engine.generate`, listed once (torch-free).

The engine's argparse options, the options of `flf2v submit`, `retry` and `videos rerun`, the job's columns
and JobSpec (storage.spec), the submit form's engine fields and the recipe written into the mp4 are all made
from this table or checked against it (tests/unit/test_flags.py). Adding a flag is one entry here plus, for a
job flag, a migration adding its column (README, "Adding an engine flag").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import BadInputError
from engine.limits import INT64_MIN, MAX_FRAME_NUM, MAX_RANKS, MAX_SAMPLE_STEPS, SEED_MAX, Bound, check_text
from engine.tasks import ATTENTION_CHOICES, GUIDE_SCALE_RANGE, SHIFT_RANGE, SOLVERS, TASKS

DTYPES = ("auto", "bf16", "fp32")

# value: a number or a short text; text: prose (a prompt); path: a file or folder; bool: True or False given as
# a word; switch: on when given (store_true; the app's CLI adds --no_NAME); choice: one of `choices`.
Kind = Literal["value", "text", "path", "bool", "switch", "choice"]
VALUE: Kind = "value"
TEXT: Kind = "text"
PATH: Kind = "path"
BOOL: Kind = "bool"
SWITCH: Kind = "switch"
CHOICE: Kind = "choice"


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


@dataclass(frozen=True)
class Flag:
    """One engine flag: `--NAME` (the app's CLI also takes `--NA-ME`)."""

    name: str
    type: type  # str, int, float or bool: the value once parsed
    default: Any  # the engine's; None where the task or the number of processes decides (apply_defaults)
    help: str  # its line in `python -m engine.generate --help`
    kind: Kind = VALUE
    choices: tuple[str, ...] = ()
    # Whether argparse refuses a value outside `choices` (and lists them in --help). Task and solver are
    # checked by validate() instead, whose message names the flag and the choices.
    parser_choices: bool = False
    parse: Callable[[str], Any] | None = None  # argparse's conversion, where the type's own is not it
    bound: Bound | None = None  # the range of a number (engine.limits.Bound), checked wherever it is typed
    from_task: str | None = None  # the TaskConfig attribute it takes when not given
    recipe: bool = False  # part of the recipe stored with the video (engine.recipe)
    engine_key: bool = False  # must match for a job to use a warm group (DESIGN.md, "Warm groups")
    # A job's own flag: a column of jobs, a field of JobSpec and an option of submit, retry and videos rerun.
    # The engine's other flags (where telemetry, logs and previews go) are the worker's to set per attempt.
    job: bool = False
    required: bool = False  # every job stores a value (JobSpec has no default; the column is NOT NULL)
    submit_help: str = ""  # its help in the app's CLI, where it differs from `help`
    label: str = ""  # its label on the submit form; "" keeps it off the form

    def __post_init__(self) -> None:
        if self.bound is not None and self.bound.flag != f"--{self.name}":
            raise ValueError(f"the bound of --{self.name} is filed as {self.bound.flag}")
        if (self.required or self.label or self.submit_help) and not self.job:
            raise ValueError(f"--{self.name} is not a job flag, so it has no job column, CLI option or form field")

    @property
    def cli_help(self) -> str:
        return self.submit_help or self.help

    @property
    def nullable(self) -> bool:
        """Whether a job may store no value (the engine's default then applies)."""
        return not self.required and self.default is None


# In the order of `python -m engine.generate --help`: the official generate.py's flags, then ours.
FLAGS: tuple[Flag, ...] = (
    Flag("task", str, "flf2v-14B", "flf2v-14B, or flf2v-tiny for the embedded model", kind=CHOICE,
         choices=tuple(TASKS), recipe=True, engine_key=True, job=True, required=True,
         submit_help="flf2v-14B (default) or flf2v-tiny (the embedded model)", label="Task"),
    Flag("size", str, None, "area as WIDTH*HEIGHT; the aspect ratio follows the first frame", from_task="default_size",
         recipe=True, job=True, required=True,
         submit_help="area as WIDTH*HEIGHT, e.g. 1280*720; aspect follows the first frame", label="Size (W*H)"),
    Flag("frame_num", int, None, "frames to generate, 4n+1 (default 81)", from_task="frame_num", recipe=True,
         # The least is the 4n+1 rule's (tasks.frame_num_problem): 5.
         bound=Bound("--frame_num", 1, MAX_FRAME_NUM, why="over two minutes at 16 fps; the model knows 81"),
         job=True, required=True, submit_help="frames, 4n+1 (default 81)", label="Frames (4n+1)"),
    Flag("ckpt_dir", str, None, "checkpoint folder, official or diffusers layout", kind=PATH, recipe=True,
         engine_key=True, job=True, required=True,
         submit_help="checkpoint folder, official or diffusers layout (flf2v-tiny: optional)", label="Checkpoint"),
    Flag("offload_model", bool, None,
         "move models off the GPU between phases (default: True on one process, else False)", kind=BOOL,
         recipe=True, engine_key=True, job=True,
         submit_help="True/False: move models off the GPU between phases", label="Offload model"),
    Flag("ulysses_size", int, 1, "Ulysses sequence-parallel degree", bound=Bound("--ulysses_size", 1, MAX_RANKS),
         recipe=True, engine_key=True, job=True,
         submit_help="Ulysses sequence-parallel degree (must divide --gpus)", label="Ulysses size"),
    Flag("ring_size", int, 1, "ring attention degree (only 1 is supported)", bound=Bound("--ring_size", 1, MAX_RANKS),
         recipe=True, engine_key=True, job=True, submit_help="ring attention degree (only 1)"),
    Flag("cfg_size", int, 1, "CFG-parallel degree: 2 runs the conditional and the unconditional branch on two halves "
         "of the ranks at once; the ranks must number cfg_size x ulysses_size x ring_size",
         bound=Bound("--cfg_size", 1, 2, why="guidance has two branches"), recipe=True, engine_key=True, job=True,
         submit_help="CFG-parallel degree, 1 or 2 (--gpus must be cfg x ulysses x ring)", label="CFG parallel"),
    Flag("t5_fsdp", bool, False, "shard T5 with FSDP", kind=SWITCH, recipe=True, engine_key=True, job=True,
         label="FSDP T5"),
    Flag("t5_cpu", bool, False, "keep T5 on the CPU", kind=SWITCH, recipe=True, engine_key=True, job=True,
         label="T5 on the CPU"),
    Flag("dit_fsdp", bool, False, "shard the DiT with FSDP", kind=SWITCH, recipe=True, engine_key=True, job=True,
         label="FSDP the DiT"),
    Flag("save_file", str, None, "output mp4 path (default: official naming pattern)", kind=PATH, job=True,
         submit_help="output mp4 (default: FLF2V_HOME/videos/...); with a sweep it must contain {seed}"),
    Flag("prompt", str, None, "text prompt", kind=TEXT, recipe=True, job=True, required=True,
         submit_help="text prompt (required for submit)", label="Prompt"),
    Flag("base_seed", int, -1, "seed; -1 picks one at random on rank 0", recipe=True,
         # A negative seed draws one, as in the official code; any seed must fit in 64 bits.
         bound=Bound("--base_seed", INT64_MIN, SEED_MAX, why="seeds are 64-bit; -1 draws one"), job=True,
         required=True, submit_help="seed; -1 (default) draws one at submit so the job is reproducible"),
    Flag("first_frame", str, None, "image of the first frame", kind=PATH, job=True, required=True,
         submit_help="image of the first frame; copied into the job folder at submit", label="First frame"),
    Flag("last_frame", str, None, "image of the last frame", kind=PATH, job=True, required=True,
         submit_help="image of the last frame; copied into the job folder at submit", label="Last frame"),
    Flag("sample_solver", str, "unipc", "unipc or dpm++", kind=CHOICE, choices=SOLVERS, recipe=True, job=True,
         required=True, submit_help="unipc (default) or dpm++", label="Solver"),
    Flag("sample_steps", int, None, "sampling steps (default 50)", from_task="sample_steps", recipe=True,
         bound=Bound("--sample_steps", 1, MAX_SAMPLE_STEPS, why="the model has 1000 timesteps in all"), job=True,
         required=True, label="Steps"),
    Flag("sample_shift", float, None, "flow-matching shift (default 16)", from_task="sample_shift", recipe=True,
         bound=Bound("--sample_shift", SHIFT_RANGE[0], SHIFT_RANGE[1], integer=False, low_open=True), job=True,
         required=True, label="Shift"),
    Flag("sample_guide_scale", float, None, "classifier-free guidance (default 5.0)", from_task="sample_guide_scale",
         recipe=True, bound=Bound("--sample_guide_scale", *GUIDE_SCALE_RANGE, integer=False), job=True,
         required=True, submit_help="classifier-free guidance scale (default 5.0)", label="Guide scale"),
    Flag("neg_prompt", str, None, "negative prompt (default: the official one for flf2v)", kind=TEXT, recipe=True,
         job=True, submit_help="negative prompt (default: the official one)", label="Negative prompt"),
    Flag("collective_timeout", float, None,
         "seconds any rank waits on the others before the run fails (default: FLF2V_DIST_TIMEOUT, else 600); "
         "short, so that a dead node fails the attempt quickly", bound=Bound("--collective_timeout", 0, 7 * 86400,
         integer=False, low_open=True, why="a week"), job=True,
         submit_help="seconds a rank waits on the others before the attempt fails (default 600)"),
    Flag("events", str, None, "append telemetry events (JSON lines) to this file", kind=PATH),
    Flag("log_dir", str, None, "also write this rank's log to LOG_DIR/rank<r>.log", kind=PATH),
    Flag("device", str, "auto", "where to run (default: cuda when available)", kind=CHOICE,
         choices=("auto", "cuda", "cpu"), parser_choices=True, engine_key=True),
    Flag("attn", str, "auto", "attention kernel: auto (the fastest lossless one present: on CUDA the flash-attn "
         "package, else SDPA's cuDNN or flash backend; on the CPU PyTorch's own choice, as before), sdpa (PyTorch "
         "picks), math, flash, efficient, cudnn (SDPA backends), flash_attn (the package), or sage (8-bit, "
         "near-lossless, opt-in only)", kind=CHOICE, choices=ATTENTION_CHOICES, parser_choices=True, recipe=True,
         engine_key=True, job=True, label="Attention"),
    Flag("compile", bool, False, "compile each DiT block with torch.compile (regional; off until measured on a GPU)",
         kind=SWITCH, recipe=True, engine_key=True, job=True, label="torch.compile"),
    Flag("cfg_batch", bool, "auto", "run the conditional and unconditional passes as one batch of 2: True, False, "
         "or auto (the default: batched on the CPU, separate forwards on CUDA)", kind=BOOL, parse=bool_or_auto,
         recipe=True),
    Flag("dtype", str, "auto", "compute precision: bf16 (the official GPU recipe: bf16 DiT and T5 under autocast "
         "with the official float32 regions, fp16 CLIP; on the CPU too, with CPU autocast), fp32, or auto (the "
         "default: bf16 on CUDA, fp32 on the CPU)", kind=CHOICE, choices=DTYPES, parser_choices=True, recipe=True,
         engine_key=True, job=True, submit_help="bf16, fp32 or auto (default: bf16 on CUDA, fp32 on the CPU)"),
    Flag("dump_video", str, None,
         "also save the decoded video as float32 .npy [3, F, H, W] (for exact comparisons)", kind=PATH),
    Flag("preview_every", int, 0, "write a small preview PNG of the latent every k steps (0: off)",
         bound=Bound("--preview_every", 0, MAX_SAMPLE_STEPS), job=True,
         submit_help="write a preview PNG of the latent every k steps (0: off)"),
    Flag("preview_dir", str, None,
         "folder of the preview PNGs (default: previews/ beside --events, else beside --log_dir's logs)", kind=PATH),
)  # fmt: skip
BY_NAME: dict[str, Flag] = {flag.name: flag for flag in FLAGS}

JOB_FLAGS: tuple[Flag, ...] = tuple(flag for flag in FLAGS if flag.job)
RECIPE_FLAGS: tuple[str, ...] = tuple(flag.name for flag in FLAGS if flag.recipe)
ENGINE_KEY_FLAGS: tuple[str, ...] = tuple(flag.name for flag in FLAGS if flag.engine_key)
PATH_FLAGS: tuple[str, ...] = tuple(flag.name for flag in FLAGS if flag.kind == PATH)
ENGINE_BOUNDS: dict[str, Bound] = {flag.name: flag.bound for flag in FLAGS if flag.bound is not None}


def check_engine_args(args: argparse.Namespace) -> None:
    """Every number of the engine's flags within its bound and every text valid UTF-8; one line otherwise."""
    for flag in FLAGS:
        value = getattr(args, flag.name, None)
        if isinstance(value, str):
            check_text(f"--{flag.name}", value, path=flag.kind == PATH, field=flag.name)
    for name, bound in ENGINE_BOUNDS.items():
        value = getattr(args, name, None)
        if value is not None:
            bound.check(value, field=name)


def argv_of(values: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """The command line that gives the engine `values` (never a shell string). A value that is not given, or
    that is the engine's own "off" (a switch left off, --preview_every 0), is left out."""
    argv: list[str] = []
    for name in names:
        flag, value = BY_NAME[name], values.get(name)
        if value is None or (flag.default is not None and not flag.default and value == flag.default):
            continue
        if flag.kind == SWITCH:
            argv.append(f"--{name}")
        elif flag.kind == BOOL and not isinstance(value, str):  # a job row holds 0 or 1
            argv += [f"--{name}", "True" if value else "False"]
        elif str(value).startswith("-"):
            # Joined with '=': argparse would take a separate "-dark" (a prompt, a path) for an option.
            argv.append(f"--{name}={value}")
        else:
            argv += [f"--{name}", str(value)]
    return argv


def word_to_bool(name: str, value: str | bool) -> bool:
    """A bool flag typed as a word (the app's CLI takes True/False as text, as the engine does)."""
    try:
        return str2bool(value)
    except argparse.ArgumentTypeError:
        raise BadInputError(f"--{name} {value!r}: expected True or False", field=name) from None
