"""`--compile`: the DiT's blocks compiled one region each give the eager model's latents (CPU, tiny model).

Inductor builds C++ kernels on the CPU: the first run compiles (minutes on a loaded box; seconds once its
cache under /tmp is warm), so the test is marked slow and kept to two sampling steps."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import WanTransformer3DModel

from engine.regional_compile import compile_blocks
from engine.sampler import Conditioning, denoise
from engine.schedulers import make_scheduler
from engine.tasks import TASKS
from engine.time_embedding import use_float64_sinusoid
from engine.tiny.presets import PRESETS, transformer_config

TINY = PRESETS["tiny"]


@pytest.mark.slow
@torch.no_grad()
def test_compiled_blocks_give_the_eager_latents():
    torch.manual_seed(0)
    eager = WanTransformer3DModel.from_config(transformer_config(TINY, TASKS["flf2v-tiny"])).eval()
    use_float64_sinusoid(eager)
    compiled = copy.deepcopy(eager)
    assert compile_blocks(compiled) == len(compiled.blocks)
    assert set(compiled.state_dict()) == set(eager.state_dict())  # in place: the loaders' names still hold
    assert all(block._compiled_call_impl is not None for block in compiled.blocks)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(16, 3, 8, 8, generator=g)
    cond = Conditioning(
        condition=torch.randn(20, 3, 8, 8, generator=g),
        context=torch.randn(1, 512, TINY.t5_dim, generator=g),
        context_null=torch.randn(1, 512, TINY.t5_dim, generator=g),
        image_embeds=torch.randn(2, 5, TINY.clip_dim, generator=g),
    )
    latents = []
    for model in (eager, compiled):
        scheduler, timesteps = make_scheduler("unipc", 2, 16.0)
        latents.append(denoise(model, noise, cond, scheduler, timesteps, 5.0, cfg_batch=False))
    relative = ((latents[1] - latents[0]).abs().max() / latents[0].abs().max()).item()
    assert relative <= 1e-5, relative
    assert not torch.equal(latents[0], noise)
