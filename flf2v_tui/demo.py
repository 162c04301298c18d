"""`flf2v demo`: the tiny model through the whole queue (submit, worker, progress, mp4) in well under a minute."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from storage.paths import Home

DEMO_PROMPT = "the sun rises over the sea and the night sky turns to morning"
DEMO_SIZE = "128*128"
DEMO_FRAMES = 17
DEMO_STEPS = 30
DEMO_RANKS = 2


def _sky(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        a = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=tuple(int(t + (b - t) * a) for t, b in zip(top, bottom, strict=True)))
    return image


def draw_frames(folder: Path, size: tuple[int, int] = (128, 128)) -> tuple[Path, Path]:
    """Night: a dark sky, a pale moon high on the left. Morning: a light sky, a big orange sun low on the
    right, over a sea that changes colour too. Different colours and shapes, so the transition is visible."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    horizon = int(height * 0.7)

    night = _sky(size, (8, 10, 40), (40, 30, 90))
    d = ImageDraw.Draw(night)
    d.ellipse((width * 0.15, height * 0.1, width * 0.3, height * 0.25), fill=(230, 230, 210))
    d.rectangle((0, horizon, width, height), fill=(10, 20, 50))
    for i in range(12):
        x, y = (i * 37) % width, (i * 23) % (horizon - 4)
        d.point((x, y), fill=(255, 255, 255))

    morning = _sky(size, (120, 180, 250), (250, 200, 150))
    d = ImageDraw.Draw(morning)
    d.ellipse((width * 0.55, height * 0.4, width * 0.85, height * 0.7), fill=(255, 150, 30))
    d.rectangle((0, horizon, width, height), fill=(20, 110, 160))

    first, last = folder / "first.png", folder / "last.png"
    night.save(first)
    morning.save(last)
    return first, last


def worker_command(job_id: int) -> list[str]:
    return [sys.executable, "-m", "flf2v_tui.cli", "worker", "--once", "--job", str(job_id), "--cpu-slots", "1"]


def start_worker(home: Home, job_id: int) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker for the demo job only (never the user's other queued jobs), logging to the demo folder."""
    log_path = home.root / "demo" / f"worker-{job_id}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed when it ends
    env = {**os.environ, "FLF2V_HOME": str(home.root)}
    proc = subprocess.Popen(worker_command(job_id), stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return proc, log_path


def wait_for_worker(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.1)
    return None
