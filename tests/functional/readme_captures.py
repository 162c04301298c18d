"""The README's text captures of the TUI, made by the app itself: the dashboard (wide and at 80×24), a running
job, a failed job at 80 columns, the submit form and the catalogue, on the tests' fixed world (tui_world,
failure_world, catalogue_world) at the frozen time, with two fake GPUs and pictures in half cells.

    .venv/bin/python -m tests.functional.readme_captures          # rewrite them in README.md
    .venv/bin/python -m tests.functional.readme_captures --check  # exit 1 when README.md differs

test_tui_readme.py runs the check, so a change of a screen shows up as a README to refresh."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from flf2v_tui.screen_data.form import prefill_from_job
from flf2v_tui.tui.app import Flf2vApp
from flf2v_tui.tui.screens.job import JobScreen
from flf2v_tui.tui.screens.submit import SubmitScreen
from flf2v_tui.tui.screens.videos import VideosScreen
from flf2v_tui.tui.widgets.jobtable import JobTable
from flf2v_tui.tui.widgets.logview import LogView
from storage.db import connect
from storage.jobs import get_job
from tests.functional.catalogue_world import add_psnr, add_videos
from tests.functional.failure_world import add_failures
from tests.functional.tui_world import (
    NOW,
    STATES,
    World,
    build_world,
    footer_ready,
    screen_text,
    settle,
    two_fake_gpus,
)

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN = "<!-- TUI captures: made by tests/functional/readme_captures.py; do not edit by hand -->"
END = "<!-- end of the TUI captures -->"
ROOT = Path(tempfile.gettempdir()) / "flf2v-readme"

Pilot = Any
Ready = Callable[[Flf2vApp, Pilot, World], Awaitable[None]]


@contextmanager
def fixed_world() -> Iterator[World]:
    """The world at one path, in UTC, with half-cell pictures, so that the captures never change; a lock makes
    a second run on the machine wait for the first."""
    with open(ROOT.with_name(f"{ROOT.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(ROOT, ignore_errors=True)
        saved = {k: os.environ.get(k) for k in ("TZ", "FLF2V_IMAGES")}
        os.environ.update(TZ="UTC", FLF2V_IMAGES="halfcell")
        time.tzset()
        try:
            world = build_world(ROOT / "home")
            world.ids.update({f"failed:{k}": v for k, v in add_failures(world).items()})
            add_psnr(world, add_videos(world))
            yield world
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            time.tzset()
            shutil.rmtree(ROOT, ignore_errors=True)


def _app(world: World) -> Flf2vApp:
    app = Flf2vApp(world.home, gpu_source=two_fake_gpus(world), clock=lambda: NOW, poll_s=60, log_interval_s=0.05)  # type: ignore[arg-type]
    app.animation_level = "none"
    return app


async def _dashboard(app: Flf2vApp, pilot: Pilot, world: World) -> None:
    await settle(pilot, lambda: app.screen.query_one(JobTable).row_count == len(STATES) + 3, what="the jobs")
    await settle(pilot, lambda: len(app.screen.query(".gpu-row")) == 2, what="the GPUs")
    app.screen._gpu_timer.pause()  # type: ignore[attr-defined]  # one sample each, however long the capture takes
    app.screen.query_one(JobTable).select(world.ids["queued"])


async def _job(app: Flf2vApp, pilot: Pilot, job_id: int) -> None:
    app.open_job(job_id)
    await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query("#view-all"), what="logs")
    screen = app.screen
    view = screen.query_one("#view-all", LogView)
    await settle(pilot, lambda: view.source.count > 0 and len(screen.query(".mem-row")) == 2
                 and screen.query_one("#attempts", DataTable).row_count == 1, what=f"job {job_id}")  # fmt: skip
    await settle(pilot, lambda: view.follow and view.scroll_y == view.max_scroll_y, what="the log at its end")


async def _running_job(app: Flf2vApp, pilot: Pilot, world: World) -> None:
    await _job(app, pilot, world.ids["running"])


async def _failed_job(app: Flf2vApp, pilot: Pilot, world: World) -> None:
    await _job(app, pilot, world.ids["failed:engine_error"])


async def _submit_form(app: Flf2vApp, pilot: Pilot, world: World) -> None:
    conn = connect(world.home.db)
    job = get_job(conn, world.ids["failed"])
    conn.close()
    app.open_submit(prefill_from_job(job))
    await settle(pilot, lambda: isinstance(app.screen, SubmitScreen) and bool(app.screen.title), what="the form")
    info = app.screen.query_one("#last_frame-info")
    await settle(pilot, lambda: "64×48" in str(info.render()), what="the frame sizes")


async def _catalogue(app: Flf2vApp, pilot: Pilot, world: World) -> None:
    app.open_videos()
    await settle(pilot, lambda: isinstance(app.screen, VideosScreen) and len(app.screen.videos) == 3,
                 what="the videos")  # fmt: skip
    app.screen.query_one("#videos", DataTable).move_cursor(row=1)
    await settle(pilot, lambda: "seed        42" in str(app.screen.query_one("#video-recipe").render()),
                 what="the selected recipe")  # fmt: skip
    sheet = app.screen.query_one("#video-sheet")
    await settle(pilot, lambda: sheet.image is not None, what="the contact sheet")  # type: ignore[attr-defined]


CAPTURES: tuple[tuple[str, tuple[int, int], Ready], ...] = (
    ("The dashboard:", (120, 24), _dashboard),
    ("At 80×24 it keeps why each job waits (NOTE) whole and cuts the prompt instead:", (80, 24), _dashboard),
    ("A running job:", (120, 42), _running_job),
    ("A failed job at 80 columns (its reason and advice wrap; the stage it failed in says so):", (80, 40),
     _failed_job),
    ("The submit form, filled from a job (`y` on a job, `r` on a video):", (120, 40), _submit_form),
    ("The catalogue:", (120, 30), _catalogue),
)  # fmt: skip


async def _capture(world: World, size: tuple[int, int], ready: Ready) -> str:
    app = _app(world)
    async with app.run_test(size=size) as pilot:
        await ready(app, pilot, world)
        await settle(pilot, lambda: footer_ready(app), what="the footer's keys")
        # The footer redraws its keys whenever the bindings change (focus moving in): take the screen once it
        # has stayed the same for a while, its footer drawn.
        shown = ""
        for _ in range(100):
            await pilot.pause(0.3)
            now = screen_text(app)
            if now == shown and "palette" in now.splitlines()[-1]:
                return now
            shown = now
        raise AssertionError(f"the screen did not settle:\n{shown}")


def captures() -> str:
    """The README's block: each capture under its caption, indented as a code block."""
    parts = [BEGIN, ""]
    with fixed_world() as world:
        for caption, size, ready in CAPTURES:
            text = asyncio.run(_capture(world, size, ready))
            body = "\n".join(f"    {line}".rstrip() for line in text.rstrip("\n").splitlines())
            parts += [caption, "", body, ""]
    return "\n".join([*parts, END])


def with_captures(readme: str, block: str) -> str:
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + block + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's captures are not current")
    args = parser.parse_args(argv)
    readme = README.read_text()
    fresh = with_captures(readme, captures())
    if args.check:
        if fresh != readme:
            print("README.md's TUI captures are stale: run python -m tests.functional.readme_captures", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
