"""The dashboard through Textual's Pilot against a real SQLite queue: what it shows, and what its keys do."""

from __future__ import annotations

import asyncio
import sqlite3

from flf2v_tui.tui.screens.dashboard import DashboardScreen
from flf2v_tui.tui.widgets.jobtable import JobTable
from storage.attempts import write_progress
from storage.db import connect
from storage.jobs import get_job
from storage.workers import is_paused
from tests.functional.tui_world import STATES, screen_text, settle, stop_workers


def _table(app) -> JobTable:
    return app.screen.query_one(JobTable)


def _db(world):
    return connect(world.home.db)


def test_dashboard_shows_every_state_and_the_queue(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            await settle(pilot, lambda: _table(app).row_count == len(STATES), what="the jobs")
            assert set(_table(app).states.values()) == set(STATES)
            await settle(pilot, lambda: "12/50" in screen_text(app), what="the table drawn")
            text = screen_text(app)
            for state in STATES:
                assert state in text
            assert "1 worker(s), 2 slot(s)" in text and "queue ETA" in text
            assert "██▍······· 12/50" in text  # the running job's step bar
            await settle(pilot, lambda: " ram " in screen_text(app), what="the GPU panel")
            panel = screen_text(app).split("No NVIDIA GPU here")[1]
            assert " cpu " in panel and " ram " in panel and "GiB" in panel

    asyncio.run(scenario())


def test_progress_updates_live_and_keeps_the_cursor(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            table = _table(app)
            await settle(pilot, lambda: table.row_count == len(STATES), what="the jobs")
            table.select(world.ids["queued"])
            conn = _db(world)
            attempt = conn.execute("SELECT current_attempt_id FROM jobs WHERE id = ?", (world.ids["running"],))
            write_progress(conn, attempt.fetchone()[0], {"step": 37, "steps_total": 50, "eta_seconds": 260.0})
            conn.close()
            row = str(world.ids["running"])
            await settle(pilot, lambda: "37/50" in str(table.get_cell(row, "step")), what="step 37")
            assert str(table.get_cell(row, "eta")).strip() == "4m20s"
            assert table.selected_id == world.ids["queued"]

    asyncio.run(scenario())


def test_cancel_retry_hold_top_and_pause_act_on_the_database(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            table = _table(app)
            await settle(pilot, lambda: table.row_count == len(STATES), what="the jobs")
            conn = _db(world)

            def state(name: str) -> dict:
                return get_job(conn, world.ids[name])

            table.select(world.ids["queued"])
            await pilot.press("c")
            await settle(pilot, lambda: not isinstance(app.screen, DashboardScreen), what="the confirmation")
            await pilot.press("n")  # no: nothing happens
            await pilot.pause(0.3)
            assert state("queued")["state"] == "queued"
            await pilot.press("c", "y")
            await settle(pilot, lambda: state("queued")["state"] == "cancelled", what="the cancel")

            table.select(world.ids["failed"])
            await pilot.press("r")
            await settle(pilot, lambda: state("failed")["state"] == "queued", what="the retry")

            table.select(world.ids["held"])
            await pilot.press("h")
            await settle(pilot, lambda: not state("held")["held"], what="the release")

            await settle(pilot, lambda: table.states.get(world.ids["held"]) == "queued", what="a fresh snapshot")
            table.select(world.ids["held"])
            await pilot.press("t")
            await settle(pilot, lambda: state("held")["seq"] < state("failed")["seq"], what="the move to the top")

            await pilot.press("p")
            await settle(pilot, lambda: is_paused(conn), what="the pause")
            await settle(pilot, lambda: "PAUSED" in screen_text(app), what="the paused status")
            await pilot.press("p")
            await settle(pilot, lambda: not is_paused(conn), what="the resume")
            conn.close()

    asyncio.run(scenario())


def test_filter_by_label_and_state(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            table = _table(app)
            await settle(pilot, lambda: table.row_count == len(STATES), what="the jobs")
            await pilot.press("slash", *"label:sweep", "enter")
            await settle(pilot, lambda: table.row_count == 2, what="the label filter")
            assert set(table.jobs) == {world.ids["queued"], world.ids["held"]}
            await pilot.press("slash", "ctrl+u", *"failed", "enter")
            await settle(pilot, lambda: set(table.jobs) == {world.ids["failed"]}, what="the state filter")
            await pilot.press("slash", "ctrl+u", *"state:bogus", "enter")
            await settle(pilot, lambda: "unknown state 'bogus'" in screen_text(app), what="the filter's complaint")
            await pilot.press("escape")
            await settle(pilot, lambda: table.row_count == len(STATES), what="the cleared filter")

    asyncio.run(scenario())


def test_without_a_worker_it_says_so(world, make_app):
    stop_workers(world.home)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            await settle(pilot, lambda: "no worker running: nothing will start until" in screen_text(app),
                         what="the status")  # fmt: skip
            assert "read-only" not in screen_text(app)  # its keys still change the queue
            assert "queue ETA" not in screen_text(app)  # nothing runs it, so no estimate

    asyncio.run(scenario())


def test_the_command_palette_lists_every_key(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            await settle(pilot, lambda: _table(app).row_count == len(STATES), what="the jobs")
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for key in ("Open", "Cancel", "Retry", "Hold/release", "To top", "Pause/resume", "New job", "Filter",
                        "Quit"):  # fmt: skip
                assert any(t.startswith(key + " (") for t in titles), (key, titles)
            await pilot.press("ctrl+p", *"new job", "enter")
            await settle(pilot, lambda: type(app.screen).__name__ == "SubmitScreen", what="the palette's command")

    asyncio.run(scenario())


def test_a_database_that_cannot_be_read_is_said_and_survived(world, make_app):
    async def scenario():
        app = make_app(world)
        real_read, broken = app.db.read, {"on": False}

        def read(fn):
            if broken["on"]:
                raise sqlite3.OperationalError("disk I/O error")
            return real_read(fn)

        app.db.read = read
        async with app.run_test(size=(140, 36)) as pilot:
            await settle(pilot, lambda: _table(app).row_count == len(STATES), what="the jobs")
            broken["on"] = True
            await settle(pilot, lambda: "cannot read the queue" in screen_text(app), what="the dashboard's word")
            app.open_job(world.ids["running"])
            await settle(pilot, lambda: "cannot read the queue (disk I/O error)" in screen_text(app), what="the job's")
            await pilot.press("escape", "v")
            await settle(pilot, lambda: "cannot read the catalogue" in screen_text(app), what="the catalogue's")
            broken["on"] = False
            await settle(pilot, lambda: "video(s)" in screen_text(app), what="the catalogue back")
            await pilot.press("escape")
            await settle(pilot, lambda: "1 worker(s)" in screen_text(app), what="the dashboard back")
            assert app.is_running and app._exception is None

    asyncio.run(scenario())


def test_a_new_job_not_among_the_rows_listed_is_given_up_on_and_said(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            await settle(pilot, lambda: _table(app).row_count == len(STATES), what="the jobs")
            dashboard = app.screen
            dashboard.select_job(9999)  # as after a submit, for a job beyond the rows the table keeps
            await settle(pilot, lambda: dashboard._want_selected is None, what="the selection given up")
            assert any("job 9999 is queued, but not among the rows listed" in n.message for n in app.notes_seen)
            dashboard.select_job(world.ids["held"])
            await settle(pilot, lambda: _table(app).selected_id == world.ids["held"], what="a listed job selected")

    asyncio.run(scenario())


def test_e_edits_the_selected_queued_job_and_says_why_not_for_a_started_one(world, make_app):
    from flf2v_tui.tui.screens.submit import SubmitScreen

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 36)) as pilot:
            await settle(pilot, lambda: _table(app).row_count == len(STATES), what="the jobs")
            dashboard = app.screen
            _table(app).select(world.ids["running"])
            await pilot.press("e")
            said = lambda: [n.message for n in app.notes_seen]  # noqa: E731
            await settle(pilot, lambda: any("only a queued job can be edited" in m for m in said()), what="why not")
            assert app.screen is dashboard
            _table(app).select(world.ids["queued"])
            await pilot.press("e")
            await settle(pilot, lambda: isinstance(app.screen, SubmitScreen) and bool(app.screen.title), what="form")
            queued = world.ids["queued"]
            assert app.screen.edit_job == queued and app.screen.title.endswith(f"edit job {queued}")
            assert app.screen.query_one("#prompt").text == "waves roll over black volcanic sand"
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is dashboard, what="the dashboard again")

    asyncio.run(scenario())
