"""The DiT's numerics in bench/gpu_proof.py: the engine's recipe installed on the random-weight model, and
the dtypes at the points where the official code computes in float32 (issue 17, item 1).

Issue 17's `engine.precision` (float32 islands, and its own probe of those points) is used when this tree
has it; without it, the same points are probed here and reported as found (bf16 where diffusers rounds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.gpu_models import Geometry
from engine.sampler import Conditioning
from engine.time_embedding import use_float64_sinusoid


def install_recipe(model: nn.Module) -> list[str]:
    """What the engine's pipeline does to its DiT before sampling; returns what was installed."""
    use_float64_sinusoid(model)
    installed = ["float64 time sinusoid"]
    try:
        from engine.precision import keep_fp32_islands  # type: ignore[import-not-found]
    except ImportError:
        return installed
    keep_fp32_islands(model)
    return [*installed, "fp32 islands"]


def _forward_once(model: nn.Module, noise: torch.Tensor, cond: Conditioning, g: Geometry) -> None:
    x = torch.cat([noise[:, :1], cond.condition[:, :1]])[None]  # one latent frame is enough to see the dtypes
    amp = torch.autocast(noise.device.type, dtype=g.dit_dtype, enabled=g.dit_dtype != torch.float32)
    t = torch.tensor([999.0], device=noise.device)
    with torch.no_grad(), amp:
        model(hidden_states=x, timestep=t, encoder_hidden_states=cond.context,
              encoder_hidden_states_image=cond.image_embeds, return_dict=False)  # fmt: skip


def fp32_points(model: nn.Module, noise: torch.Tensor, cond: Conditioning, g: Geometry) -> dict[str, Any]:
    """The dtypes seen at the official float32 points in one guided forward under the run's autocast."""
    try:
        from engine.precision import island_dtypes, island_problems  # type: ignore[import-not-found]
    except ImportError:
        return _own_probe(model, noise, cond, g)
    with island_dtypes(model) as seen:
        _forward_once(model, noise, cond, g)
    return {"probe": "engine.precision", **{k: sorted(map(str, v)) for k, v in seen.items()},
            "problems": island_problems(seen)}  # fmt: skip


def _own_probe(model: nn.Module, noise: torch.Tensor, cond: Conditioning, g: Geometry) -> dict[str, Any]:
    seen: dict[str, str] = {}

    def record(name: str, pick: Callable[[Any, Any], torch.Tensor]) -> Callable[..., None]:
        def hook(_module: nn.Module, args: Any, output: Any) -> None:  # returns None: the output stays as it is
            seen.setdefault(name, str(pick(args, output).dtype))

        return hook

    embedder = model.condition_embedder  # type: ignore[union-attr]
    hooks = [
        embedder.time_embedder.register_forward_hook(record("time_embedding_in", lambda a, o: a[0])),
        embedder.time_embedder.register_forward_hook(record("time_embedding_out", lambda a, o: o)),
        model.blocks[0].register_forward_hook(record("residual_stream", lambda a, o: o)),  # type: ignore[index]
        model.proj_out.register_forward_hook(record("output_head", lambda a, o: o)),  # type: ignore[union-attr]
    ]
    try:
        _forward_once(model, noise, cond, g)
    finally:
        for hook in hooks:
            hook.remove()
    return {"probe": "bench", **seen}
