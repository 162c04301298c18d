"""The job view through Pilot: parameters, attempts, stages, progress bar, memory, PSNR, failed and
interrupted jobs."""

from __future__ import annotations

import asyncio
import re
import time

from textual.widgets import TabbedContent

import engine.telemetry
from flf2v_tui.screen_data.telemetry import JobTelemetry
from tests.functional.job_view_helpers import open_job_view
from tests.functional.tui_world import screen_text, settle


def test_job_view_shows_parameters_stages_progress_and_memory(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await open_job_view(app, pilot, world.ids["running"])
            await settle(pilot, lambda: "r1 " in screen_text(app), what="memory rows")
            text = screen_text(app)
            assert "prompt  a small blue bird" in text and "sample_steps       50" in text
            assert "load 40.0s ▸ encode 3.5s ▸ denoise 255.0s… ▸ decode — ▸ save —" in text
            assert "step 12/50 · 20.00 s/it · ETA 12m40s" in text
            assert "r0 1.3 GiB (top sample 1.3 GiB)" in text and "r1 1.4 GiB (top sample 1.4 GiB)" in text
            sparks = [spark for _, spark in screen._memory_rows.values()]
            assert {spark.ceiling for spark in sparks} == {float((900 + 40 * 12 + 100) << 20)}  # one scale: r1's peak
            assert screen.query_one("#steps").percentage == 12 / 50
            # The newest latent preview the engine wrote, drawn as a picture.
            await settle(pilot, lambda: "latent preview, step 10" in screen_text(app), what="the preview")
            picture = screen.query_one("#preview-image")
            assert picture.image.size == (48, 16)  # the preview strip (previews/step-0010.png), decoded
            assert picture.size.height > 0 and picture.size.width > 0

    asyncio.run(scenario())


def test_a_job_without_previews_says_so(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            await open_job_view(app, pilot, world.ids["interrupted"])
            await settle(pilot, lambda: "latent preview: none yet" in screen_text(app), what="the preview note")
            assert app.screen.query_one("#preview-image").image is None

    asyncio.run(scenario())


def attempt_rows_shown(app) -> list[list[str]]:
    """The attempts table's rows as drawn (#1, #2, …), split into their cells' words."""
    return [line.split() for line in screen_text(app).splitlines() if re.match(r"\s*#\d+ ", line)]


def test_attempt_history_names_failure_class_and_rank(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            await open_job_view(app, pilot, world.ids["failed"])
            await settle(pilot, lambda: "engine_error" in screen_text(app), what="the attempts")
            rows = attempt_rows_shown(app)
            assert [(r[0], r[1], r[-3], r[-2]) for r in rows] == [("#1", "failed", "1", "oom"),
                                                                 ("#2", "failed", "0", "engine_error")]  # fmt: skip

    asyncio.run(scenario())


def test_quitting_while_the_job_view_still_opens_leaves_no_error(world, make_app):
    """Quitting a few frames after opening a job, while its log tabs still mount, used to raise from Textual's
    tab bar ("No Tab with id"), its tabs already taken down; each frame count here is one chance to land there."""

    async def scenario(frames: int):
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            app.open_job(world.ids["failed"])
            for _ in range(frames):
                await pilot.pause(0.01)

    for frames in range(1, 9):
        asyncio.run(scenario(frames))


class _SlowFile:
    """A file whose reads take 20 ms, as on a busy disk: long enough for the next poll's thread to arrive."""

    def __init__(self, fh) -> None:
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()

    def seek(self, offset: int) -> int:
        return self.fh.seek(offset)

    def read(self, size: int) -> bytes:
        data = self.fh.read(size)
        time.sleep(0.02)
        return data


def test_polls_that_overlap_apply_each_event_once(world, make_app, monkeypatch):
    """A poll replaces the reading thread while the old one runs on; the events they both find count once
    (they counted twice, and the stage timeline said "load 80.0s", when two read at the same offset)."""
    monkeypatch.setattr(engine.telemetry, "open", lambda path, mode: _SlowFile(open(path, mode)), raising=False)  # noqa: SIM115

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await open_job_view(app, pilot, world.ids["running"])
            await settle(pilot, lambda: screen._telemetry is not None, what="the telemetry")
            for _ in range(3):
                screen._telemetry = JobTelemetry(screen._attempt_dir)  # one, read afresh by every poll below
                for _ in range(4):
                    screen.poll()
                    await asyncio.sleep(0.005)  # the thread starts, and is still reading when the next comes
                await settle(pilot, lambda: not [w for w in app.workers if w.group == "job" and not w.is_finished],
                             what="the readings")  # fmt: skip
                telemetry = screen._telemetry
                assert [len(telemetry.memory[r]) for r in (0, 1)] == [12, 12]
                assert telemetry.tracker.step == 12 and telemetry.tracker.stage_seconds["load_transformer"] == 40.0
                assert "load 40.0s ▸ encode 3.5s ▸ denoise" in screen_text(app)

    asyncio.run(scenario())


def test_only_a_render_under_way_draws_a_live_bar_and_an_eta(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            for state in ("held", "queued", "cancelled"):  # nothing started: no bar at all (it would say --%)
                screen = await open_job_view(app, pilot, world.ids[state])
                await settle(pilot, lambda s=screen: "step 0/?" in str(s.query_one("#step-text").render()),
                             what=f"the {state} job's steps")  # fmt: skip
                assert not screen.query_one("#steps").display, state
                await pilot.press("escape")
                await settle(pilot, lambda s=screen: app.screen is not s, what="the dashboard")
            screen = await open_job_view(app, pilot, world.ids["running"])
            await settle(pilot, lambda: "ETA 12m40s" in screen_text(app), what="the running job's ETA")
            assert screen.query_one("#steps").display

    asyncio.run(scenario())


def test_a_failed_job_shows_its_whole_reason_and_the_stage_it_failed_in(world, make_app):
    from tests.functional.failure_world import add_failures

    job_id = add_failures(world)["engine_error"]

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await open_job_view(app, pilot, job_id)
            await settle(pilot, lambda: "decode" in screen_text(app) and "top sample" in screen_text(app),
                         what="the stages and the memory")  # fmt: skip
            reason = " ".join(screen.detail.job["state_reason"].split())
            text = " ".join(screen_text(app).split())
            assert reason in text, (reason, text)  # whole, advice and all, on as many lines as it takes
            assert "denoise 300.0s ▸ decode 2.0s failed ▸ save —" in text
            assert "HIGH-WATER" in text and "top sample 63.0 GiB" in text  # the two peaks say what they are

    asyncio.run(scenario())


def test_an_interrupted_job_says_its_worker_died_and_shows_no_eta(world, make_app):
    from tests.functional.failure_world import add_failures

    job_id = add_failures(world)["interrupted"]

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            await open_job_view(app, pilot, job_id)
            # The stages and the attempts table are drawn from separate reads: wait for both.
            await settle(pilot, lambda: "denoise" in screen_text(app) and attempt_rows_shown(app),
                         what="stages and attempts")  # fmt: skip
            text = screen_text(app)
            assert "interrupted — its worker died; a worker that starts re-attaches the render" in text
            assert "denoise 180.0s interrupted" in text and "ETA" not in text and "…" not in text
            assert attempt_rows_shown(app)[0][:2] == ["#1", "interrupted"]

    asyncio.run(scenario())


def test_a_job_that_failed_before_its_ranks_wrote_opens_on_torchruns_output(world, make_app):
    from tests.functional.failure_world import add_launch_failure

    job_id = add_launch_failure(world)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await open_job_view(app, pilot, job_id)
            tabs = screen.query_one(TabbedContent)
            await settle(pilot, lambda: tabs.active == "log-torchrun", what="the torchrun tab")
            await settle(pilot, lambda: "EADDRINUSE" in screen_text(app), what="torchrun's output")
            await pilot.press("escape")
            screen = await open_job_view(app, pilot, world.ids["running"])  # ranks that wrote: all ranks, as before
            await settle(pilot, lambda: screen.query_one(TabbedContent).active == "log-all", what="all ranks")

    asyncio.run(scenario())


def test_a_finished_render_shows_how_close_its_end_frames_came_to_the_inputs(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            await open_job_view(app, pilot, world.ids["succeeded"])
            said = "psnr    first 31.5 dB, last 18.2 dB (low) (end frames vs inputs)"
            await settle(pilot, lambda: said in screen_text(app), what="the PSNR")
            await pilot.press("escape")
            screen = await open_job_view(app, pilot, world.ids["running"])  # not known before the render ends: not said
            await settle(pilot, lambda: "step 12/50" in screen_text(app), what="the running job")
            assert "psnr" not in screen_text(app) and screen.query_one("#fidelity").has_class("hidden")

    asyncio.run(scenario())
