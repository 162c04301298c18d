"""What a job is made of: the engine's flags plus the queue's own settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import BadInputError
from engine.limits import ENGINE_BOUNDS, ENGINE_PATHS, INT64_MAX, MAX_RANKS, Bound, check_text, shown
from engine.telemetry import FAILURE_CLASSES
from storage.policy import MAX_BACKOFF_S

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

# The queue's own numbers, beside the engine's (engine.limits): one table for the CLI options, the submit
# form and JobSpec. Every bound fits SQLite's 64-bit INTEGER with room to spare, so ORDER BY -priority and
# sums over gpus cannot overflow.
MAX_RETRIES = 100  # the back-off doubles per retry (policy.decide); 2**100 still fits a float, 2**1024 does not
QUEUE_BOUNDS: dict[str, Bound] = {
    "gpus": Bound("--gpus", 1, MAX_RANKS, why="no machine has more GPUs or cores"),
    "nodes": Bound("--nodes", 1, MAX_RANKS),
    "priority": Bound("--priority", -1_000_000_000, 1_000_000_000),
    "max_retries": Bound("--retries", 0, MAX_RETRIES),
    # The policy waits at most this long between retries, whatever the doubling says.
    "retry_backoff": Bound("--retry-backoff", 0, MAX_BACKOFF_S, integer=False, why="the longest wait between retries"),
}
BOUNDS: dict[str, Bound] = {**ENGINE_BOUNDS, **QUEUE_BOUNDS}
JOB_ID = Bound("job id", 1, INT64_MAX)


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

    def __post_init__(self) -> None:
        """The last gate before the database: a value that would overflow SQLite or cannot be stored as UTF-8
        text is bad input here too, whichever way the spec was built."""
        check_values({f.name: getattr(self, f.name) for f in fields(self)})

    def engine_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENGINE_FLAGS}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


PATH_FIELDS = frozenset({*ENGINE_PATHS, "first_frame_src", "last_frame_src"})


def check_values(values: dict[str, Any]) -> None:
    """Every number in `values` within its bound, every text valid UTF-8 (ids and labels too); one line each."""
    for name, value in values.items():
        bound = BOUNDS.get(name)
        if bound is not None and value is not None:
            bound.check(value)
        elif isinstance(value, str):
            check_text(f"--{name.removesuffix('_src')}", value, path=name in PATH_FIELDS)
    for label in values.get("labels") or ():
        check_text("--label", label)
    for dep in values.get("after") or ():
        if JOB_ID.problem(dep):
            raise BadInputError(f"--after {shown(dep)}: there is no such job (ids are 1 or more; see flf2v ls --all)")


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
