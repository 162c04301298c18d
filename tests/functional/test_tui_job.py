"""The job view through Pilot: parameters, attempts, stages, progress, memory, and the live log pane."""

from __future__ import annotations

import asyncio
import re
import shutil
import time

from textual.widgets import TabbedContent

import engine.telemetry
from flf2v_tui.screen_data.telemetry import JobTelemetry
from flf2v_tui.tui.screens.job import JobScreen
from flf2v_tui.tui.widgets.logpane import LogPane
from flf2v_tui.tui.widgets.logview import LogView
from tests.functional.tui_world import HOSTILE, NOW, log_line, screen_text, settle


async def _open(app, pilot, job_id: int) -> JobScreen:
    """The job view once it has read the job and, for a job with attempts, composed its log views."""
    app.open_job(job_id)
    await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail is not None, what="the job")
    screen = app.screen
    await settle(pilot, lambda: not screen.detail.attempts or screen.query("#view-all"), what="the log views")
    return screen


async def _show_tab(pilot, screen: JobScreen, tab: str) -> None:
    """Switch tabs as a click would; a TabbedContent still settling on its first tab may switch back, so the
    switch is repeated until it holds."""
    await settle(pilot, lambda: screen.query(f"Tab#--content-tab-{tab}"), what=f"the {tab} tab")
    tabs = screen.query_one(TabbedContent)

    def switched() -> bool:
        if tabs.active != tab:
            tabs.active = tab
            return False
        return True

    await settle(pilot, switched, what=f"the {tab} tab to stay active")


def _view(screen: JobScreen, tab: str = "view-all") -> LogView:
    return screen.query_one(f"#{tab}", LogView)


def test_job_view_shows_parameters_stages_progress_and_memory(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
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
            await _open(app, pilot, world.ids["interrupted"])
            await settle(pilot, lambda: "latent preview: none yet" in screen_text(app), what="the preview note")
            assert app.screen.query_one("#preview-image").image is None

    asyncio.run(scenario())


def test_attempt_history_names_failure_class_and_rank(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            await _open(app, pilot, world.ids["failed"])
            await settle(pilot, lambda: "engine_error" in screen_text(app), what="the attempts")
            rows = [line.split() for line in screen_text(app).splitlines() if re.match(r"\s*#[12] ", line)]
            assert [(r[0], r[1], r[-3], r[-2]) for r in rows] == [("#1", "failed", "1", "oom"),
                                                                 ("#2", "failed", "0", "engine_error")]  # fmt: skip

    asyncio.run(scenario())


def test_log_pane_merges_ranks_follows_and_pauses_when_scrolled_up(world, make_app):
    folder = world.attempt_dir("running")

    def append(rank: int, t: float, text: str) -> None:
        with open(folder / f"rank{rank}.log", "a") as fh:
            fh.write(log_line(t, text))

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 34)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
            view = _view(screen)
            await settle(pilot, lambda: view.source.count == 26, what="the merged logs")
            lines = view.source.lines
            assert [line[:4] for line in lines[:2]] == ["[r0]", "[r1]"]
            assert lines == sorted(lines, key=lambda x: x[5:])  # by time stamp, then rank

            append(1, NOW + 1.0, "late line from rank 1")
            append(0, NOW + 0.5, "earlier line from rank 0")
            await settle(pilot, lambda: view.source.count == 28, what="the appended lines")
            assert view.source.lines[-2:] == [
                "[r0] " + log_line(NOW + 0.5, "earlier line from rank 0").strip(),
                "[r1] " + log_line(NOW + 1.0, "late line from rank 1").strip(),
            ]
            await settle(pilot, lambda: "late line from rank 1" in screen_text(app), what="the new line drawn")
            assert view.follow and view.scroll_y == view.max_scroll_y

            view.focus()
            await pilot.press("pageup")
            await settle(pilot, lambda: not view.follow, what="follow to pause")
            top = view.scroll_y
            append(0, NOW + 2, "while scrolled up")
            await settle(pilot, lambda: view.source.count == 29, what="one more line")
            await settle(pilot, lambda: "paused: scrolled up" in screen_text(app), what="the paused status")
            assert view.scroll_y == top
            await pilot.press("end")
            await settle(pilot, lambda: view.follow and view.scroll_y == view.max_scroll_y, what="following again")

            await _show_tab(pilot, screen, "log-r1")
            rank1 = _view(screen, "view-r1")
            await settle(pilot, lambda: rank1.source.count == 14, what="rank 1's own log")
            await settle(pilot, lambda: "late line from rank 1" in screen_text(app), what="rank 1's tail")
            assert "[r0]" not in screen_text(app)

    asyncio.run(scenario())


def test_log_search_jumps_to_the_hit(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
            await _show_tab(pilot, screen, "log-r0")
            view = _view(screen, "view-r0")
            await settle(pilot, lambda: view.source.complete and view.source.count == 13, what="rank 0's index")
            await pilot.press("slash", *"sampling   3/50", "enter")
            await settle(pilot, lambda: view.match == 3, what="the hit")
            assert not view.follow
            screen.query_one(LogPane).search("sampling   2/50", backwards=True)
            await settle(pilot, lambda: view.match == 2, what="the hit above")
            # Stepping through the hits of a broader search from the search box, as its placeholder says.
            await pilot.press("slash", "ctrl+u", *"sampling", "enter")
            await settle(pilot, lambda: view.match == 3, what="the next hit")
            await pilot.press("shift+enter")
            await settle(pilot, lambda: view.match == 2, what="the previous hit (shift+enter)")
            await pilot.press("up")
            await settle(pilot, lambda: view.match == 1, what="the previous hit (up)")
            await pilot.press("down")
            await settle(pilot, lambda: view.match == 2, what="the next hit (down)")
            screen.query_one(LogPane).search("sampling   1/50", backwards=True)
            await settle(pilot, lambda: view.match == 1, what="a search by code")

    asyncio.run(scenario())


def test_escape_sequences_in_a_rank_log_are_inert(world, make_app):
    folder = world.attempt_dir("running")
    with open(folder / "rank1.log", "a") as fh:
        fh.write(log_line(NOW, HOSTILE))

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(180, 48)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
            await settle(pilot, lambda: "clipboard written" in screen_text(app), what="the hostile line")
            drawn = [
                seg.text
                for view in (_view(screen), )
                for y in range(view.size.height)
                for seg in view.render_line(y)
            ]  # fmt: skip
            text = "".join(drawn)
            assert "cursor moved" in text and "link text" in text and "end" in text
            assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), repr(text)
            assert "pwned title" not in text and "ZWNobyBwd25lZA" not in text

    asyncio.run(scenario())


def test_leaving_the_job_view_while_its_logs_settle_keeps_the_app(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            for _ in range(8):
                screen = await _open(app, pilot, world.ids["running"])
                await settle(pilot, lambda s=screen: s.query("Tab#--content-tab-log-all"), what="the log tabs")
                await pilot.press("escape")
                await settle(pilot, lambda s=screen: app.screen is not s, what="the dashboard again")
            await pilot.pause(0.3)
            assert app.is_running and app._exception is None

    asyncio.run(scenario())


def test_a_log_deleted_while_shown_says_so_and_search_keeps_the_app(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
            merged = _view(screen)
            await settle(pilot, lambda: merged.source.count == 26, what="the merged logs")  # read before they go
            await _show_tab(pilot, screen, "log-r0")
            view = _view(screen, "view-r0")
            await settle(pilot, lambda: view.source.complete and view.source.count == 13, what="rank 0's index")
            shutil.rmtree(world.attempt_dir("running"))  # `flf2v rm`, or a cleanup, while the log is on screen
            await pilot.press("slash", *"sampling", "enter")
            await settle(pilot, lambda: "the log is gone ·" in screen_text(app), what="the loss said")
            await pilot.press("escape", "n", "N")
            await _show_tab(pilot, screen, "log-all")
            await settle(pilot, lambda: "the log is gone (every rank's" in screen_text(app), what="the merged tab")
            await pilot.pause(0.3)
            assert app.is_running and app._exception is None

    asyncio.run(scenario())


def test_a_search_hit_stays_on_its_line_when_the_merged_view_lets_old_lines_go(world, make_app):
    folder = world.attempt_dir("running")

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
            view = _view(screen)
            await settle(pilot, lambda: view.source.count == 26, what="the merged logs")
            view.source.max_lines = 30  # so that a few more lines make it let the oldest go
            screen.query_one(LogPane).search("sampling  12/50")
            await settle(pilot, lambda: view.match is not None, what="the hit")
            hit = view.source.lines[view.match]
            assert "[r0]" in hit and "Sampling  12/50" in hit
            with open(folder / "rank0.log", "a") as fh:
                fh.writelines(log_line(NOW + i, f"later line {i}") for i in range(20))
            await settle(pilot, lambda: view.source.dropped > 0 and view._shown_dropped == view.source.dropped,
                         what="old lines let go")  # fmt: skip
            assert view.match is not None and view.source.lines[view.match] == hit

    asyncio.run(scenario())


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
            screen = await _open(app, pilot, world.ids["running"])
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


def _footer_keys(app) -> dict[str, str]:
    """The footer's keys as shown: key -> description, for the keys that are on offer now."""
    return {key: active.binding.description for key, active in app.screen.active_bindings.items()
            if active.binding.show and active.enabled}  # fmt: skip


def test_escape_leaves_the_job_view_while_the_log_has_focus(world, make_app):
    """The log pane's escape closes its search only while the search is open; else it goes back."""

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
            view = _view(screen)
            await settle(pilot, lambda: view.source.count == 26, what="the merged logs")
            view.focus()
            await pilot.pause()
            assert _footer_keys(app)["escape"] == "Back"
            await pilot.press("slash")
            await settle(pilot, lambda: app.focused is screen.query_one("#log-search"), what="the search box")
            await pilot.press("escape")
            await settle(pilot, lambda: app.focused is view, what="the search closed")
            assert app.screen is screen and screen.query_one("#log-search").has_class("hidden")
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is not screen, what="the dashboard again")

    asyncio.run(scenario())


def test_keys_switch_the_log_tabs_and_the_footer_shows_them(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, world.ids["running"])
            tabs = screen.query_one(TabbedContent)
            await settle(pilot, lambda: screen.query("Tab#--content-tab-log-torchrun"), what="the tabs")
            await settle(pilot, lambda: "Log tab" in screen_text(app), what="the log tab keys in the footer")
            keys = _footer_keys(app)
            assert [keys[k] for k in ("a", "0", "1", "t")] == ["all ranks", "rank 0", "rank 1", "torchrun"]
            assert "2" not in keys  # a two-rank attempt has no rank 2
            for key, tab in (("1", "log-r1"), ("t", "log-torchrun"), ("0", "log-r0"), ("a", "log-all")):
                await pilot.press(key)
                await settle(pilot, lambda tab=tab: tabs.active == tab, what=f"the {tab} tab")
            await pilot.press("2")  # no such rank: nothing happens
            await pilot.pause()
            assert tabs.active == "log-all"

    asyncio.run(scenario())


def test_only_a_render_under_way_draws_a_live_bar_and_an_eta(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            for state in ("held", "queued", "cancelled"):  # nothing started: no bar at all (it would say --%)
                screen = await _open(app, pilot, world.ids[state])
                await settle(pilot, lambda s=screen: "step 0/?" in str(s.query_one("#step-text").render()),
                             what=f"the {state} job's steps")  # fmt: skip
                assert not screen.query_one("#steps").display, state
                await pilot.press("escape")
                await settle(pilot, lambda s=screen: app.screen is not s, what="the dashboard")
            screen = await _open(app, pilot, world.ids["running"])
            await settle(pilot, lambda: "ETA 12m40s" in screen_text(app), what="the running job's ETA")
            assert screen.query_one("#steps").display

    asyncio.run(scenario())


def test_a_failed_job_shows_its_whole_reason_and_the_stage_it_failed_in(world, make_app):
    from tests.functional.failure_world import add_failures

    job_id = add_failures(world)["engine_error"]

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, job_id)
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
            await _open(app, pilot, job_id)
            await settle(pilot, lambda: "denoise" in screen_text(app), what="the stages")
            text = screen_text(app)
            assert "interrupted — its worker died; a worker that starts re-attaches the render" in text
            assert "denoise 180.0s interrupted" in text and "ETA" not in text and "…" not in text
            rows = [line.split() for line in text.splitlines() if re.match(r"\s*#1 ", line)]
            assert rows[0][1] == "interrupted"

    asyncio.run(scenario())


def test_a_job_that_failed_before_its_ranks_wrote_opens_on_torchruns_output(world, make_app):
    from tests.functional.failure_world import add_launch_failure

    job_id = add_launch_failure(world)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await _open(app, pilot, job_id)
            tabs = screen.query_one(TabbedContent)
            await settle(pilot, lambda: tabs.active == "log-torchrun", what="the torchrun tab")
            await settle(pilot, lambda: "EADDRINUSE" in screen_text(app), what="torchrun's output")
            await pilot.press("escape")
            screen = await _open(app, pilot, world.ids["running"])  # ranks that wrote: all ranks, as before
            await settle(pilot, lambda: screen.query_one(TabbedContent).active == "log-all", what="all ranks")

    asyncio.run(scenario())


def test_a_finished_render_shows_how_close_its_end_frames_came_to_the_inputs(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            await _open(app, pilot, world.ids["succeeded"])
            said = "psnr    first 31.5 dB, last 18.2 dB (low) (end frames vs inputs)"
            await settle(pilot, lambda: said in screen_text(app), what="the PSNR")
            await pilot.press("escape")
            screen = await _open(app, pilot, world.ids["running"])  # not known before the render ends: not said
            await settle(pilot, lambda: "step 12/50" in screen_text(app), what="the running job")
            assert "psnr" not in screen_text(app) and screen.query_one("#fidelity").has_class("hidden")

    asyncio.run(scenario())
