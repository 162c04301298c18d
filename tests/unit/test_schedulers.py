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


@pytest.mark.parametrize("solver", ["unipc", "dpm++"])
def test_sigmas_are_held_in_the_state_dtype(solver):
    # The step computes its coefficients in the sigmas' dtype. A float64 state stepped with float32 sigmas gets
    # float32 coefficients, whose last bit depends on the platform's float32 log (this was issue 11's ~4e-8).
    narrow, timesteps32 = make_scheduler(solver, 10, 16.0)
    wide, timesteps64 = make_scheduler(solver, 10, 16.0, dtype=torch.float64)
    assert narrow.sigmas.dtype == torch.float32 and wide.sigmas.dtype == torch.float64
    # Same official float32 schedule, widened exactly; same timesteps.
    assert torch.equal(wide.sigmas, narrow.sigmas.double()) and torch.equal(timesteps32, timesteps64)


def test_float64_unipc_steps_do_not_round_through_float32():
    # Every step of a float64 exact flow lands on the straight path to float64 precision; with float32 sigmas
    # (float32 step coefficients) it misses by up to ~2e-7. Not dpm++: its step, the official one and
    # diffusers' alike, rounds the sample itself to float32 ("upcast"), which a float64 state cannot undo.
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 4, 2, 3, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(1, 4, 2, 3, 3, generator=gen, dtype=torch.float64)
    scheduler, timesteps = make_scheduler("unipc", 12, 5.0, dtype=torch.float64)
    x = (1 - scheduler.sigmas[0]) * x0 + scheduler.sigmas[0] * noise
    for t in timesteps:
        x = scheduler.step(noise - x0, t, x, return_dict=False)[0]
        assert x.dtype == torch.float64
        sigma = scheduler.sigmas[scheduler.step_index]
        assert torch.allclose(x, (1 - sigma) * x0 + sigma * noise, rtol=0, atol=1e-12)


def test_state_dtype_must_be_float32_or_float64():
    with pytest.raises(ValueError, match="float32 or float64"):
        make_scheduler("unipc", 4, 5.0, dtype=torch.bfloat16)


def test_unknown_solver():
    with pytest.raises(ValueError):
        make_scheduler("euler", 4, 1.0)
