"""The engine's flags as CLI options, shared by `submit` and `retry`, with the official generate.py names
(`--sample_steps`) and dashed aliases (`--sample-steps`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

_PANEL = "Engine flags (as in the official generate.py)"


def _opt(name: str, help_text: str, kind: Any) -> inspect.Parameter:
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    option = typer.Option(*names, help=help_text, rich_help_panel=_PANEL, show_default=False)
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


def with_engine_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the engine options to a command; they arrive in **kwargs (None when not given)."""
    sig = inspect.signature(fn, eval_str=True)  # string annotations (PEP 563) would hide the typer.Option
    own = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    fn.__signature__ = sig.replace(parameters=[*own, *ENGINE_OPTIONS])  # type: ignore[attr-defined]
    return fn


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
