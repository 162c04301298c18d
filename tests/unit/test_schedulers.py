"""The official sigma schedules on diffusers' solvers.

These tests pin the formulas. The equivalence with the official FlowUniPCMultistepScheduler and
FlowDPMSolverMultistepScheduler (timesteps and whole trajectories, against numbers recorded from the official
code) is tested in test_schedulers_official.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.schedulers import make_scheduler, shift_sigmas


@pytest.mark.parametrize(("steps", "shift"), [(50, 16.0), (8, 3.0), (1, 16.0)])
def test_unipc_schedule_starts_at_float32_0999(steps, shift):
    scheduler, timesteps = make_scheduler("unipc", steps, shift)
    sigma_max = float(np.float32(0.999))
    expected = shift_sigmas(np.linspace(sigma_max, 0.0, steps + 1)[:-1], shift)
    assert timesteps.dtype == torch.int64 and len(timesteps) == steps
    assert torch.equal(timesteps, torch.from_numpy(expected * 1000).to(torch.int64))
    assert torch.allclose(scheduler.sigmas[:-1], torch.from_numpy(expected).float())
    assert scheduler.sigmas[-1] == 0


@pytest.mark.parametrize(("steps", "shift"), [(50, 16.0), (4, 5.0)])
def test_dpm_schedule_starts_at_one(steps, shift):
    scheduler, timesteps = make_scheduler("dpm++", steps, shift)
    assert scheduler.sigmas[0] == 1.0 and timesteps[0] == 1000
    expected = shift_sigmas(np.linspace(1.0, 0.0, steps + 1)[:steps], shift)
    assert torch.equal(timesteps, torch.from_numpy(expected * 1000).to(torch.int64))


@pytest.mark.parametrize("solver", ["unipc", "dpm++"])
def test_solvers_reach_the_data_for_an_exact_flow(solver):
    # With the exact velocity (noise - x0) every solver must land on x0.
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 2, 3, 3, generator=gen), torch.randn(1, 4, 2, 3, 3, generator=gen)
    scheduler, timesteps = make_scheduler(solver, 12, 5.0)
    sigma0 = scheduler.sigmas[0]
    x = (1 - sigma0) * x0 + sigma0 * noise  # on the straight path at the first sigma
    for t in timesteps:
        x = scheduler.step(noise - x0, t, x, return_dict=False)[0]
    assert torch.allclose(x, x0, atol=1e-5)


@pytest.mark.parametrize("solver", ["unipc", "dpm++"])
@pytest.mark.parametrize("steps", [69, 100, 200])
def test_many_steps_with_repeated_integer_timesteps(solver, steps):
    scheduler, timesteps = make_scheduler(solver, steps, 16.0)
    if solver == "unipc":
        assert timesteps[0] == timesteps[1] == 999  # the repeat that breaks a lookup by value
    x = torch.zeros(1, 2, 1, 2, 2)
    for t in timesteps:
        x = scheduler.step(torch.ones_like(x), t, x, return_dict=False)[0]
    assert torch.isfinite(x).all()


def test_unknown_solver():
    with pytest.raises(ValueError):
        make_scheduler("euler", 4, 1.0)
