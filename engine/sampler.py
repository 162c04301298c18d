"""The denoising loop: classifier-free guidance around the DiT, stepped by a flow-matching scheduler."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch

log = logging.getLogger("flf2v.engine")


@dataclass
class Conditioning:
    """Everything the DiT sees besides the noisy latent. Tensors are unbatched where the official code
    keeps them per sample: condition [20, T, h, w] (mask + VAE latent), image_embeds [2, tokens, C]."""

    condition: torch.Tensor
    context: torch.Tensor  # [1, text_len, C]
    context_null: torch.Tensor  # [1, text_len, C]
    image_embeds: torch.Tensor


class CfgExchange(Protocol):
    """CFG-parallel (engine.parallel.cfg.CfgSplit): this rank computes one branch and swaps it for the other."""

    branch: int  # 0: conditional, 1: unconditional

    def exchange(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


StepCallback = Callable[[int, int, float, torch.Tensor], None]
# waiting(what): a region spent waiting on the other ranks, timed by the peer watch (Runtime.waiting).
Waiting = Callable[[str], AbstractContextManager[None]]


def _branch(
    transformer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, cond: Conditioning
) -> torch.Tensor:
    """One guidance branch's prediction, a forward of batch 1 (the official code's)."""
    return transformer(
        hidden_states=x,
        timestep=t.reshape(1),
        encoder_hidden_states=context,
        encoder_hidden_states_image=cond.image_embeds,
        return_dict=False,
    )[0][0].float()


def split_guided_prediction(
    transformer: torch.nn.Module,
    latent: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    guide_scale: float,
    split: CfgExchange,
) -> torch.Tensor:
    """uncond + scale * (cond - uncond), this rank computing only its own branch (CFG-parallel)."""
    x = torch.cat([latent, cond.condition], dim=0)[None]
    mine = _branch(transformer, x, t, cond.context if split.branch == 0 else cond.context_null, cond)
    pred_cond, pred_uncond = split.exchange(mine)
    return pred_uncond + guide_scale * (pred_cond - pred_uncond)


def guided_prediction(
    transformer: torch.nn.Module,
    latent: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    guide_scale: float,
    cfg_batch: bool,
) -> torch.Tensor:
    """uncond + scale * (cond - uncond), from one batched forward or two separate ones."""
    x = torch.cat([latent, cond.condition], dim=0)[None]
    if cfg_batch:
        out = transformer(
            hidden_states=x.expand(2, *x.shape[1:]),
            timestep=t.reshape(1).expand(2),
            encoder_hidden_states=torch.cat([cond.context, cond.context_null]),
            encoder_hidden_states_image=cond.image_embeds.repeat(2, 1, 1),
            return_dict=False,
        )[0].float()
        pred_cond, pred_uncond = out[0], out[1]
    else:
        pred_cond, pred_uncond = (
            _branch(transformer, x, t, context, cond) for context in (cond.context, cond.context_null)
        )
    return pred_uncond + guide_scale * (pred_cond - pred_uncond)


class CfgBatch:
    """Whether the conditional and unconditional passes run as one batch of 2, for the rest of the run.

    A batch of 2 needs about twice the activation memory. When a batched forward runs out of CUDA memory,
    the run goes on with two separate forwards instead of failing, if `can_fall_back`. It cannot with a
    sharded or sequence-parallel DiT: the other ranks may be inside that forward's collectives, which
    this rank would then never join, so there the OOM ends the run as before.
    """

    def __init__(self, batched: bool, can_fall_back: bool = True) -> None:
        self.batched = batched
        self.can_fall_back = can_fall_back
        self.fell_back_at: int | None = None  # the step whose batched forward ran out of memory

    def fall_back(self, step: int) -> None:
        self.batched = False
        self.fell_back_at = step
        gc.collect()
        torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
        log.warning(
            f"CFG batch of 2 ran out of CUDA memory at step {step}: cache freed, running the conditional and "
            "unconditional passes as separate forwards for the rest of the run"
        )


def _prediction(
    transformer: torch.nn.Module,
    latent: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    guide_scale: float,
    mode: CfgBatch,
    step: int,
) -> torch.Tensor:
    if mode.batched:
        try:
            return guided_prediction(transformer, latent, t, cond, guide_scale, cfg_batch=True)
        except torch.cuda.OutOfMemoryError:
            if not mode.can_fall_back:
                raise
        # Here, past the except block, the failed forward's tensors (held by the traceback) are released,
        # so emptying the cache can give their memory back.
        mode.fall_back(step)
    return guided_prediction(transformer, latent, t, cond, guide_scale, cfg_batch=False)


@torch.no_grad()
def denoise(
    transformer: torch.nn.Module,
    noise: torch.Tensor,
    cond: Conditioning,
    scheduler: object,
    timesteps: torch.Tensor,
    guide_scale: float,
    cfg_batch: bool | CfgBatch = True,
    autocast_dtype: torch.dtype | None = None,
    on_step: StepCallback | None = None,
    waiting: Waiting | None = None,
    cfg_split: CfgExchange | None = None,
) -> torch.Tensor:
    """Run every timestep and return the final latent [16, T, h, w] (fp32, as the official sampler state).

    on_step(i, n, seconds, latent) is called after each step, i counting from 1. With `waiting` (a sharded
    or sequence-parallel DiT), each whole step is one waiting region, up to and including the CUDA sync:
    on NCCL the forward returns as soon as its kernels are queued, and a hung collective only blocks the
    CPU later, in the scheduler or the sync, which must be timed too.

    `cfg_batch` as a CfgBatch lets the caller see whether the run fell back to separate forwards. With
    `cfg_split` (CFG-parallel) this rank runs only its branch and `cfg_batch` does not apply.
    """
    mode = cfg_batch if isinstance(cfg_batch, CfgBatch) else CfgBatch(cfg_batch)
    latent = noise.float()
    device = latent.device
    n = len(timesteps)
    amp = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    for i, t in enumerate(timesteps, start=1):
        started = time.perf_counter()
        with waiting(f"denoising step {i}") if waiting is not None else contextlib.nullcontext():
            with amp:
                if cfg_split is not None:
                    noise_pred = split_guided_prediction(
                        transformer, latent, t.to(device), cond, guide_scale, cfg_split
                    )
                else:
                    noise_pred = _prediction(transformer, latent, t.to(device), cond, guide_scale, mode, i)
            # The scheduler looks the timestep up in its own (CPU) schedule, so it gets the CPU one.
            latent = scheduler.step(noise_pred[None], t, latent[None], return_dict=False)[0][0]  # type: ignore[attr-defined]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        if on_step is not None:
            on_step(i, n, time.perf_counter() - started, latent)
    return latent
