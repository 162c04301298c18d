"""Rank-local FSDP2 loading on 2 gloo ranks: each rank holds only its rows, and together they are the model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.distributed.fsdp import FSDPModule

from engine import loaders
from engine.checks import check_checkpoint
from engine.errors import BadInputError
from engine.parallel import fsdp_mesh
from engine.parallel.fsdp import reshard_root, root_is_sharded, shard_rows
from engine.parallel.sharded_load import load_shard
from engine.tasks import TASKS
from tests.unit.gloo_ranks import run_ranks

TASK = TASKS["flf2v-tiny"]
CPU = torch.device("cpu")


def _check_shards(sharded: torch.nn.Module, whole: torch.nn.Module, rank: int, world: int) -> None:
    for name, param in sharded.named_parameters():
        local = param.to_local()
        start, stop = shard_rows(param.shape[0], world, rank)
        assert local.shape[0] == stop - start, name
        assert torch.equal(local, whole.get_parameter(name)[start:stop]), name
        assert torch.equal(param.full_tensor(), whole.get_parameter(name)), name


def _fsdp_units(model: torch.nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if isinstance(module, FSDPModule)}


def _sharded_models_equal_whole(rank: int, world: int, ckpt: str) -> None:
    layout = check_checkpoint(ckpt, TASK)
    mesh = fsdp_mesh(CPU, world)
    dit = load_shard(loaders.TRANSFORMER, layout, TASK, torch.float32, CPU, mesh)
    # One FSDP unit per DiT block, then the root, and no other.
    assert len(dit.blocks) > 1
    assert _fsdp_units(dit) == {"", *(f"blocks.{i}" for i in range(len(dit.blocks)))}
    _check_shards(dit, loaders.load(loaders.TRANSFORMER, layout, TASK, torch.float32, CPU), rank, world)
    assert torch.equal(dit.rope.freqs_cos, loaders.empty(loaders.TRANSFORMER, layout, TASK).rope.freqs_cos)

    t5 = load_shard(loaders.TEXT_ENCODER, layout, TASK, torch.float32, CPU, mesh)
    # One FSDP unit per T5 encoder block, then the root, and no other.
    assert len(t5.encoder.block) > 1
    assert _fsdp_units(t5) == {"", *(f"encoder.block.{i}" for i in range(len(t5.encoder.block)))}
    whole_t5 = loaders.load(loaders.TEXT_ENCODER, layout, TASK, torch.float32, CPU)
    _check_shards(t5, whole_t5, rank, world)
    assert t5.encoder.embed_tokens.weight is t5.shared.weight  # tied, so sharded and loaded once
    ids = torch.tensor([[5, 9, 13, 1, 0, 0], [7, 1, 0, 0, 0, 0]])
    mask = (ids > 0) | (torch.arange(6) == 0)
    with torch.no_grad():
        got = t5(input_ids=ids, attention_mask=mask).last_hidden_state
        want = whole_t5(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(got, want)


@pytest.mark.parametrize("layout", ["official", "diffusers"])
def test_each_rank_loads_its_rows_and_the_shards_make_the_model(
    tmp_path, tiny_official_ckpt, tiny_diffusers_ckpt, layout
):
    ckpt = tiny_official_ckpt if layout == "official" else tiny_diffusers_ckpt
    run_ranks(_sharded_models_equal_whole, 2, tmp_path, str(ckpt))


def _extra_key_is_refused(rank: int, world: int, ckpt: str) -> None:
    layout = check_checkpoint(ckpt, TASK)
    with pytest.raises(BadInputError, match=r"transformer weights in .* 1 unexpected \(blocks.0.stray.weight\)"):
        load_shard(loaders.TRANSFORMER, layout, TASK, torch.float32, CPU, fsdp_mesh(CPU, world))


def test_sharded_loading_is_as_strict_as_whole_loading(tmp_path, tiny_diffusers_ckpt):
    ckpt = Path(shutil.copytree(tiny_diffusers_ckpt, tmp_path / "ckpt"))
    (shard,) = (ckpt / "transformer").glob("*.safetensors")
    state = load_file(shard)
    state["blocks.0.stray.weight"] = torch.zeros(3)
    save_file(state, str(shard), metadata={"format": "pt"})
    run_ranks(_extra_key_is_refused, 2, tmp_path, str(ckpt))


def _bf16_sharded_equals_whole(rank: int, world: int, ckpt: str) -> None:
    """The GPU dtype path on gloo: bf16 parameters beside the modules diffusers and transformers keep in
    float32, in the same FSDP units, all-gathered in their own dtypes."""
    layout = check_checkpoint(ckpt, TASK)
    mesh = fsdp_mesh(CPU, world)
    dit = load_shard(loaders.TRANSFORMER, layout, TASK, torch.bfloat16, CPU, mesh)
    whole = loaders.load(loaders.TRANSFORMER, layout, TASK, torch.bfloat16, CPU)
    dtypes = {name: param.dtype for name, param in dit.named_parameters()}
    assert dtypes == {name: param.dtype for name, param in whole.named_parameters()}
    assert set(dtypes.values()) == {torch.bfloat16, torch.float32}
    assert {dtypes["blocks.0.scale_shift_table"], dtypes["blocks.0.attn1.to_q.weight"]} == {
        torch.float32, torch.bfloat16}  # one block, one FSDP unit, both dtypes  # fmt: skip
    _check_shards(dit, whole, rank, world)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 36, 3, 4, 4, generator=g)
    t = torch.tensor([500.0, 500.0])
    text = torch.randn(2, 512, whole.config.text_dim, generator=g).bfloat16()
    image = torch.randn(4, 5, whole.config.image_dim, generator=g).bfloat16()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = dit(x, t, text, image, return_dict=False)[0]
        want = whole(x, t, text, image, return_dict=False)[0]
    assert torch.equal(got, want)

    t5 = load_shard(loaders.TEXT_ENCODER, layout, TASK, torch.bfloat16, CPU, mesh)
    whole_t5 = loaders.load(loaders.TEXT_ENCODER, layout, TASK, torch.bfloat16, CPU)
    assert {n: p.dtype for n, p in t5.named_parameters()} == {n: p.dtype for n, p in whole_t5.named_parameters()}
    _check_shards(t5, whole_t5, rank, world)
    ids = torch.tensor([[5, 9, 13, 1, 0, 0]])
    with torch.no_grad():
        got_t5 = t5(input_ids=ids, attention_mask=ids > 0).last_hidden_state
        want_t5 = whole_t5(input_ids=ids, attention_mask=ids > 0).last_hidden_state
    assert torch.equal(got_t5, want_t5)


def test_bf16_shards_with_float32_modules_equal_the_unsharded_bf16_model(tmp_path, tiny_official_ckpt):
    run_ranks(_bf16_sharded_equals_whole, 2, tmp_path, str(tiny_official_ckpt))


def _roots_are_resharded_after_use(rank: int, world: int, ckpt: str) -> None:
    layout = check_checkpoint(ckpt, TASK)
    t5 = load_shard(loaders.TEXT_ENCODER, layout, TASK, torch.float32, CPU, fsdp_mesh(CPU, world))
    assert root_is_sharded(t5)
    ids = torch.tensor([[5, 9, 13, 1, 0, 0]])
    with torch.no_grad():
        t5(input_ids=ids, attention_mask=ids > 0)
    reshard_root(t5)  # as the pipeline does after encoding
    assert root_is_sharded(t5) and t5.shared.weight.to_local().shape[0] < t5.shared.weight.shape[0]
    # A root left whole (FSDP2's own choice for roots whose reshard_after_forward is left to it, as in the
    # torch versions that never reshard a root after forward) is made shards again.
    t5.unshard()
    assert not root_is_sharded(t5)
    reshard_root(t5)
    assert root_is_sharded(t5)


def test_fsdp_roots_are_resharded_after_use(tmp_path, tiny_official_ckpt):
    run_ranks(_roots_are_resharded_after_use, 2, tmp_path, str(tiny_official_ckpt))
