"""The DiT's numerics in bench/gpu_proof.py: the engine's recipe installed on the random-weight model, and
the dtypes at the points where the official code computes in float32 (issue 17, item 1), seen through
`engine.precision`'s own probe of those points."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.gpu_models import Geometry
from engine.precision import island_dtypes, island_problems, keep_fp32_islands
from engine.sampler import Conditioning
from engine.time_embedding import use_float64_sinusoid


def install_recipe(model: nn.Module) -> list[str]:
    """What the engine's pipeline does to its DiT before sampling; returns what was installed."""
    use_float64_sinusoid(model)
    keep_fp32_islands(model)
    return ["float64 time sinusoid", "fp32 islands"]


def _forward_once(model: nn.Module, noise: torch.Tensor, cond: Conditioning, g: Geometry) -> None:
    x = torch.cat([noise[:, :1], cond.condition[:, :1]])[None]  # one latent frame is enough to see the dtypes
    amp = torch.autocast(noise.device.type, dtype=g.dit_dtype, enabled=g.dit_dtype != torch.float32)
    t = torch.tensor([999.0], device=noise.device)
    with torch.no_grad(), amp:
        model(hidden_states=x, timestep=t, encoder_hidden_states=cond.context,
              encoder_hidden_states_image=cond.image_embeds, return_dict=False)  # fmt: skip


def fp32_points(model: nn.Module, noise: torch.Tensor, cond: Conditioning, g: Geometry) -> dict[str, Any]:
    """The dtypes seen at the official float32 points in one guided forward under the run's autocast."""
    with island_dtypes(model) as seen:
        _forward_once(model, noise, cond, g)
    return {"probe": "engine.precision", **{k: sorted(map(str, v)) for k, v in seen.items()},
            "problems": island_problems(seen)}  # fmt: skip
