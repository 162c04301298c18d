"""Escape sequences and markup in what people and engines write (prompts, labels, state reasons, failure
classes, tags, notes) never reach the terminal: not in the TUI's screens, not in `flf2v ls/show/videos`."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from flf2v_tui.catalogue.record import save_user_fields
from flf2v_tui.tui.screens.job import JobScreen
from flf2v_tui.tui.screens.videos import VideosScreen
from flf2v_tui.tui.widgets.jobtable import JobTable
from storage.db import connect, write_tx
from tests.functional.catalogue_world import add_videos
from tests.functional.queue_helpers import flf2v
from tests.functional.tui_world import HOSTILE, MARKUP, STATES, foreign_controls, screen_bytes, screen_text, settle

SIZE = (200, 50)
# What must never show: the payloads of the title and clipboard sequences.
PAYLOADS = ("pwned title", "ZWNobyBwd25lZA", "evil.example/\x1b")


@pytest.fixture
def hostile(world) -> dict[str, int]:
    """The failed job and a catalogued video, with hostile text in every field a person or an engine fills."""
    videos = add_videos(world)
    conn = connect(world.home.db)
    job = world.ids["failed"]
    with write_tx(conn):
        conn.execute("UPDATE jobs SET prompt = ?, neg_prompt = ?, labels = ?, state_reason = ? WHERE id = ?",
                     (f"boat {HOSTILE} {MARKUP}", HOSTILE, json.dumps([f"lab{HOSTILE}"]),
                      f"Traceback (most recent call last):\n  {HOSTILE}\nRuntimeError: {MARKUP}", job))  # fmt: skip
        conn.execute("UPDATE attempts SET failure_class = ?, failure_message = ? WHERE job_id = ?",
                     (f"cls{HOSTILE}", f"{HOSTILE}\n{MARKUP}", job))  # fmt: skip
        conn.execute("UPDATE videos SET prompt = ? WHERE id = ?", (f"heron {HOSTILE} {MARKUP}", videos[-1]))
    save_user_fields(conn, videos[-1], tags=[f"tag{HOSTILE}", MARKUP], notes=f"note {HOSTILE}\n{MARKUP}")
    conn.close()
    return {"job": job, "video": videos[-1]}


def _check_screen(app, where: str) -> str:
    raw = screen_bytes(app)
    assert foreign_controls(raw) == [], (where, foreign_controls(raw))
    text = screen_text(app)
    assert not any(p in raw for p in PAYLOADS), where
    return text


def test_the_tui_shows_hostile_text_inert_and_literally(world, make_app, hostile):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            # The dashboard: the prompt and label columns.
            table = app.screen.query_one(JobTable)
            await settle(pilot, lambda: table.row_count == len(STATES), what="the jobs")
            table.select(hostile["job"])
            await settle(pilot, lambda: "boat cursor moved" in screen_text(app), what="the hostile row")
            text = _check_screen(app, "dashboard")
            assert "labcursor moved" in text

            # The job view: the title (state reason), the parameters (prompt) and the attempts (failure class).
            app.open_job(hostile["job"])
            await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail is not None,
                         what="the job")  # fmt: skip
            logs_up = lambda: app.screen.query("Tab#--content-tab-log-all")  # noqa: E731
            await settle(pilot, lambda: "clscursor" in screen_text(app) and logs_up(), what="the attempts and logs")
            text = _check_screen(app, "job view")
            assert "Traceback (most recent call last): cursor moved" in text  # the title stays on one line
            assert "prompt  boat cursor moved" in text and "31mc1" not in text  # a C1 CSI goes with its parameters
            assert "[link=https://evil.example/]markup link[/link] [/x]" in text  # markup shown, not read
            await pilot.press("escape")

            # The catalogue: the list (prompt, tags) and the recipe beside it (prompt, tags, notes).
            app.open_videos()
            await settle(pilot, lambda: isinstance(app.screen, VideosScreen) and hostile["video"] in app.screen.videos,
                         what="the videos")  # fmt: skip
            await settle(pilot, lambda: "note cursor moved" in screen_text(app), what="the hostile recipe")
            text = _check_screen(app, "catalogue")
            assert "tagcursor moved" in text and "heron cursor moved" in text

    asyncio.run(scenario())


def test_the_cli_prints_hostile_text_inert(world, hostile):
    home = world.home.root
    outputs = {
        "ls": flf2v(home, "ls", "--all"),
        "show": flf2v(home, "show", str(hostile["job"])),
        "videos ls": flf2v(home, "videos", "ls"),
        "videos show": flf2v(home, "videos", "show", str(hostile["video"])),
    }
    for name, proc in outputs.items():
        assert proc.returncode in (0, 1), (name, proc.stderr)  # show exits 1 for a failed job
        out = proc.stdout
        # Not a terminal, so no colour either: not one control character but newlines.
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", out), (name, out)
        assert "cursor moved" in out and "31mc1" not in out and not any(p in out for p in PAYLOADS), (name, out)
    ls_row = next(line for line in outputs["ls"].stdout.splitlines() if line.startswith(f"{hostile['job']} "))
    assert "labcursor moved" in ls_row  # the label stays in its row: a cell never spans lines
