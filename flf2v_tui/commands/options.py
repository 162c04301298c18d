"""The engine's flags as CLI options, shared by `submit` and `retry`, with the official generate.py names
(`--sample_steps`) and dashed aliases (`--sample-steps`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.flags import BOOL, BY_NAME, JOB_FLAGS, SWITCH, Flag, word_to_bool
from flf2v_tui.commands.common import parse_ids, print_json
from flf2v_tui.submission import QueueOptions, parse_retry_on, parse_seeds
from flf2v_tui.term import echo
from storage.spec import BOUNDS

if TYPE_CHECKING:  # the guards read pictures with PIL: not loaded by every command
    from flf2v_tui.flf_guards import FlfWarning

_PANEL = "Engine flags (as in the official generate.py)"
# Option names whose bound (storage.spec.BOUNDS) is filed under the JobSpec field they fill.
_FIELD_OF = {"retries": "max_retries"}
# The order `--help` lists the job flags in (engine.flags.JOB_FLAGS); a flag not named here comes after these.
_HELP_ORDER = (
    "prompt", "first_frame", "last_frame", "task", "ckpt_dir", "size", "frame_num", "sample_steps", "sample_shift",
    "sample_guide_scale", "sample_solver", "base_seed", "neg_prompt", "save_file", "offload_model", "t5_fsdp",
    "dit_fsdp", "t5_cpu", "ulysses_size", "ring_size", "preview_every",
)  # fmt: skip


def in_bounds(name: str) -> Callable[[Any], Any] | None:
    """A typer callback that refuses a number outside its bound as the option is parsed (one line, exit 2),
    or None for an option without one."""
    bound = BOUNDS.get(_FIELD_OF.get(name, name))
    if bound is None:
        return None

    def check(value: Any) -> Any:
        problem = None if value is None else bound.problem(value)
        if problem:
            raise typer.BadParameter(problem)
        return value

    return check


def _engine_option(flag: Flag) -> inspect.Parameter:
    """`--name` and `--na-me`; a switch also `--no_name` and `--no-na-me`. None when not given, so that retry
    and rerun change only what was given; a bool flag is a word (True/False), as the engine takes it."""
    name, dashed = flag.name, flag.name.replace("_", "-")
    if flag.kind == SWITCH:
        names, kind, check = [f"--{name}/--no_{name}", f"--{dashed}/--no-{dashed}"], bool, None
    else:
        names = [f"--{name}"] + ([f"--{dashed}"] if "_" in name else [])
        kind, check = (str if flag.kind == BOOL else flag.type), in_bounds(name)
    option = typer.Option(*names, help=flag.cli_help, rich_help_panel=_PANEL, show_default=False, callback=check)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


def _help_rank(flag: Flag) -> int:
    return _HELP_ORDER.index(flag.name) if flag.name in _HELP_ORDER else len(_HELP_ORDER)


ENGINE_OPTIONS: list[inspect.Parameter] = [_engine_option(flag) for flag in sorted(JOB_FLAGS, key=_help_rank)]
ENGINE_NAMES = tuple(p.name for p in ENGINE_OPTIONS)


def _extend_signature(fn: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[..., Any]:
    """Append `params` to fn's own (replacing its **kwargs, where typer delivers them)."""
    sig = inspect.signature(fn, eval_str=True)  # string annotations (PEP 563) would hide the typer.Option
    own = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    fn.__signature__ = sig.replace(parameters=[*own, *params])  # type: ignore[attr-defined]
    return fn


def with_engine_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the engine options to a command; they arrive in **kwargs (None when not given)."""
    return _extend_signature(fn, ENGINE_OPTIONS)


def engine_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The engine flags the user gave, converted the way the engine's parser expects them."""
    values = {name: kwargs.get(name) for name in ENGINE_NAMES}
    for name, value in values.items():
        if value is not None and BY_NAME[name].kind == BOOL:
            values[name] = word_to_bool(name, value)
    return values


# ---- queue options, shared by `submit` and `videos rerun` (one declaration, so the two cannot drift) -----
QUEUE_PANEL = "Queue options"


def _queue(
    name: str, default: Any, kind: Any, *flags: str, help_text: str, panel: str | None = QUEUE_PANEL
) -> inspect.Parameter:
    option = typer.Option(*flags, help=help_text, rich_help_panel=panel, callback=in_bounds(name))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])


_DEFAULT = QueueOptions()  # the queue settings' defaults are JobSpec's (storage.spec.QueueSettings)
QUEUE_OPTIONS: list[inspect.Parameter] = [
    _queue("nodes", _DEFAULT.nodes, int, "--nodes",
           help_text="machines the render spans, each with --gpus-per-node ranks (over 1: a Slurm worker runs it)"),
    _queue("priority", _DEFAULT.priority, int, "--priority", help_text="higher runs first"),
    _queue("after", None, list[str] | None, "--after", help_text="start only after these jobs succeeded"),
    _queue("after_any", None, list[str] | None, "--after-any", "--after_any",
           help_text="start after these jobs ended, whichever way (Slurm's afterany)"),
    _queue("after_fail", None, list[str] | None, "--after-fail", "--after_fail",
           help_text="start only after these jobs failed (Slurm's afternotok)"),
    _queue("hold", _DEFAULT.held, bool, "--hold", help_text="queue it held (flf2v release ID)"),
    _queue("label", None, list[str] | None, "--label", help_text="a label (repeatable)"),
    _queue("retries", _DEFAULT.max_retries, int, "--retries", help_text="automatic retries"),
    _queue("retry_on", None, str | None, "--retry-on", "--retry_on",
           help_text=f"classes retried (default {','.join(_DEFAULT.retry_on)})"),
    _queue("retry_backoff", _DEFAULT.retry_backoff, float, "--retry-backoff",
           help_text="seconds before the first retry; doubles each time"),
    _queue("seeds", None, str | None, "--seeds", help_text="a sweep: one job per seed, e.g. 1,2,3"),
    _queue("seed_range", None, str | None, "--seed-range", "--seed_range", help_text="a sweep over A..B inclusive"),
    _queue("other_worker", False, bool, "--other-worker",
           help_text="for a worker elsewhere, or one started with --cpu-slots: --gpus is not checked against "
                     "this machine's GPUs or cores"),
    _queue("json_out", False, bool, "--json", help_text="print the new job ids as JSON", panel=None),
    _queue("quiet", False, bool, "--quiet", "-q", help_text="print only the job ids", panel=None),
]  # fmt: skip


def with_queue_options(gpus_default: int | None, gpus_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add `--gpus` (whose default differs: submit 1, rerun the video's own) and the queue options; all arrive
    in **kwargs. Apply it under with_engine_options, so that the queue options are listed first."""
    kind = (int | None) if gpus_default is None else int
    gpus = _queue("gpus", gpus_default, kind, "--gpus", "--gpus-per-node", help_text=gpus_help)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return _extend_signature(fn, [gpus, *QUEUE_OPTIONS])

    return decorate


def queue_values(kwargs: dict[str, Any], gpus: int) -> QueueOptions:
    """The QueueOptions the queue options in kwargs describe (with `gpus` already resolved). Typer passes every
    option of QUEUE_OPTIONS (its declared default, QueueSettings', when not given)."""
    after, after_any, after_fail = kwargs["after"], kwargs["after_any"], kwargs["after_fail"]
    return QueueOptions(
        gpus=gpus,
        nodes=kwargs["nodes"],
        priority=kwargs["priority"],
        after=parse_ids(after) if after else [],
        after_any=parse_ids(after_any) if after_any else [],
        after_fail=parse_ids(after_fail) if after_fail else [],
        held=kwargs["hold"],
        labels=[x for x in (kwargs["label"] or []) if x.strip()],
        max_retries=kwargs["retries"],
        retry_on=parse_retry_on(kwargs["retry_on"]) or _DEFAULT.retry_on,
        retry_backoff=kwargs["retry_backoff"],
        other_worker=kwargs["other_worker"],
    )


def queue_seeds(kwargs: dict[str, Any]) -> list[int] | None:
    return parse_seeds(kwargs.get("seeds"), kwargs.get("seed_range"))


def echo_queued(ids: list[int], kwargs: dict[str, Any], source: str = "", warnings: Sequence[FlfWarning] = ()) -> None:
    """What submit and rerun print: JSON (--json, the FLF warnings as fields), bare ids (-q, no warnings), or
    a sentence (the warnings on stderr)."""
    held = " (held)" if kwargs.get("hold") else ""
    if kwargs.get("json_out"):
        print_json({"ids": ids, "warnings": [w.as_dict() for w in warnings]})
        return
    if kwargs.get("quiet"):
        typer.echo("\n".join(map(str, ids)))
        return
    if len(ids) == 1:
        typer.echo(f"queued job {ids[0]}{source}{held}")
    else:
        typer.echo(f"queued {len(ids)} jobs: {ids[0]}..{ids[-1]}{source}{held}")
    for warning in warnings:
        echo(f"warning: {warning.message}", err=True)
