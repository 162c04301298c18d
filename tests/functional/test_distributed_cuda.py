"""The distributed engine on GPUs (NCCL, bf16): skipped without CUDA; the CPU twins are test_distributed.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.telemetry import read_events
from tests.functional.engine_helpers import draw_frame, run_engine, tiny_args

pytestmark = pytest.mark.cuda


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cuda-frames")
    return draw_frame(folder / "first.png", (64, 64), 0.8, 0), draw_frame(folder / "last.png", (64, 64), 0.2, 60)


def _render(ckpt: Path, frames: tuple[Path, Path], out: Path, flags: list[str], nproc: int) -> dict:
    args = tiny_args(ckpt, *frames, out / "v.mp4", device="cuda", events=str(out / "events.jsonl"),
                     dump_video=str(out / "video.npy"))  # fmt: skip
    proc = run_engine([*args, *flags], nproc=nproc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"video": np.load(out / "video.npy"), "events": read_events(out / "events.jsonl")}


def test_one_gpu_with_offload_reports_cuda_memory(tiny_official_ckpt, frames, tmp_path):
    run = _render(tiny_official_ckpt, frames, tmp_path, ["--offload_model", "True"], 1)
    memory = [e for e in run["events"] if e["kind"] == "memory"]
    assert memory and all({"allocated", "reserved", "peak"} <= e.keys() for e in memory)
    import torch

    # The recipe names the GPU model (the same seed can draw other noise on another one) and the bf16 recipe.
    recipe = run["events"][-1]["recipe"]
    assert recipe["gpu"] == torch.cuda.get_device_name(0) and recipe["dtype"] == "bf16"


@pytest.mark.skipif("_gpus() < 2", reason="needs 2 GPUs")
@pytest.mark.parametrize("flags", [["--dit_fsdp", "--t5_fsdp"], ["--dit_fsdp", "--t5_fsdp", "--ulysses_size", "2"],
                                   ["--dit_fsdp", "--t5_fsdp", "--offload_model", "True"], ["--cfg_size", "2"],
                                   ["--cfg_size", "2", "--dit_fsdp", "--t5_fsdp"]])  # fmt: skip
def test_two_gpus_on_nccl_match_one_gpu(tiny_official_ckpt, frames, tmp_path, flags):
    one = _render(tiny_official_ckpt, frames, tmp_path / "one", [], 1)
    two = _render(tiny_official_ckpt, frames, tmp_path / "two", flags, 2)
    # bf16 on both sides; attention over a different split of heads and tokens may round differently.
    assert float(np.abs(two["video"] - one["video"]).max()) <= 2e-2
    assert {e["rank"] for e in two["events"] if e["kind"] == "memory"} == {0, 1}


def test_one_gpu_with_the_auto_kernel_and_compiled_blocks_matches_sdpa_math(tiny_official_ckpt, frames, tmp_path):
    math = _render(tiny_official_ckpt, frames, tmp_path / "math", ["--attn", "math"], 1)
    fast = _render(tiny_official_ckpt, frames, tmp_path / "fast", ["--attn", "auto", "--compile"], 1)
    start = next(e for e in fast["events"] if e["kind"] == "start")
    assert start["args"]["attn"] != "auto" and start["args"]["compile"] is True  # auto resolved, and recorded
    # bf16 kernels: the same rounding bound as the sharded runs above.
    assert float(np.abs(fast["video"] - math["video"]).max()) <= 2e-2


@pytest.mark.parametrize("offload", [False, True])
def test_without_offload_the_dit_and_t5_are_read_straight_to_the_gpu(tiny_official_ckpt, offload):
    """Without offload no rank holds a whole DiT or T5 in host RAM: they are read tensor by tensor to the GPU.
    With it they start on the CPU, as the official code builds them."""
    import torch

    from engine.checks import check_checkpoint
    from engine.pipeline import FLF2VPipeline
    from engine.reporting import Reporter
    from engine.runtime import Runtime
    from engine.tasks import TASKS

    task = TASKS["flf2v-tiny"]
    runtime = Runtime(rank=0, local_rank=0, world_size=1, device=torch.device("cuda", 0))
    pipeline = FLF2VPipeline(task, check_checkpoint(tiny_official_ckpt, task), runtime, Reporter(runtime, None))
    pipeline.load(offload=offload)
    m = pipeline.models
    for model in (m.transformer, m.text_encoder):
        assert {p.device.type for p in model.parameters()} == {"cpu" if offload else "cuda"}
    assert next(m.transformer.blocks[0].parameters()).dtype == torch.bfloat16  # --dtype auto on CUDA: bf16
