"""CFG-parallel on gloo: the conditional and unconditional branches on two halves of the ranks give, at every
sampling step, the latent one process gives: on 2 ranks (cfg 2) and on 4 (cfg 2 x Ulysses 2, the DiT sharded
with FSDP2 within each half)."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from torch.distributed.fsdp import fully_shard

from engine.parallel import ParallelPlan, cfg_mesh, cfg_split, ulysses_split
from engine.parallel.cfg import CONDITIONAL, UNCONDITIONAL
from engine.parallel.ulysses import enable_ulysses
from engine.sampler import Conditioning, denoise
from engine.schedulers import make_scheduler
from tests.unit.gloo_ranks import run_ranks
from tests.unit.tiny_dit import tiny_dit_and_inputs

STEPS = 4


def _setup() -> tuple[WanTransformer3DModel, torch.Tensor, Conditioning]:
    return tiny_dit_and_inputs(float64_sinusoid=True)  # the same random weights on every rank


def _steps(model: torch.nn.Module, noise: torch.Tensor, cond: Conditioning, **kwargs) -> list[torch.Tensor]:
    latents: list[torch.Tensor] = []
    scheduler, timesteps = make_scheduler("unipc", STEPS, 16.0)
    denoise(model, noise, cond, scheduler, timesteps, 5.0, on_step=lambda i, n, s, lat: latents.append(lat.clone()),
            **kwargs)  # fmt: skip
    return latents


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _cfg_parallel_rank(rank: int, world: int, ulysses: int, fsdp: bool) -> None:
    model, noise, cond = _setup()
    with torch.no_grad():  # one process: both branches here, as one batch of 2 (the CPU default) and apart
        batched, separate = _steps(model, noise, cond, cfg_batch=True), _steps(model, noise, cond, cfg_batch=False)
    plan = ParallelPlan.of(world, rank, dit_fsdp=fsdp, t5_fsdp=False, ulysses_size=ulysses, cfg_size=2)
    mesh = cfg_mesh(torch.device("cpu"), world, 2)
    if fsdp:
        for block in model.blocks:
            fully_shard(block, mesh=mesh["group"])
        fully_shard(model, mesh=mesh["group"])
    if ulysses > 1:
        enable_ulysses(model, ulysses_split(plan))
    split = cfg_split(mesh)
    assert split.branch == (CONDITIONAL if rank < world // 2 else UNCONDITIONAL)
    calls: list[int] = []
    model.register_forward_pre_hook(lambda _m, _a, kw: calls.append(kw["hidden_states"].shape[0]), with_kwargs=True)
    parallel = _steps(model, noise, cond, cfg_batch=True, cfg_split=split)
    assert calls == [1] * STEPS  # one branch per rank, batch 1, whatever cfg_batch says
    assert len(parallel) == STEPS
    for step, (got, one, two) in enumerate(zip(parallel, batched, separate, strict=True), start=1):
        assert _relative(got, one) <= 1e-5, (rank, step, _relative(got, one))
        assert _relative(got, two) <= 1e-5, (rank, step, _relative(got, two))
    # The steps really move the latent (a test that cannot fail would compare noise with noise).
    assert _relative(separate[0], batched[0]) <= 1e-5 and _relative(parallel[0], noise) > 1e-3


def test_cfg_parallel_on_two_ranks_gives_one_process_latents_at_every_step(tmp_path):
    run_ranks(_cfg_parallel_rank, 2, tmp_path, 1, False)


@pytest.mark.slow
def test_cfg_2_by_ulysses_2_with_fsdp_in_each_half_gives_one_process_latents_at_every_step(tmp_path):
    run_ranks(_cfg_parallel_rank, 4, tmp_path, 2, True)


def test_the_plan_says_which_half_computes_which_branch():
    plan = ParallelPlan.of(4, 3, dit_fsdp=True, t5_fsdp=True, ulysses_size=2, cfg_size=2)
    assert (plan.half, plan.distributed_dit) == (2, True)
    text = plan.describe()
    assert "the conditional branch on ranks 0-1, the unconditional one on ranks 2-3" in text
    assert "FSDP2 within each half" in text
    assert ParallelPlan.of(1, 0, False, False, 1, cfg_size=2).cfg_size == 1  # one process: nothing to split
