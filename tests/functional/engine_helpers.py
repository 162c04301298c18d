"""Helpers shared by the engine's functional tests: example frames and engine runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]


def draw_frame(path: Path, size: tuple[int, int], bird_y: float, hue: int) -> Path:
    """A sky gradient with a round 'bird' at a given height: two of these make a visible transition."""
    width, height = size
    image = Image.new("RGB", size)
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            pixels[x, y] = (40 + 100 * y // height, 90 + hue // 2, 200 - 80 * y // height)
    draw = ImageDraw.Draw(image)
    cx, cy, r = width // 2, int(bird_y * height), max(2, width // 8)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(30, 60 + hue, 220))
    image.save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_command(args: list[str], nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "engine.generate", *args]
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "engine.generate", *args,
    ]  # fmt: skip


def run_engine(args: list[str], nproc: int = 1, timeout: float = 300, cwd: Path | None = None):
    # The repo first, then whatever the caller's PYTHONPATH holds (on the GPU machine: the carried wheels).
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        engine_command(args, nproc), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or REPO
    )


def tiny_args(ckpt: Path, first: Path, last: Path, out: Path, **extra: str) -> list[str]:
    values = {
        "task": "flf2v-tiny", "size": "64*64", "frame_num": "9", "sample_steps": "4", "base_seed": "42",
        "prompt": "a small blue bird takes off", "device": "cpu",
        "ckpt_dir": str(ckpt), "first_frame": str(first), "last_frame": str(last), "save_file": str(out),
    }  # fmt: skip
    values.update(extra)
    return [item for key, value in values.items() for item in (f"--{key}", value)]
