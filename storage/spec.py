"""What a job is made of: the engine's flags plus the queue's own settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from engine.errors import BadInputError
from engine.flags import ENGINE_BOUNDS, JOB_FLAGS, PATH_FLAGS, Flag, argv_of
from engine.limits import INT64_MAX, MAX_RANKS, Bound, check_text, shown
from engine.telemetry import FAILURE_CLASSES
from storage.policy import MAX_BACKOFF_S

# The engine flags a job stores (engine.flags' job flags), in the order `python -m engine.generate` documents
# them: a column of jobs and a field of JobSpec each.
ENGINE_FLAGS: tuple[str, ...] = tuple(flag.name for flag in JOB_FLAGS)
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


@dataclass(kw_only=True)
class QueueSettings:
    """A job's place in the queue and its retries: the defaults of JobSpec and of what submit, videos rerun
    and the form start from (flf2v_tui.submission.QueueOptions), written here only."""

    gpus: int = 1
    nodes: int = 1
    priority: int = 0
    labels: list[str] = field(default_factory=list)
    after: list[int] = field(default_factory=list)  # start after these succeeded (storage.deps)
    after_any: list[int] = field(default_factory=list)  # ... ended, whichever way
    after_fail: list[int] = field(default_factory=list)  # ... failed
    held: bool = False
    max_retries: int = 2
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    retry_backoff: float = 30.0


class _JobSpecChecks:
    def __post_init__(self) -> None:
        """The last gate before the database: a value that would overflow SQLite or cannot be stored as UTF-8
        text is bad input here too, whichever way the spec was built."""
        check_values({f.name: getattr(self, f.name) for f in fields(self)})  # type: ignore[arg-type]

    def engine_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENGINE_FLAGS}


def _engine_field(flag: Flag) -> tuple[str, Any, Any]:
    kind = flag.type | None if flag.nullable else flag.type
    return (flag.name, kind, field() if flag.required else field(default=flag.default))


# One job before it is queued: the job flags of engine.flags, the frames as the user gave them, and the queue
# settings. Engine values are stored resolved (defaults filled in), so a job's row is its complete recipe; a
# flag the table marks required has no default, and `neg_prompt` None means the engine's official default.
# Made from the table, so a new job flag is a new field with no edit here; keyword arguments only.
JobSpec = make_dataclass(
    "JobSpec",
    [
        *map(_engine_field, JOB_FLAGS),
        # The paths the user gave; first_frame/last_frame become the job's own copies when it is queued.
        ("first_frame_src", str, field(default="")),
        ("last_frame_src", str, field(default="")),
    ],
    bases=(QueueSettings, _JobSpecChecks),
    kw_only=True,
)
JobSpec.__module__ = __name__


PATH_FIELDS = frozenset({*PATH_FLAGS, "first_frame_src", "last_frame_src"})


def check_values(values: dict[str, Any]) -> None:
    """Every number in `values` within its bound, every text valid UTF-8 (ids and labels too); one line each."""
    for name, value in values.items():
        bound = BOUNDS.get(name)
        if bound is not None and value is not None:
            bound.check(value, field=name)
        elif isinstance(value, str):
            flag = name.removesuffix("_src")
            check_text(f"--{flag}", value, path=name in PATH_FIELDS, field=flag)
    for label in values.get("labels") or ():
        check_text("--label", label, field="labels")
    named: dict[int, str] = {}  # job id -> the first option that named it
    for name in ("after", "after_any", "after_fail"):
        option = "--" + name.replace("_", "-")
        for dep in values.get(name) or ():
            if JOB_ID.problem(dep):
                raise BadInputError(
                    f"{option} {shown(dep)}: there is no such job (ids are 1 or more; see flf2v ls --all)", field=name
                )
            if named.setdefault(dep, option) != option:  # one job, two conditions: which one was meant is unknown
                raise BadInputError(
                    f"{named[dep]} {dep} and {option} {dep} contradict each other; name job {dep} under one of them",
                    field=name,
                )


def engine_argv(values: dict[str, Any]) -> list[str]:
    """The engine's command line for a job's stored values (never a shell string)."""
    return argv_of(values, ENGINE_FLAGS)
