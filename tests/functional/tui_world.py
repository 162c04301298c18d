"""A queue with a job in every state, written into a real FLF2V_HOME with fixed times, for the TUI's tests,
snapshots and benchmark: rows through storage, attempts with rank logs and events.jsonl as the worker and the
engine leave them. The running job and the worker are this very process, so they count as alive."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from PIL import Image

from storage.db import connect, write_tx
from storage.jobs import insert_jobs
from storage.paths import Home
from tests.functional.queue_helpers import write_stub_checkpoint
from tests.unit.queue_support import make_spec

NOW = 1_767_261_600.0  # 2026-01-01 10:00:00 UTC: the frozen clock of the snapshots
STATES = ("succeeded", "failed", "cancelled", "running", "interrupted", "queued", "held")
# What a hostile or careless rank (or a person) can put in text the TUI and the CLI show: cursor moves and
# screen clearing, a window title, a clipboard write (OSC 52), a hyperlink, a C1 CSI, a bell and a backspace.
HOSTILE = (
    "\x1b[2J\x1b[H\x1b[10;10Hcursor moved"
    " \x1b]0;pwned title\x07title set"
    " \x1b]52;c;ZWNobyBwd25lZA==\x07clipboard written"
    " \x1b]8;;https://evil.example/\x1b\\link text\x1b]8;;\x1b\\"
    " \u009b31mc1 csi \x07bell\x08 \x1b[31mred\x1b[0m end"
)
# Textual's own markup, which a bare string in a widget would be read as: a hyperlink, and a tag that raises.
MARKUP = "[link=https://evil.example/]markup link[/link] [/x]"
# Textual's full-screen update: SGR styles and a move to the start of each line, nothing else.
_TEXTUAL_SEQUENCES = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\d+;1H")


@dataclass
class World:
    home: Home
    ids: dict[str, int]  # state -> job id
    frames: tuple[Path, Path]
    ckpt: Path

    def attempt_dir(self, state: str, number: int = 1) -> Path:
        return self.home.attempt_dir(self.ids[state], number)


def stamp(t: float) -> str:
    """The engine's log time stamp for unix time t (in UTC, so the files do not depend on the machine)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f",{round(t % 1 * 1000) % 1000:03d}"


def log_line(t: float, text: str, level: str = "INFO") -> str:
    return f"[{stamp(t)}] {level}: {text}\n"


def write_frames(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    first, last = folder / "first.png", folder / "last.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(first)
    Image.new("RGB", (64, 48), (40, 90, 200)).save(last)
    return first, last


def _attempt(conn, job_id: int, number: int, folder: Path, **values: object) -> int:
    me = psutil.Process(os.getpid())
    row = {"job_id": job_id, "number": number, "worker_host": socket.gethostname(), "worker_pid": me.pid,
           "worker_started": me.create_time(), "device": "cpu", "gpus": "cpu0,cpu1", "nproc": 2,
           "log_dir": str(folder), "started_at": NOW - 600, **values}  # fmt: skip
    for key in ("memory", "peak_memory", "stage_seconds"):
        if key in row:
            row[key] = json.dumps(row[key])
    names = ", ".join(row)
    cur = conn.execute(f"INSERT INTO attempts ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    conn.execute("UPDATE jobs SET current_attempt_id = ?, attempts_count = ? WHERE id = ?",
                 (cur.lastrowid, number, job_id))  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    return int(cur.lastrowid or 0)


def opening_events(t0: float, device: str) -> list[dict[str, Any]]:
    """The events of a two-rank render from its start to the beginning of denoising (load 40 s, encode 3.5 s)."""
    return [
        {"kind": "start", "t": t0, "rank": 0, "task": "flf2v-tiny", "world_size": 2, "device": device, "args": {},
         "engine_version": "test"},
        {"kind": "stage", "t": t0 + 1, "rank": 0, "name": "load_transformer", "phase": "begin"},
        {"kind": "stage", "t": t0 + 41, "rank": 0, "name": "load_transformer", "phase": "end", "seconds": 40.0},
        {"kind": "stage", "t": t0 + 41, "rank": 0, "name": "encode_text", "phase": "begin"},
        {"kind": "stage", "t": t0 + 44.5, "rank": 0, "name": "encode_text", "phase": "end", "seconds": 3.5},
        {"kind": "stage", "t": t0 + 45, "rank": 0, "name": "denoise", "phase": "begin"},
    ]  # fmt: skip


def write_running_files(folder: Path, steps_done: int = 12, steps: int = 50) -> None:
    """Two ranks' logs and the events of a render that loaded, encoded and is denoising."""
    t0 = NOW - 300
    events = opening_events(t0, "cpu")
    lines: dict[int, list[str]] = {0: [], 1: []}
    for rank in (0, 1):
        lines[rank].append(log_line(t0 + rank * 0.01, f"rank {rank} of 2 starting on cpu"))
    for i in range(1, steps_done + 1):
        t = t0 + 45 + i * 20
        events.append({"kind": "step", "t": t, "rank": 0, "i": i, "n": steps, "seconds": 20.0,
                       "eta_seconds": 20.0 * (steps - i)})  # fmt: skip
        for rank in (0, 1):
            events.append({"kind": "memory", "t": t, "rank": rank, "rss": (900 + 40 * i + 100 * rank) << 20})
            lines[rank].append(log_line(t + rank * 0.01, f"Sampling {i:>3}/{steps} 20.00 s/it"))
    # A latent preview as the engine writes them: first, middle and last latent frames side by side.
    preview = folder / "previews" / "step-0010.png"
    preview.parent.mkdir(parents=True, exist_ok=True)
    strip = Image.new("RGB", (48, 16), (30, 60, 140))
    strip.paste((200, 120, 40), (16, 4, 32, 12))
    strip.save(preview)
    events.append({"kind": "preview", "t": t0 + 45 + 10 * 20, "rank": 0, "step": 10, "path": str(preview)})
    with open(folder / "events.jsonl", "w") as fh:
        fh.writelines(json.dumps({"v": 1, **e}) + "\n" for e in events)
    for rank, text in lines.items():
        (folder / f"rank{rank}.log").write_text("".join(text))


def build_world(root: Path) -> World:
    """Jobs in every state, a live worker (this process) with 2 CPU slots, at the fixed time NOW."""
    home = Home(root).ensure()
    frames = write_frames(root.parent / f"{root.name}-frames")
    ckpt = write_stub_checkpoint(root.parent / f"{root.name}-ckpt")
    conn = connect(home.db)
    ids: dict[str, int] = {}
    prompts = {
        "succeeded": "a heron lands on a misty lake at dawn", "failed": "a paper boat drifts down a gutter in rain",
        "cancelled": "a city skyline turns from day to night", "running": "a small blue bird takes off from a branch",
        "interrupted": "a candle flame flickers and goes out", "queued": "waves roll over black volcanic sand",
        "held": "a fox runs through fresh snow",
    }  # fmt: skip
    for n, state in enumerate(STATES):
        labels = ["sweep"] if state in ("queued", "held") else ["demo"]
        spec = make_spec(frames, prompt=prompts[state], labels=labels, gpus=2, sample_steps=50, base_seed=100 + n,
                         ckpt_dir=str(ckpt))  # fmt: skip
        ids[state] = insert_jobs(conn, home, [spec])[0]
    with write_tx(conn):
        for n, job_id in enumerate(ids.values()):
            conn.execute("UPDATE jobs SET created_at = ?, queued_at = ? WHERE id = ?",
                         (NOW - 3600 + n * 300, NOW - 3600 + n * 300, job_id))  # fmt: skip
        done = {"load_transformer": 40.0, "encode_text": 3.5, "denoise": 1000.0, "decode": 12.0, "save": 0.8}
        job = ids["succeeded"]
        _attempt(conn, job, 1, home.attempt_dir(job, 1), state="succeeded", exit_code=0, stage="done", step=50,
                 steps_total=50, sec_per_it=20.0, stage_seconds=done, peak_memory={"0": 3 << 30, "1": 3 << 30},
                 started_at=NOW - 3000, ended_at=NOW - 1900, psnr_first=31.46, psnr_last=18.2)  # fmt: skip
        conn.execute("UPDATE jobs SET state = 'succeeded', started_at = ?, finished_at = ?, output_path = ? "
                     "WHERE id = ?", (NOW - 3000, NOW - 1900, f"/videos/job{job}.mp4", job))  # fmt: skip
        job = ids["failed"]
        for number, (cls, rank) in enumerate((("oom", 1), ("engine_error", 0)), start=1):
            _attempt(conn, job, number, home.attempt_dir(job, number), state="failed", exit_code=1,
                     failure_class=cls, failing_rank=rank, failure_message=f"{cls} on rank {rank}",
                     stage="denoise", step=3, steps_total=50, started_at=NOW - 2500 + number * 100,
                     ended_at=NOW - 2450 + number * 100)  # fmt: skip
        conn.execute("UPDATE jobs SET state = 'failed', failure_class = 'engine_error', started_at = ?, "
                     "finished_at = ? WHERE id = ?", (NOW - 2400, NOW - 2250, job))  # fmt: skip
        conn.execute("UPDATE jobs SET state = 'cancelled', state_reason = 'cancelled before it started', "
                     "finished_at = ? WHERE id = ?", (NOW - 2000, ids["cancelled"]))  # fmt: skip
        job = ids["running"]
        folder = home.attempt_dir(job, 1)
        attempt = _attempt(conn, job, 1, folder, stage="denoise", step=12, steps_total=50, sec_per_it=20.0,
                           eta_seconds=760.0, started_at=NOW - 300)  # fmt: skip
        conn.execute("UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?", (NOW - 300, job))
        job = ids["interrupted"]
        _attempt(conn, job, 1, home.attempt_dir(job, 1), stage="denoise", step=30, steps_total=50, started_at=NOW - 900)
        conn.execute("UPDATE jobs SET state = 'interrupted', state_reason = 'worker stopped; the render continues' "
                     "WHERE id = ?", (job,))  # fmt: skip
        conn.execute("UPDATE jobs SET held = 1, state_reason = 'held by user' WHERE id = ?", (ids["held"],))
        me = psutil.Process(os.getpid())
        pool = {"device": "cpu", "slots": ["cpu0", "cpu1"], "busy": {"cpu0": attempt, "cpu1": attempt}}
        conn.execute("INSERT INTO workers (host, pid, pid_started, pool, started_at, heartbeat_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (socket.gethostname(), me.pid, me.create_time(), json.dumps(pool), NOW - 4000, NOW))  # fmt: skip
    conn.close()
    write_running_files(home.attempt_dir(ids["running"], 1))
    return World(home, ids, frames, ckpt)


def stop_workers(home: Home) -> None:
    """Mark every worker stopped: the TUI then has no worker to rely on."""
    conn = connect(home.db)
    with write_tx(conn):
        conn.execute("UPDATE workers SET state = 'stopped', stopped_at = ?", (NOW,))
    conn.close()


def screen_text(app: object) -> str:
    """What the running app shows, as plain text (the SVG export's content without its styling)."""
    import io

    from rich.console import Console

    width, height = app.size  # type: ignore[attr-defined]
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False,
                      force_terminal=True, color_system="truecolor")  # fmt: skip
    screen = app.screen  # type: ignore[attr-defined]
    console.print(screen._compositor.render_update(full=True, screen_stack=app._background_screens))  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def screen_bytes(app: object) -> str:
    """What the running app would write to the terminal for a full redraw, escape sequences and all."""
    screen = app.screen  # type: ignore[attr-defined]
    update = screen._compositor.render_update(full=True, screen_stack=app._background_screens)  # type: ignore[attr-defined]
    return update.render_segments(app.console)  # type: ignore[attr-defined]


def foreign_controls(raw: str) -> list[str]:
    """Escape sequences and control characters in terminal output that Textual's own drawing does not make."""
    return re.findall(r"\x1b[^\[]|\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x09\x0b-\x1a\x1c-\x1f\x7f-\x9f]",
                      _TEXTUAL_SEQUENCES.sub("", raw))  # fmt: skip


class NoNvml:
    """A GpuSource for a machine with no NVIDIA driver, as NvmlSource reports it."""

    def devices(self) -> list:
        from flf2v_tui.gpus import GpuUnavailable

        raise GpuUnavailable("NVML is not available (NVML Shared Library Not Found); no NVIDIA driver here")


async def settle(pilot, until, timeout: float = 30.0, what: str = "the condition") -> None:
    """Let the app run until `until()` holds (the TUI reads in threads, so results land a little later)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def footer_ready(app: object) -> bool:
    """The screen's footer shows its keys, in the layout of the terminal's width (compact under NARROW_BELOW):
    it draws them a moment after the screen, and again when it turns compact."""
    from flf2v_tui.screen_data.queue_view import NARROW_BELOW

    footers = app.screen.query("Footer")  # type: ignore[attr-defined]
    if not footers:
        return False
    footer = footers.first()
    return bool(footer.query("FooterKey")) and footer.compact == (app.size.width < NARROW_BELOW)  # type: ignore[attr-defined]


def two_fake_gpus(world: World) -> object:
    """A GpuSource of two H100s, one busy and one nearly idle (flf2v_tui.gpus.FakeSource reads them from a
    file): the snapshots' and the README captures' GPU panel."""
    from flf2v_tui.gpus import FakeSource

    gib = 1 << 30
    fake = world.home.root / "gpus.json"
    fake.write_text(json.dumps([
        {"index": i, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i}", "memory_total": 80 * gib,
         "memory_used": (61 - 50 * i) * gib, "utilization": 93 - 90 * i}
        for i in (0, 1)
    ]))  # fmt: skip
    return FakeSource(fake)
