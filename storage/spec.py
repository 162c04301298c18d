"""What a job is made of: the engine's flags plus the queue's own settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from engine.telemetry import FAILURE_CLASSES

# The engine flags a job stores, in the order `python -m engine.generate` documents them.
ENGINE_FLAGS: tuple[str, ...] = (
    "task",
    "size",
    "frame_num",
    "ckpt_dir",
    "offload_model",
    "t5_fsdp",
    "dit_fsdp",
    "t5_cpu",
    "ulysses_size",
    "ring_size",
    "sample_solver",
    "sample_steps",
    "sample_shift",
    "sample_guide_scale",
    "base_seed",
    "first_frame",
    "last_frame",
    "prompt",
    "neg_prompt",
    "save_file",
    "preview_every",
)
BOOL_FLAGS = frozenset({"t5_fsdp", "dit_fsdp", "t5_cpu"})
RETRYABLE_CLASSES = tuple(c for c in FAILURE_CLASSES if c != "user_input")
DEFAULT_RETRY_ON: tuple[str, ...] = ("comm", "worker_lost")


@dataclass
class JobSpec:
    """One job before it is queued. Engine values are stored resolved (defaults filled in), so a job's
    row is its complete recipe; `neg_prompt` None means the engine's official default."""

    task: str
    size: str
    frame_num: int
    ckpt_dir: str
    sample_solver: str
    sample_steps: int
    sample_shift: float
    sample_guide_scale: float
    base_seed: int
    first_frame: str
    last_frame: str
    prompt: str
    offload_model: bool | None = None
    t5_fsdp: bool = False
    dit_fsdp: bool = False
    t5_cpu: bool = False
    ulysses_size: int = 1
    ring_size: int = 1
    neg_prompt: str | None = None
    save_file: str | None = None
    preview_every: int = 0
    # The paths the user gave; first_frame/last_frame become the job's own copies when it is queued.
    first_frame_src: str = ""
    last_frame_src: str = ""
    # Queue settings.
    gpus: int = 1
    nodes: int = 1
    priority: int = 0
    labels: list[str] = field(default_factory=list)
    after: list[int] = field(default_factory=list)
    held: bool = False
    max_retries: int = 2
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    retry_backoff: float = 30.0

    def engine_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENGINE_FLAGS}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def engine_argv(values: dict[str, Any]) -> list[str]:
    """The engine's command line for a job's stored values (never a shell string)."""
    argv: list[str] = []
    for name in ENGINE_FLAGS:
        value = values.get(name)
        if value is None:
            continue
        if name in BOOL_FLAGS:
            if value:
                argv.append(f"--{name}")
            continue
        if name == "offload_model":
            value = "True" if value else "False"
        elif name == "preview_every" and not value:
            continue
        argv += [f"--{name}", str(value)]
    return argv
