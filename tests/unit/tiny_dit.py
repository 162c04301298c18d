"""The tiny DiT with seeded random weights and a random conditioning of its shapes, the same in every process
that asks (gloo ranks build their own): what the sampler's unit tests run."""

from __future__ import annotations

import torch
from diffusers import WanTransformer3DModel

from engine.sampler import Conditioning
from engine.tasks import TASKS
from engine.time_embedding import use_float64_sinusoid
from engine.tiny.presets import PRESETS, transformer_config

TINY = PRESETS["tiny"]


def tiny_dit_and_inputs(float64_sinusoid: bool = False) -> tuple[WanTransformer3DModel, torch.Tensor, Conditioning]:
    """(model, noise [16, 3, 8, 8], conditioning); with `float64_sinusoid`, the engine's time projection."""
    torch.manual_seed(0)
    model = WanTransformer3DModel.from_config(transformer_config(TINY, TASKS["flf2v-tiny"])).eval()
    if float64_sinusoid:
        use_float64_sinusoid(model)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(16, 3, 8, 8, generator=g)
    cond = Conditioning(
        condition=torch.randn(20, 3, 8, 8, generator=g),
        context=torch.randn(1, 512, TINY.t5_dim, generator=g),
        context_null=torch.randn(1, 512, TINY.t5_dim, generator=g),
        image_embeds=torch.randn(2, 5, TINY.clip_dim, generator=g),
    )
    return model, noise, cond
