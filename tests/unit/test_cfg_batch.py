"""Classifier-free guidance as one batch of 2 gives what two separate forwards give."""

from __future__ import annotations

import torch
from diffusers import WanTransformer3DModel

from engine.sampler import Conditioning, denoise, guided_prediction
from engine.schedulers import make_scheduler
from engine.tasks import TASKS
from engine.tiny.presets import PRESETS, transformer_config

TINY = PRESETS["tiny"]


def _setup() -> tuple[WanTransformer3DModel, torch.Tensor, Conditioning]:
    torch.manual_seed(0)
    model = WanTransformer3DModel.from_config(transformer_config(TINY, TASKS["flf2v-tiny"])).eval()
    g = torch.Generator().manual_seed(2)
    latent = torch.randn(16, 3, 8, 8, generator=g)
    cond = Conditioning(
        condition=torch.randn(20, 3, 8, 8, generator=g),
        context=torch.randn(1, 512, TINY.t5_dim, generator=g),
        context_null=torch.randn(1, 512, TINY.t5_dim, generator=g),
        image_embeds=torch.randn(2, 5, TINY.clip_dim, generator=g),
    )
    return model, latent, cond


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@torch.no_grad()
def test_one_batched_forward_equals_two_separate_ones():
    model, latent, cond = _setup()
    t = torch.tensor(600.0)
    batched = guided_prediction(model, latent, t, cond, 5.0, cfg_batch=True)
    separate = guided_prediction(model, latent, t, cond, 5.0, cfg_batch=False)
    assert _relative(batched, separate) <= 1e-5
    # Guidance really mixes two different predictions: with scale 1 only the conditional one is left.
    only_cond = guided_prediction(model, latent, t, cond, 1.0, cfg_batch=True)
    assert _relative(only_cond, batched) > 1e-3


@torch.no_grad()
def test_whole_sampling_loop_batched_equals_separate():
    model, noise, cond = _setup()
    runs = []
    for cfg_batch in (True, False):
        scheduler, timesteps = make_scheduler("unipc", 4, 16.0)
        runs.append(denoise(model, noise, cond, scheduler, timesteps, 5.0, cfg_batch=cfg_batch))
    assert _relative(runs[0], runs[1]) <= 1e-5
