"""Classifier-free guidance as one batch of 2 gives what two separate forwards give; `--cfg_batch auto`
picks it where that is verified, and a batch of 2 that runs out of CUDA memory falls back to two forwards."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers import WanTransformer3DModel

from engine.cli_args import build_parser, resolve_cfg_batch
from engine.sampler import CfgBatch, Conditioning, denoise, guided_prediction
from engine.schedulers import make_scheduler
from tests.unit.tiny_dit import tiny_dit_and_inputs


def _setup() -> tuple[WanTransformer3DModel, torch.Tensor, Conditioning]:
    return tiny_dit_and_inputs()


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


# ---- --cfg_batch auto, and the fallback when a batch of 2 does not fit --------------------------------


def test_auto_is_batched_on_the_cpu_and_separate_on_cuda():
    assert build_parser().parse_args([]).cfg_batch == "auto"
    assert resolve_cfg_batch("auto", "cpu") is True  # verified lossless above (fp32)
    assert resolve_cfg_batch("auto", "cuda") is False  # the official code's two forwards
    for given in (True, False):
        assert resolve_cfg_batch(given, "cuda") is given and resolve_cfg_batch(given, "cpu") is given
    parsed = [build_parser().parse_args(["--cfg_batch", v]).cfg_batch for v in ("True", "false", "1", "AUTO")]
    assert parsed == [True, False, True, "auto"]


def test_a_bad_cfg_batch_value_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--cfg_batch", "sometimes"])
    assert exit_info.value.code == 2
    assert "expected auto, True or False, got 'sometimes'" in capsys.readouterr().err


class _TooSmallForTwo(torch.nn.Module):
    """The tiny DiT on a card too small for a batch of 2: a batched forward raises CUDA's OOM error."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[int] = []

    def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> object:
        self.batches.append(hidden_states.shape[0])
        if hidden_states.shape[0] == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(hidden_states=hidden_states, **kwargs)


@torch.no_grad()
def test_an_oom_in_a_batched_forward_falls_back_to_separate_forwards(monkeypatch, caplog):
    model, noise, cond = _setup()
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    stand_in, mode = _TooSmallForTwo(model), CfgBatch(True)
    scheduler, timesteps = make_scheduler("unipc", 4, 16.0)
    with caplog.at_level(logging.INFO, logger="flf2v.engine"):
        got = denoise(stand_in, noise, cond, scheduler, timesteps, 5.0, cfg_batch=mode)
    # One batched attempt at step 1, then two forwards a step for all 4 steps: the rest of the run.
    assert stand_in.batches == [2] + [1] * 8
    assert (mode.batched, mode.fell_back_at, len(emptied)) == (False, 1, 1)
    (line,) = [r for r in caplog.records if "out of CUDA memory" in r.getMessage()]
    assert line.levelno == logging.WARNING and "separate forwards for the rest of the run" in line.getMessage()
    scheduler, timesteps = make_scheduler("unipc", 4, 16.0)
    assert torch.equal(got, denoise(model, noise, cond, scheduler, timesteps, 5.0, cfg_batch=False))


@torch.no_grad()
def test_with_a_distributed_dit_the_oom_ends_the_run():
    # Other ranks may be inside the failed forward's collectives: no rank may go its own way.
    model, noise, cond = _setup()
    scheduler, timesteps = make_scheduler("unipc", 4, 16.0)
    mode = CfgBatch(True, can_fall_back=False)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        denoise(_TooSmallForTwo(model), noise, cond, scheduler, timesteps, 5.0, cfg_batch=mode)
    assert mode.fell_back_at is None
