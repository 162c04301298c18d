"""The DiT's timestep sinusoid in float64, as the official Wan2.1 code computes it.

diffusers' WanTransformer3DModel projects the timestep with `Timesteps`, which computes t x frequency in
float32: at t near 1000 the product loses about 1e-4 of its argument, and the DiT's output drifts from the
official model's by up to 6e-6 relative. The official code computes the sinusoid in float64 and only then
casts it to float32. Only that projection module is swapped here; the rest of diffusers' class is untouched.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_PERIOD = 10000.0


class Float64Timesteps(nn.Module):
    """[cos(t * f_i), sin(t * f_i)] with f_i = MAX_PERIOD^(-i / half), in float64, returned as float32
    (the same layout as diffusers' Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0))."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        if num_channels % 2:
            raise ValueError(f"the time embedding needs an even number of channels, not {num_channels}")
        self.num_channels = num_channels

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        position = timesteps.reshape(-1).to(torch.float64)
        freqs = torch.pow(MAX_PERIOD, -torch.arange(half, dtype=torch.float64, device=position.device) / half)
        angles = torch.outer(position, freqs)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()


def use_float64_sinusoid(transformer: nn.Module) -> None:
    """Swap the DiT's timestep projection for the float64 one (a module without parameters)."""
    embedder = transformer.condition_embedder  # type: ignore[union-attr]
    if not isinstance(embedder.timesteps_proj, Float64Timesteps):
        embedder.timesteps_proj = Float64Timesteps(embedder.timesteps_proj.num_channels)
