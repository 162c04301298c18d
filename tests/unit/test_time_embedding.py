"""The DiT's timestep sinusoid in float64, as the official code computes it: against a float64 reference its
error stays at float32's rounding for every t, where diffusers' float32 `Timesteps` drifts as t grows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from torch import nn

from engine.tasks import TASKS
from engine.time_embedding import Float64Timesteps, use_float64_sinusoid
from engine.tiny.presets import PRESETS, transformer_config

TIMESTEPS = (17.0, 250.0, 500.0, 750.0, 999.0)


def _numpy_sinusoid(t: float, channels: int) -> np.ndarray:
    """The official formula, written independently in numpy float64: [cos(t f_i), sin(t f_i)], f_i = 1e4^(-i/half)."""
    half = channels // 2
    angles = t * np.power(10000.0, -np.arange(half, dtype=np.float64) / half)
    return np.concatenate([np.cos(angles), np.sin(angles)])


def test_the_sinusoid_is_float64_rounded_once_where_diffusers_drifts_with_t():
    torch.manual_seed(0)
    model = WanTransformer3DModel.from_config(transformer_config(PRESETS["tiny"], TASKS["flf2v-tiny"]))
    diffusers_proj = model.condition_embedder.timesteps_proj
    channels = diffusers_proj.num_channels
    ours = Float64Timesteps(channels)
    theirs_errors = []
    for t in TIMESTEPS:
        reference = _numpy_sinusoid(t, channels)
        got = ours(torch.tensor([t]))
        assert got.dtype == torch.float32 and got.shape == (1, channels)
        assert np.abs(got[0].double().numpy() - reference).max() <= 6e-8  # half an ulp of float32 near 1
        theirs_errors.append(np.abs(diffusers_proj(torch.tensor([t]))[0].double().numpy() - reference).max())
    assert theirs_errors[-1] > 1e-5 and theirs_errors[-1] > 20 * theirs_errors[0]  # the drift the swap removes


class _Float64Reference(nn.Module):
    """The whole sinusoid kept in float64, for a model run in float64."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.from_numpy(_numpy_sinusoid(float(t), self.channels)) for t in timesteps])


@torch.no_grad()
def test_the_dit_error_against_float64_stays_flat_across_t_with_the_swap_and_grows_without():
    torch.manual_seed(0)
    diffusers_model = WanTransformer3DModel.from_config(transformer_config(PRESETS["tiny"], TASKS["flf2v-tiny"]))
    swapped = copy.deepcopy(diffusers_model).eval()
    use_float64_sinusoid(swapped)
    use_float64_sinusoid(swapped)  # twice is once
    assert isinstance(swapped.condition_embedder.timesteps_proj, Float64Timesteps)
    reference = copy.deepcopy(diffusers_model).double().eval()
    reference.condition_embedder.timesteps_proj = _Float64Reference(
        swapped.condition_embedder.timesteps_proj.num_channels
    )
    assert set(swapped.state_dict()) == set(diffusers_model.state_dict())  # no weight moved or renamed
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 36, 3, 8, 8, generator=g)
    text = torch.randn(1, 512, PRESETS["tiny"].t5_dim, generator=g)
    image = torch.randn(2, 5, PRESETS["tiny"].clip_dim, generator=g)
    errors: dict[str, list[float]] = {"swapped": [], "diffusers": []}
    for t in TIMESTEPS:
        step = torch.tensor([t])
        want = reference(x.double(), step, text.double(), image.double(), return_dict=False)[0]
        for name, model in (("swapped", swapped), ("diffusers", diffusers_model.eval())):
            got = model(x, step, text, image, return_dict=False)[0].double()
            errors[name].append(((got - want).abs().max() / want.abs().max()).item())
    assert max(errors["swapped"]) <= 6e-7, errors  # float32's own rounding through the model, at every t
    assert max(errors["diffusers"][-2:]) > 1e-6 and max(errors["diffusers"][-2:]) > 2.5 * max(errors["swapped"]), errors


def test_an_odd_channel_count_is_refused():
    with pytest.raises(ValueError, match="even number of channels"):
        Float64Timesteps(7)
