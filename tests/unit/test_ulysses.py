"""Ulysses sequence parallelism on 2 gloo ranks: the all-to-all layouts and the whole DiT against one process."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

from engine.parallel import ParallelPlan, ulysses_split
from engine.parallel.ulysses import (
    SequenceSplit,
    UlyssesSelfAttention,
    enable_ulysses,
    heads_to_tokens,
    tokens_to_heads,
)
from engine.tasks import TASKS
from engine.tiny.presets import PRESETS, transformer_config
from tests.unit.gloo_ranks import run_ranks


def _layouts(rank: int, world: int) -> None:
    split = ulysses_split(ParallelPlan(world, rank, False, False, world))
    # Every rank's tokens, as one process would see the whole sequence: [B, S, H, D].
    whole = torch.arange(2 * 6 * 4 * 3, dtype=torch.float32).reshape(2, 6, 4, 3)
    mine = whole.chunk(world, dim=1)[rank]
    by_heads = tokens_to_heads(mine, split)
    assert torch.equal(by_heads, whole.chunk(world, dim=2)[rank])  # all tokens, this rank's heads
    assert torch.equal(heads_to_tokens(by_heads, split), mine)


def test_all_to_all_moves_between_token_and_head_splits(tmp_path):
    run_ranks(_layouts, 2, tmp_path)


def _dit_matches_one_process(rank: int, world: int, frames: int, height: int, width: int) -> None:
    torch.manual_seed(0)  # the same random weights on every rank
    model = WanTransformer3DModel.from_config(transformer_config(PRESETS["tiny"], TASKS["flf2v-tiny"])).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 36, frames, height, width, generator=g)  # a CFG batch of 2
    t = torch.tensor([700.0, 700.0])
    text = torch.randn(2, 512, PRESETS["tiny"].t5_dim, generator=g)
    image = torch.randn(4, 5, PRESETS["tiny"].clip_dim, generator=g)  # two frames' CLIP tokens per sample
    tokens = frames * (height // 2) * (width // 2)
    with torch.no_grad():
        reference = model(x, t, text, image, return_dict=False)[0]
        split = enable_ulysses(model, ulysses_split(ParallelPlan(world, rank, False, False, world)))
        seen: list[int] = []
        model.blocks[1].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
        out = model(x, t, text, image, return_dict=False)[0]
    assert all(isinstance(b.attn1.processor, UlyssesSelfAttention) for b in model.blocks)
    assert not any(isinstance(b.attn2.processor, UlyssesSelfAttention) for b in model.blocks)
    assert split.length == tokens and seen == [-(-tokens // world)]  # each rank saw its share of the tokens
    relative = ((out - reference).abs().max() / reference.abs().max()).item()
    assert relative <= 1e-5, relative


@pytest.mark.parametrize(("frames", "height", "width"), [(3, 8, 8), (3, 6, 6)], ids=["48 tokens", "27 tokens"])
def test_sequence_parallel_dit_equals_one_process(tmp_path, frames, height, width):
    run_ranks(_dit_matches_one_process, 2, tmp_path, frames, height, width)


def _one_rank_is_diffusers_processor(rank: int, world: int, fused: bool) -> None:
    torch.manual_seed(0)
    model = WanTransformer3DModel.from_config(transformer_config(PRESETS["tiny"], TASKS["flf2v-tiny"])).eval()
    attn = model.blocks[0].attn1
    if fused:
        attn.fuse_projections()
    g = torch.Generator().manual_seed(3)
    rotary = model.rope(torch.zeros(1, 36, 3, 4, 6))  # 3 x 2 x 3 patches: 18 tokens
    x = torch.randn(2, 18, model.config.num_attention_heads * model.config.attention_head_dim, generator=g)
    with torch.no_grad():
        want = attn(x, rotary_emb=rotary)  # diffusers' own WanAttnProcessor
        attn.set_processor(UlyssesSelfAttention(SequenceSplit(group=None, size=world, rank=rank, length=18)))
        got = attn(x, rotary_emb=rotary)
    assert torch.equal(got, want)


@pytest.mark.parametrize("fused", [False, True], ids=["separate q, k, v", "fused qkv"])
def test_on_a_group_of_one_the_processor_computes_what_diffusers_does_exactly(tmp_path, fused):
    run_ranks(_one_rank_is_diffusers_processor, 1, tmp_path, fused)
