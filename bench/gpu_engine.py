"""The engine's distributed path on one rank, for bench/gpu_proof.py: a real process group (NCCL on CUDA,
gloo on the CPU), FSDP2 wraps of T5 and the DiT over it, the peer watch, a 2-step render of the embedded tiny
model, and a clean shutdown. A one-rank torchrun never forms a process group, so this forms one itself."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from engine import conditioning as C
from engine.attention import resolve_attention
from engine.checks import check_checkpoint
from engine.parallel import ParallelPlan
from engine.parallel.watch import start_peer_watch
from engine.pipeline import FLF2VPipeline, GenerationRequest
from engine.reporting import Reporter
from engine.runtime import init_runtime
from engine.tasks import TASKS
from engine.telemetry import read_events
from engine.tiny import write_tiny_checkpoint
from tests.functional.engine_helpers import draw_frame, free_port


def one_rank_render(device: torch.device, workdir: Path) -> dict[str, Any]:
    task = TASKS["flf2v-tiny"]
    ckpt = write_tiny_checkpoint(workdir / "ckpt", layout="official", preset="tiny")
    first = draw_frame(workdir / "first.png", (64, 64), 0.8, 0)
    last = draw_frame(workdir / "last.png", (64, 64), 0.2, 60)
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    backend = "nccl" if device.type == "cuda" else "gloo"
    extra: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
    started = time.monotonic()
    dist.init_process_group(backend, init_method="env://", rank=0, world_size=1, **extra)
    runtime = init_runtime(device.type, str(workdir / "logs"))
    events = workdir / "events.jsonl"
    reporter = Reporter(runtime, str(events))
    errors: list[BaseException] = []
    failed = True
    try:
        watch = start_peer_watch(runtime, errors.append)
        plan = ParallelPlan(world_size=1, rank=0, dit_fsdp=True, t5_fsdp=True)
        pipeline = FLF2VPipeline(task, check_checkpoint(str(ckpt), task), runtime, reporter, plan,
                                 attention=resolve_attention("auto", runtime.device))  # fmt: skip
        pipeline.load()
        fsdp = type(pipeline.models.transformer).__name__
        request = GenerationRequest(
            first_frame=C.load_rgb(str(first)), last_frame=C.load_rgb(str(last)), prompt="a small blue bird",
            neg_prompt=task.neg_prompt, size="64*64", frame_num=9, steps=2, shift=task.sample_shift,
            guide_scale=task.sample_guide_scale, solver="unipc", seed=42, offload=False, cfg_batch=False,
        )  # fmt: skip
        video = pipeline.generate(request)
        if video is None or not torch.isfinite(video).all():
            raise RuntimeError("the one-rank render gave no finite video")
        failed = False
    finally:
        reporter.close()
        runtime.close(failed=failed)
    stages = [e["name"] for e in read_events(events) if e["kind"] == "stage" and e.get("phase") == "end"]
    if dist.is_initialized() or errors:
        raise RuntimeError(f"unclean end: process group still up={dist.is_initialized()}, watch errors={errors}")
    return {"backend": backend, "watch": watch is not None, "dit_class": fsdp, "video": list(video.shape),
            "stages": stages, "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
