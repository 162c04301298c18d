"""The precision recipe (engine.precision): under --dtype bf16 the DiT keeps the official float32 regions, on the
CPU with CPU bf16 autocast, and under --dtype fp32 the islands change nothing."""

from __future__ import annotations

import pytest
import torch

from engine import loaders
from engine.checks import check_checkpoint
from engine.cli_args import resolve_dtype
from engine.loaders import TRANSFORMER
from engine.precision import Precision, check_islands, island_dtypes, island_problems, keep_fp32_islands
from engine.tasks import TASKS

TASK = TASKS["flf2v-tiny"]


def _transformer(ckpt, dtype: torch.dtype) -> torch.nn.Module:
    return loaders.load(TRANSFORMER, check_checkpoint(ckpt, TASK), TASK, dtype, torch.device("cpu"))


def _inputs(model: torch.nn.Module, dtype: torch.dtype, clip: torch.dtype) -> dict[str, torch.Tensor]:
    """One forward's inputs: the T5 context in the DiT's dtype, the CLIP features in `clip`."""
    gen, cfg = torch.Generator().manual_seed(0), model.config
    return {
        "hidden_states": torch.randn(1, 36, 3, 8, 8, generator=gen),
        "timestep": torch.tensor([937.0]),
        "encoder_hidden_states": torch.randn(1, TASK.text_len, cfg.text_dim, generator=gen).to(dtype),
        # The CLIP tokens of the first and the last frame.
        "encoder_hidden_states_image": torch.randn(2, cfg.pos_embed_seq_len // 2, cfg.image_dim, generator=gen).to(
            clip
        ),
    }


def _forward(model: torch.nn.Module, dtype: torch.dtype, clip: torch.dtype | None = None) -> tuple[torch.Tensor, dict]:
    """`clip`: the CLIP features' dtype; by default what the pipeline feeds (fp16 under bf16, else fp32)."""
    clip = clip or (torch.float16 if dtype == torch.bfloat16 else torch.float32)
    amp = Precision.of("bf16" if dtype == torch.bfloat16 else "fp32", TASK).autocast
    amp_region = torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None)
    with torch.no_grad(), amp_region, island_dtypes(model) as seen:
        out = model(**_inputs(model, dtype, clip), return_dict=False)[0]
    return out, seen


def test_bf16_recipe_keeps_every_official_fp32_point_on_cpu(tiny_official_ckpt):
    model = keep_fp32_islands(_transformer(tiny_official_ckpt, torch.bfloat16))
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16  # the bulk really is bf16
    out, seen = _forward(model, torch.bfloat16)
    assert island_problems(seen) == []
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_without_the_islands_diffusers_rounds_those_points_to_bf16(tiny_official_ckpt):
    """The check above can fail: the engine before the islands (the same model and autocast, the CLIP features
    rounded to bf16 by the pipeline) is caught at each point."""
    _, seen = _forward(_transformer(tiny_official_ckpt, torch.bfloat16), torch.bfloat16, clip=torch.bfloat16)
    problems = {p.split(":")[0] for p in island_problems(seen)}
    assert problems == {"time_embedding", "time_projection", "clip_features", "residual_stream", "velocity"}


def test_check_islands_is_one_call(tiny_official_ckpt):
    """What bench/gpu_proof.py calls on a GPU: one forward under autocast, the problems found (none)."""
    model = keep_fp32_islands(_transformer(tiny_official_ckpt, torch.bfloat16))
    assert check_islands(model, torch.bfloat16, **_inputs(model, torch.bfloat16, torch.float16)) == []
    plain = _transformer(tiny_official_ckpt, torch.bfloat16)
    assert check_islands(plain, torch.bfloat16, **_inputs(plain, torch.bfloat16, torch.bfloat16)) != []


def test_islands_change_nothing_in_fp32(tiny_official_ckpt):
    plain, _ = _forward(_transformer(tiny_official_ckpt, torch.float32), torch.float32)
    model = keep_fp32_islands(keep_fp32_islands(_transformer(tiny_official_ckpt, torch.float32)))  # twice: harmless
    islands, seen = _forward(model, torch.float32)
    assert torch.equal(plain, islands) and island_problems(seen) == []


def test_islands_bring_the_bf16_forward_closer_to_fp32(tiny_official_ckpt):
    reference, _ = _forward(_transformer(tiny_official_ckpt, torch.float32), torch.float32)
    without, _ = _forward(_transformer(tiny_official_ckpt, torch.bfloat16), torch.bfloat16)
    recipe, _ = _forward(keep_fp32_islands(_transformer(tiny_official_ckpt, torch.bfloat16)), torch.bfloat16)
    assert (recipe - reference).abs().max() < (without.float() - reference).abs().max()


@pytest.mark.parametrize(("choice", "device", "resolved"), [
    ("auto", "cuda", "bf16"), ("auto", "cpu", "fp32"), ("bf16", "cpu", "bf16"), ("fp32", "cuda", "fp32"),
])  # fmt: skip
def test_dtype_auto_resolves_per_device(choice, device, resolved):
    assert resolve_dtype(choice, device) == resolved


def test_the_bf16_recipe_is_the_official_dtypes():
    bf16, fp32 = Precision.of("bf16", TASK), Precision.of("fp32", TASK)
    assert (bf16.dit, bf16.t5, bf16.clip, bf16.vae, bf16.autocast) == (
        torch.bfloat16, torch.bfloat16, torch.float16, torch.float32, torch.bfloat16,
    )  # fmt: skip
    assert {fp32.dit, fp32.t5, fp32.clip, fp32.vae} == {torch.float32} and fp32.autocast is None
