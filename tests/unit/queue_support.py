"""Helpers shared by the queue's unit tests."""

from __future__ import annotations

from pathlib import Path

from storage.spec import JobSpec


def make_spec(frames: tuple[Path, Path], **overrides: object) -> JobSpec:
    values: dict[str, object] = {
        "task": "flf2v-tiny", "size": "64*64", "frame_num": 9, "ckpt_dir": "/nowhere", "sample_solver": "unipc",
        "sample_steps": 4, "sample_shift": 16.0, "sample_guide_scale": 5.0, "base_seed": 1,
        "first_frame": str(frames[0]), "last_frame": str(frames[1]), "prompt": "a test",
    }  # fmt: skip
    values.update(overrides)
    return JobSpec(**values)  # type: ignore[arg-type]
