"""Snapshots (pytest-textual-snapshot) of the dashboard, the job view (running, failed, out of memory and
interrupted), the submit form and the catalogue, and of the dashboard and a job view at 80 columns, on fixed
data at a frozen time with two fake GPUs. After a deliberate change of the screens, refresh them with
`.venv/bin/python -m pytest tests/functional/test_tui_snapshots.py --snapshot-update` and look at the SVGs."""

from __future__ import annotations

from textual.widgets import DataTable, Input, TextArea

from flf2v_tui.screen_data.form import prefill_from_job
from flf2v_tui.tui.images import load_picture
from flf2v_tui.tui.screens.job import JobScreen
from flf2v_tui.tui.screens.submit import SubmitScreen
from flf2v_tui.tui.screens.videos import VideosScreen
from flf2v_tui.tui.widgets.jobtable import JobTable
from flf2v_tui.tui.widgets.logview import LogView
from storage.db import connect
from storage.jobs import get_job
from tests.functional.catalogue_world import add_psnr, add_videos
from tests.functional.failure_world import add_failures
from tests.functional.tui_world import STATES, footer_ready, settle, two_fake_gpus

SIZE = (140, 40)
NARROW = 80  # the 80-column terminal: its own layout (queue_view.NARROW_COLUMNS, the job view's -narrow rules)


def _app(world, make_app):
    return make_app(world, gpu_source=two_fake_gpus(world), poll_s=60)


def _still_cursors(app) -> None:
    for widget in app.screen.query("Input, TextArea"):
        if isinstance(widget, Input | TextArea):
            widget.cursor_blink = False


async def _dashboard_ready(app, pilot, selected: int) -> None:
    """The dashboard with every job, both GPUs and the footer's keys drawn, the cursor on `selected`."""
    await settle(pilot, lambda: app.screen.query_one(JobTable).row_count == len(STATES), what="the jobs")
    await settle(pilot, lambda: len(app.screen.query(".gpu-row")) == 2, what="the GPUs")
    app.screen.query_one(JobTable).select(selected)
    await settle(pilot, lambda: footer_ready(app), what="the footer's keys")


def test_dashboard_snapshot(snapshot_world, make_app, snap_compare):
    app = _app(snapshot_world, make_app)

    async def ready(pilot):
        await _dashboard_ready(app, pilot, snapshot_world.ids["running"])

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_dashboard_80x24_snapshot(snapshot_world, make_app, snap_compare):
    """At 80×24: why each job waits or how it ended (NOTE) comes whole; the prompt gets what is left."""
    app = _app(snapshot_world, make_app)

    async def ready(pilot):
        await _dashboard_ready(app, pilot, snapshot_world.ids["queued"])

    assert snap_compare(app, terminal_size=(NARROW, 24), run_before=ready)


def test_job_view_snapshot(snapshot_world, make_app, snap_compare):
    app = _app(snapshot_world, make_app)

    async def ready(pilot):
        app.open_job(snapshot_world.ids["running"])
        await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query("#view-all"), what="logs")
        view = app.screen.query_one("#view-all", LogView)
        attempts = app.screen.query_one("#attempts", DataTable)
        await settle(pilot, lambda: view.source.count == 26 and len(app.screen.query(".mem-row")) == 2
                     and attempts.row_count == 1, what="the job")  # fmt: skip
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


async def _open_job_view(app, pilot, job_id: int, attempts: int, log_lines: int, wide_lines: bool) -> None:
    """The job view once it shows every attempt, both ranks' memory and the whole merged log, at its end.
    `wide_lines`: the log's tail has lines wider than the view, so a horizontal scroll bar takes a row."""
    app.open_job(job_id)
    await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.query("#view-all"), what="logs")
    view = app.screen.query_one("#view-all", LogView)
    table = app.screen.query_one("#attempts", DataTable)
    await settle(pilot, lambda: view.source.count == log_lines and len(app.screen.query(".mem-row")) == 2
                 and table.row_count == attempts, what=f"job {job_id}")  # fmt: skip

    def at_end() -> bool:
        return view.follow and view.scroll_y == view.max_scroll_y and view.show_horizontal_scrollbar == wide_lines

    await settle(pilot, at_end, what="the log at its end")
    await settle(pilot, lambda: footer_ready(app), what="the footer's keys")
    await pilot.pause()


def _log_lines(world, job_id: int, attempt: int) -> int:
    folder = world.home.attempt_dir(job_id, attempt)
    return sum(len((folder / f"rank{rank}.log").read_text().splitlines()) for rank in (0, 1))


def test_failed_job_snapshot(snapshot_world, make_app, snap_compare):
    """Rank 0 raised while decoding: failed, engine_error on rank 0, and its traceback at the log's end."""
    job = add_failures(snapshot_world)["engine_error"]
    app = _app(snapshot_world, make_app)
    lines = _log_lines(snapshot_world, job, 1)

    async def ready(pilot):
        await _open_job_view(app, pilot, job, 1, lines, wide_lines=True)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_failed_job_80_columns_snapshot(snapshot_world, make_app, snap_compare):
    """The failed job at 80 columns: its reason and advice wrap whole, the stage it failed in says so, the
    live panel keeps its width (the preview waits for a wider terminal)."""
    job = add_failures(snapshot_world)["engine_error"]
    app = _app(snapshot_world, make_app)
    lines = _log_lines(snapshot_world, job, 1)

    async def ready(pilot):
        await _open_job_view(app, pilot, job, 1, lines, wide_lines=True)

    assert snap_compare(app, terminal_size=(NARROW, 40), run_before=ready)


def test_oom_job_snapshot(snapshot_world, make_app, snap_compare):
    """Rank 1 ran out of CUDA memory twice (retried once on oom): failed, oom on rank 1 in both attempts."""
    job = add_failures(snapshot_world)["oom"]
    app = _app(snapshot_world, make_app)
    lines = _log_lines(snapshot_world, job, 2)

    async def ready(pilot):
        await _open_job_view(app, pilot, job, 2, lines, wide_lines=True)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_interrupted_job_snapshot(snapshot_world, make_app, snap_compare):
    """The worker that ran it died mid-denoise: the job is interrupted, its attempt still running."""
    job = add_failures(snapshot_world)["interrupted"]
    app = _app(snapshot_world, make_app)
    lines = _log_lines(snapshot_world, job, 1)

    async def ready(pilot):
        await _open_job_view(app, pilot, job, 1, lines, wide_lines=False)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_submit_form_snapshot(snapshot_world, make_app, snap_compare):
    app = _app(snapshot_world, make_app)
    conn = connect(snapshot_world.home.db)
    job = get_job(conn, snapshot_world.ids["failed"])
    conn.close()

    async def ready(pilot):
        app.open_submit(prefill_from_job(job))
        await settle(pilot, lambda: isinstance(app.screen, SubmitScreen) and app.screen.query("#form-buttons"),
                     what="the form")  # fmt: skip
        info = app.screen.query_one("#last_frame-info")
        await settle(pilot, lambda: "64×48" in str(info.render()), what="the frame sizes")
        _still_cursors(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_catalogue_snapshot(snapshot_world, make_app, snap_compare):
    ids = add_videos(snapshot_world)
    add_psnr(snapshot_world, ids)
    app = _app(snapshot_world, make_app)

    async def ready(pilot):
        app.open_videos()
        await settle(pilot, lambda: isinstance(app.screen, VideosScreen) and len(app.screen.videos) == len(ids),
                     what="the videos")  # fmt: skip
        screen = app.screen
        screen.query_one("#videos", DataTable).move_cursor(row=1)
        await settle(pilot, lambda: "seed        42" in str(screen.query_one("#video-recipe").render()),
                     what="the selected recipe")  # fmt: skip
        # The contact sheet is decoded in a thread: wait for the selection's own (not the first row's) to be set.
        expected = load_picture(screen.selected["files"]["sheet"]).tobytes()
        sheet = screen.query_one("#video-sheet")
        await settle(pilot, lambda: sheet.image is not None and sheet.image.tobytes() == expected,
                     what="the contact sheet")  # fmt: skip
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
