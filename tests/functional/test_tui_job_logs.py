"""The job view's log pane through Pilot: merged ranks, following, search, tabs and their keys, escape, and
logs that change under it."""

from __future__ import annotations

import asyncio
import re
import shutil

from textual.widgets import TabbedContent

from flf2v_tui.tui.widgets.logpane import LogPane
from tests.functional.job_view_helpers import log_view, open_job_view, show_tab
from tests.functional.tui_world import HOSTILE, NOW, log_line, screen_text, settle


def test_log_pane_merges_ranks_follows_and_pauses_when_scrolled_up(world, make_app):
    folder = world.attempt_dir("running")

    def append(rank: int, t: float, text: str) -> None:
        with open(folder / f"rank{rank}.log", "a") as fh:
            fh.write(log_line(t, text))

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 34)) as pilot:
            screen = await open_job_view(app, pilot, world.ids["running"])
            view = log_view(screen)
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

            await show_tab(pilot, screen, "log-r1")
            rank1 = log_view(screen, "view-r1")
            await settle(pilot, lambda: rank1.source.count == 14, what="rank 1's own log")
            await settle(pilot, lambda: "late line from rank 1" in screen_text(app), what="rank 1's tail")
            assert "[r0]" not in screen_text(app)

    asyncio.run(scenario())


def test_log_search_jumps_to_the_hit(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await open_job_view(app, pilot, world.ids["running"])
            await show_tab(pilot, screen, "log-r0")
            view = log_view(screen, "view-r0")
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
            screen = await open_job_view(app, pilot, world.ids["running"])
            await settle(pilot, lambda: "clipboard written" in screen_text(app), what="the hostile line")
            drawn = [
                seg.text
                for view in (log_view(screen), )
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
                screen = await open_job_view(app, pilot, world.ids["running"])
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
            screen = await open_job_view(app, pilot, world.ids["running"])
            merged = log_view(screen)
            await settle(pilot, lambda: merged.source.count == 26, what="the merged logs")  # read before they go
            await show_tab(pilot, screen, "log-r0")
            view = log_view(screen, "view-r0")
            await settle(pilot, lambda: view.source.complete and view.source.count == 13, what="rank 0's index")
            shutil.rmtree(world.attempt_dir("running"))  # `flf2v rm`, or a cleanup, while the log is on screen
            await pilot.press("slash", *"sampling", "enter")
            await settle(pilot, lambda: "the log is gone ·" in screen_text(app), what="the loss said")
            await pilot.press("escape", "n", "N")
            await show_tab(pilot, screen, "log-all")
            await settle(pilot, lambda: "the log is gone (every rank's" in screen_text(app), what="the merged tab")
            await pilot.pause(0.3)
            assert app.is_running and app._exception is None

    asyncio.run(scenario())


def test_a_search_hit_stays_on_its_line_when_the_merged_view_lets_old_lines_go(world, make_app):
    folder = world.attempt_dir("running")

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await open_job_view(app, pilot, world.ids["running"])
            view = log_view(screen)
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


def _footer_keys(app) -> dict[str, str]:
    """The footer's keys as shown: key -> description, for the keys that are on offer now."""
    return {key: active.binding.description for key, active in app.screen.active_bindings.items()
            if active.binding.show and active.enabled}  # fmt: skip


def test_escape_leaves_the_job_view_while_the_log_has_focus(world, make_app):
    """The log pane's escape closes its search only while the search is open; else it goes back."""

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 48)) as pilot:
            screen = await open_job_view(app, pilot, world.ids["running"])
            view = log_view(screen)
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
            screen = await open_job_view(app, pilot, world.ids["running"])
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
