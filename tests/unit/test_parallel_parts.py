"""Pieces of the distributed engine that need no process group: shard arithmetic, lazy row readers, the plan."""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import save_file

from engine.cli_args import apply_defaults, build_parser, validate
from engine.errors import BadInputError
from engine.loaders.lazy import pth_lazy, safetensors_lazy
from engine.parallel import ParallelPlan
from engine.parallel.fsdp import shard_rows
from engine.parallel.ulysses import rotate


@pytest.mark.parametrize("rows", [1, 2, 5, 7, 64, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shard_rows_is_torch_chunk(rows, world):
    chunks = torch.arange(rows).chunk(world)
    for rank in range(world):
        start, stop = shard_rows(rows, world, rank)
        expected = chunks[rank].tolist() if rank < len(chunks) else []
        assert list(range(start, stop)) == expected


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(7, 5, 3, generator=g),
        "half": torch.randn(9, 4, generator=g).bfloat16(),
        "ids": torch.arange(11, dtype=torch.int64),
        "scalar": torch.tensor(2.5),
    }


def test_safetensors_rows_are_the_file_rows(tmp_path):
    tensors = _tensors()
    save_file(tensors, str(tmp_path / "w.safetensors"))
    lazy = dict(safetensors_lazy([tmp_path / "w.safetensors"]))
    assert {k: v.shape for k, v in lazy.items()} == {k: tuple(v.shape) for k, v in tensors.items()}
    for key, tensor in tensors.items():
        assert torch.equal(lazy[key].read_all(), tensor), key
        if tensor.dim():
            assert torch.equal(lazy[key].rows(2, 5), tensor[2:5]), key
            assert lazy[key].rows(3, 3).shape == (0, *tensor.shape[1:])


def test_safetensors_rows_of_a_truncated_file_name_it(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[:-1000])
    lazy = dict(safetensors_lazy([path]))
    assert lazy["w"].rows(0, 2).shape == (2, 64)  # the start of the tensor is still there
    with pytest.raises(BadInputError, match=r"w\.safetensors is truncated"):
        lazy["w"].rows(0, 64)


def test_pth_rows_are_views_of_the_mapped_file_copied_out(tmp_path):
    tensors = _tensors()
    torch.save(tensors, tmp_path / "w.pth")
    lazy = dict(pth_lazy(tmp_path / "w.pth"))
    for key, tensor in tensors.items():
        assert torch.equal(lazy[key].read_all(), tensor), key
    part = lazy["w"].rows(1, 4)
    assert torch.equal(part, tensors["w"][1:4])
    part.zero_()  # the caller owns its rows: writing them changes neither the file nor the next read
    assert torch.equal(lazy["w"].rows(1, 4), tensors["w"][1:4])


def test_plan_drops_every_flag_on_one_process():
    assert ParallelPlan.of(1, 0, True, True, 1) == ParallelPlan(1, 0, False, False, 1)
    plan = ParallelPlan.of(4, 3, True, False, 2, cfg_size=2)
    assert (plan.dit_fsdp, plan.t5_fsdp, plan.ulysses_size, plan.fsdp, plan.distributed_dit) == (
        True, False, 2, True, True,
    )  # fmt: skip
    assert "(Ulysses), 2 groups" in plan.describe() and "CFG-parallel" in plan.describe()


def _args(*argv: str) -> argparse.Namespace:
    base = ["--task", "flf2v-tiny", "--prompt", "a bird", "--first_frame", "a.png", "--last_frame", "b.png",
            "--ckpt_dir", "ckpt"]  # fmt: skip
    return apply_defaults(build_parser().parse_args([*base, *argv]), 2)


def test_t5_on_the_cpu_and_sharded_t5_are_refused_together():
    validate(_args("--t5_fsdp"), 2)
    validate(_args("--t5_cpu"), 2)
    with pytest.raises(BadInputError, match=r"--t5_cpu .* --t5_fsdp"):
        validate(_args("--t5_cpu", "--t5_fsdp"), 2)


def test_rotate_matches_complex_multiplication():
    # Wan's rotary embedding turns each (even, odd) channel pair by its angle: x * e^(i angle).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 3, 8, generator=g)
    angle = torch.randn(1, 5, 1, 4, generator=g, dtype=torch.float64)
    cos, sin = angle.cos().repeat_interleave(2, -1), angle.sin().repeat_interleave(2, -1)
    expected = torch.view_as_real(torch.view_as_complex(x.double().unflatten(-1, (-1, 2))) * torch.polar(
        torch.ones_like(angle), angle)).flatten(-2).float()  # fmt: skip
    assert torch.allclose(rotate(x, cos, sin), expected, atol=1e-6)
