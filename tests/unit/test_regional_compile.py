"""`--compile`: the DiT's blocks compiled one region each give the eager model's latents (CPU, tiny model).

Inductor builds C++ kernels on the CPU: the first run compiles (minutes on a loaded box; seconds once its
cache under /tmp is warm), so the test is marked slow and kept to two sampling steps."""

from __future__ import annotations

import copy

import pytest
import torch

from engine.regional_compile import compile_blocks
from engine.sampler import denoise
from engine.schedulers import make_scheduler
from tests.unit.tiny_dit import tiny_dit_and_inputs


@pytest.mark.slow
@torch.no_grad()
def test_compiled_blocks_give_the_eager_latents():
    eager, noise, cond = tiny_dit_and_inputs(float64_sinusoid=True)
    compiled = copy.deepcopy(eager)
    assert compile_blocks(compiled) == len(compiled.blocks)
    assert set(compiled.state_dict()) == set(eager.state_dict())  # in place: the loaders' names still hold
    assert all(block._compiled_call_impl is not None for block in compiled.blocks)
    latents = []
    for model in (eager, compiled):
        scheduler, timesteps = make_scheduler("unipc", 2, 16.0)
        latents.append(denoise(model, noise, cond, scheduler, timesteps, 5.0, cfg_batch=False))
    relative = ((latents[1] - latents[0]).abs().max() / latents[0].abs().max()).item()
    assert relative <= 1e-5, relative
    assert not torch.equal(latents[0], noise)
