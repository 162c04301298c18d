"""The engine's flags as CLI options, shared by `submit` and `retry`, with the official generate.py names
(`--sample_steps`) and dashed aliases (`--sample-steps`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from flf2v_tui.commands.common import parse_ids, print_json
from flf2v_tui.submission import QueueOptions, parse_retry_on, parse_seeds
from storage.spec import BOUNDS

_PANEL = "Engine flags (as in the official generate.py)"
# Option names whose bound (storage.spec.BOUNDS) is filed under the JobSpec field they fill.
_FIELD_OF = {"retries": "max_retries"}


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


def _opt(name: str, help_text: str, kind: Any) -> inspect.Parameter:
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    option = typer.Option(*names, help=help_text, rich_help_panel=_PANEL, show_default=False, callback=in_bounds(name))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind, option])


def _flag(name: str, help_text: str) -> inspect.Parameter:
    dashed = name.replace("_", "-")
    option = typer.Option(
        f"--{name}/--no_{name}", f"--{dashed}/--no-{dashed}", help=help_text, rich_help_panel=_PANEL, show_default=False
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[bool | None, option]
    )


ENGINE_OPTIONS: list[inspect.Parameter] = [
    _opt("prompt", "text prompt (required for submit)", str | None),
    _opt("first_frame", "image of the first frame; copied into the job folder at submit", str | None),
    _opt("last_frame", "image of the last frame; copied into the job folder at submit", str | None),
    _opt("task", "flf2v-14B (default) or flf2v-tiny (the embedded model)", str | None),
    _opt("ckpt_dir", "checkpoint folder, official or diffusers layout (flf2v-tiny: optional)", str | None),
    _opt("size", "area as WIDTH*HEIGHT, e.g. 1280*720; aspect follows the first frame", str | None),
    _opt("frame_num", "frames, 4n+1 (default 81)", int | None),
    _opt("sample_steps", "sampling steps (default 50)", int | None),
    _opt("sample_shift", "flow-matching shift (default 16)", float | None),
    _opt("sample_guide_scale", "classifier-free guidance scale (default 5.0)", float | None),
    _opt("sample_solver", "unipc (default) or dpm++", str | None),
    _opt("base_seed", "seed; -1 (default) draws one at submit so the job is reproducible", int | None),
    _opt("neg_prompt", "negative prompt (default: the official one)", str | None),
    _opt("save_file", "output mp4 (default: FLF2V_HOME/videos/...); with a sweep it must contain {seed}", str | None),
    _opt("offload_model", "True/False: move models off the GPU between phases", str | None),
    _flag("t5_fsdp", "shard T5 with FSDP"),
    _flag("dit_fsdp", "shard the DiT with FSDP"),
    _flag("t5_cpu", "keep T5 on the CPU"),
    _opt("ulysses_size", "Ulysses sequence-parallel degree (must divide --gpus)", int | None),
    _opt("ring_size", "ring attention degree (only 1)", int | None),
    _opt("preview_every", "write a preview PNG of the latent every k steps (0: off)", int | None),
]
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
    offload = values.get("offload_model")
    if offload is not None:
        from engine.cli_args import str2bool

        try:
            values["offload_model"] = str2bool(offload)
        except Exception:
            from engine.errors import BadInputError

            raise BadInputError(f"--offload_model {offload!r}: expected True or False") from None
    return values


# ---- queue options, shared by `submit` and `videos rerun` (one declaration, so the two cannot drift) -----
QUEUE_PANEL = "Queue options"


def _queue(
    name: str, default: Any, kind: Any, *flags: str, help_text: str, panel: str | None = QUEUE_PANEL
) -> inspect.Parameter:
    option = typer.Option(*flags, help=help_text, rich_help_panel=panel, callback=in_bounds(name))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])


QUEUE_OPTIONS: list[inspect.Parameter] = [
    _queue("nodes", 1, int, "--nodes", help_text="machines (only 1 is supported)"),
    _queue("priority", 0, int, "--priority", help_text="higher runs first"),
    _queue("after", None, list[str] | None, "--after", help_text="start only after these jobs succeeded"),
    _queue("hold", False, bool, "--hold", help_text="queue it held (flf2v release ID)"),
    _queue("label", None, list[str] | None, "--label", help_text="a label (repeatable)"),
    _queue("retries", 2, int, "--retries", help_text="automatic retries"),
    _queue("retry_on", None, str | None, "--retry-on", "--retry_on",
           help_text="classes retried (default comm,worker_lost)"),
    _queue("retry_backoff", 30.0, float, "--retry-backoff",
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
    gpus = _queue("gpus", gpus_default, kind, "--gpus", help_text=gpus_help)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return _extend_signature(fn, [gpus, *QUEUE_OPTIONS])

    return decorate


def queue_values(kwargs: dict[str, Any], gpus: int) -> QueueOptions:
    """The QueueOptions the queue options in kwargs describe (with `gpus` already resolved). Typer passes every
    option of QUEUE_OPTIONS (its declared default when not given), so the defaults live there only."""
    after = kwargs["after"]
    return QueueOptions(
        gpus=gpus,
        nodes=kwargs["nodes"],
        priority=kwargs["priority"],
        after=parse_ids(after) if after else [],
        held=kwargs["hold"],
        labels=[x for x in (kwargs["label"] or []) if x.strip()],
        max_retries=kwargs["retries"],
        retry_on=parse_retry_on(kwargs["retry_on"]) or QueueOptions().retry_on,
        retry_backoff=kwargs["retry_backoff"],
        other_worker=kwargs["other_worker"],
    )


def queue_seeds(kwargs: dict[str, Any]) -> list[int] | None:
    return parse_seeds(kwargs.get("seeds"), kwargs.get("seed_range"))


def echo_queued(ids: list[int], kwargs: dict[str, Any], source: str = "") -> None:
    """What submit and rerun print: JSON (--json), bare ids (-q), or a sentence."""
    held = " (held)" if kwargs.get("hold") else ""
    if kwargs.get("json_out"):
        print_json({"ids": ids})
    elif kwargs.get("quiet"):
        typer.echo("\n".join(map(str, ids)))
    elif len(ids) == 1:
        typer.echo(f"queued job {ids[0]}{source}{held}")
    else:
        typer.echo(f"queued {len(ids)} jobs: {ids[0]}..{ids[-1]}{source}{held}")
