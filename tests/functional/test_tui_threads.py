"""The TUI reads its files in threads: opening a job (its logs, its latent preview) and browsing the catalogue
(contact sheets) never open or stat a file of FLF2V_HOME on the UI thread, where a slow or huge file would
freeze every screen."""

from __future__ import annotations

import asyncio
import builtins
import io
import os
import threading

import pytest

from flf2v_tui.tui.screens.job import JobScreen
from flf2v_tui.tui.screens.videos import VideosScreen
from flf2v_tui.tui.widgets.jobtable import JobTable
from flf2v_tui.tui.widgets.logview import LogView
from tests.functional.catalogue_world import add_videos
from tests.functional.tui_world import STATES, settle


def test_job_view_and_catalogue_touch_no_file_on_the_ui_thread(world, make_app, monkeypatch):
    add_videos(world)
    root = str(world.home.root)
    touched: list[tuple[str, str]] = []

    def watch(name: str, fn):
        def watched(path, *args, **kw):
            if threading.current_thread() is threading.main_thread() and str(path).startswith(root):
                touched.append((name, str(path)))
            return fn(path, *args, **kw)

        return watched

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            await settle(pilot, lambda: app.screen.query_one(JobTable).row_count == len(STATES), what="the jobs")
            # From here on, every open and stat of the home's files is watched (Path.open and PIL go through
            # io.open or builtins.open; Path.is_file and os.path.getsize through os.stat).
            monkeypatch.setattr(builtins, "open", watch("open", builtins.open))
            monkeypatch.setattr(io, "open", watch("open", io.open))
            monkeypatch.setattr(os, "stat", watch("stat", os.stat))
            app.open_job(world.ids["running"])
            await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query("#view-all"),
                         what="the logs")  # fmt: skip
            merged = app.screen.query_one("#view-all", LogView)
            picture = app.screen.query_one("#preview-image")
            await settle(pilot, lambda: merged.source.count == 26 and picture.image is not None, what="logs, preview")
            assert picture.image.size == (48, 16)  # the engine's preview strip, decoded in the reading thread
            await pilot.press("escape")
            app.open_videos()
            await settle(pilot, lambda: isinstance(app.screen, VideosScreen) and app.screen.videos, what="the videos")
            sheet = app.screen.query_one("#video-sheet")
            await settle(pilot, lambda: sheet.image is not None, what="the contact sheet")
            await pilot.pause(0.2)
            monkeypatch.undo()
        assert touched == [], touched

    asyncio.run(scenario())


def test_a_result_for_a_closing_app_is_dropped_but_a_failing_callback_is_not_hidden():
    from textual import work
    from textual.app import App
    from textual.worker import WorkerFailed

    from flf2v_tui.tui.db import deliver

    class Probe(App[None]):
        @work(thread=True)
        def hand_over(self, fn) -> None:
            deliver(self, fn)

    async def scenario() -> None:
        closed = Probe()
        async with closed.run_test():
            pass
        deliver(closed, lambda: None)  # after the app ended: dropped, nothing raised

        app = Probe()

        def bug() -> None:
            raise RuntimeError("a bug in the UI callback")

        with pytest.raises(WorkerFailed, match="a bug in the UI callback"):  # the app ends, saying why
            async with app.run_test() as pilot:
                app.hand_over(bug)
                await pilot.pause(0.5)

    asyncio.run(scenario())
