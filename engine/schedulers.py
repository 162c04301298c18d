"""Flow-matching samplers configured to reproduce the official Wan2.1 schedules.

The stepping math is diffusers' (UniPCMultistepScheduler, DPMSolverMultistepScheduler with flow sigmas).
Only the sigma schedules differ from diffusers' defaults, so we install the official ones:

- unipc: the official FlowUniPCMultistepScheduler spaces sigmas linearly from float32(0.999) down to 0 and
  applies the shift; diffusers' default starts from 1.0 instead.
- dpm++: the official code spaces sigmas linearly from 1.0 (not 0.999) down to 0, shifts them, and passes
  them in; diffusers' flow-sigma default cannot express that schedule, so we overwrite it after
  set_timesteps.

In both, timesteps are sigma * 1000 truncated to int64, exactly as the official code feeds the model.

The sigmas keep the official float32 values, but the scheduler holds them in the dtype of the state it steps
(`dtype`), because every step coefficient (log-SNRs, their differences, expm1, ratios) is computed from them in
their own dtype. The official code, like diffusers, keeps them in float32 whatever the state, so a float64
state would be stepped with float32 coefficients, whose last bit depends on the platform's float32 log
(torch 2.13.0+cpu rounds about 7% of float32 logs one ulp away from the correctly rounded value): ~1e-7
relative noise that a float64 run must not carry. For the float32 state that sampling uses, this is the
official arithmetic exactly. (dpm++'s step, the official one and diffusers' alike, still rounds the sample to
float32 each step; that rounding is exact IEEE arithmetic, the same on every platform.)
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# float32(1 - 1/1000): the official schedulers keep their training sigmas as float32 before reading sigma_max.
_OFFICIAL_SIGMA_MAX = float(np.float32(1.0 - 1.0 / 1000))


def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def official_unipc_sigmas(steps: int) -> np.ndarray:
    """Unshifted sigmas as the official FlowUniPCMultistepScheduler.set_timesteps builds them."""
    return np.linspace(_OFFICIAL_SIGMA_MAX, 0.0, steps + 1).copy()[:-1]


def official_dpm_sigmas(steps: int, shift: float) -> np.ndarray:
    """Shifted sigmas as the official get_sampling_sigmas builds them for FlowDPMSolverMultistepScheduler."""
    return shift_sigmas(np.linspace(1.0, 0.0, steps + 1)[:steps], shift)


def make_scheduler(
    solver: str, steps: int, shift: float, num_train_timesteps: int = 1000, dtype: torch.dtype = torch.float32
) -> tuple[SchedulerMixin, torch.Tensor]:
    """A scheduler with its timesteps set, and those timesteps (int64, on the CPU).

    `dtype` is the dtype of the latent it will step (float32 or float64): its sigmas, and so the arithmetic of
    each step's coefficients, are held in that dtype.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the sampler state must be float32 or float64, not {dtype}")
    if solver == "unipc":
        scheduler = UniPCMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            solver_order=2,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
            predict_x0=True,
            solver_type="bh2",
            lower_order_final=True,
            final_sigmas_type="zero",
        )
        scheduler.set_timesteps(sigmas=official_unipc_sigmas(steps))
    elif solver == "dpm++":
        scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            solver_order=2,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
            algorithm_type="dpmsolver++",
            solver_type="midpoint",
            lower_order_final=True,
            euler_at_final=False,
            final_sigmas_type="zero",
        )
        scheduler.set_timesteps(steps)
        sigmas = official_dpm_sigmas(steps, shift)
        scheduler.timesteps = torch.from_numpy(sigmas * num_train_timesteps).to(torch.int64)
        scheduler.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
    else:
        raise ValueError(f"unknown solver {solver!r}")
    # Widening float32 to float64 is exact: the schedule stays the official one, only the arithmetic widens.
    scheduler.sigmas = scheduler.sigmas.to(dtype)
    # Step by position, not by looking the timestep value up: truncated to integers, the timesteps repeat
    # near 999 once more than ~68 steps are asked for at shift 16, and the lookup (which the official
    # schedulers share) then starts one step late and fails on the last one.
    scheduler.set_begin_index(0)
    return scheduler, scheduler.timesteps
