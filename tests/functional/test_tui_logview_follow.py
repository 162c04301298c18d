"""The log view keeps following its end when a scroll bar comes or goes (it takes or gives back a row), and
End brings it back to the end whatever state it is in."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.app import App, ComposeResult

from flf2v_tui.screen_data.lineindex import FileLines
from flf2v_tui.tui.widgets.logview import LogView
from tests.functional.tui_world import settle

SIZE = (40, 12)  # 40 columns: a 100-character line needs the horizontal bar
SHORT_LINES = 30


class OneLog(App[None]):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield LogView(FileLines(self.path), interval=0.02)

    def on_mount(self) -> None:
        self.query_one(LogView).keep_up(True)


def _short_log(tmp_path: Path) -> Path:
    path = tmp_path / "rank0.log"
    path.write_text("".join(f"short line {i}\n" for i in range(SHORT_LINES)))
    return path


async def _following(pilot, view: LogView, lines: int) -> None:
    await settle(
        pilot,
        lambda: view.source.count == lines and view.show_vertical_scrollbar and view.scroll_y == view.max_scroll_y,
        what=f"the view at the end of {lines} lines",
    )
    for _ in range(5):  # and let the scrolls it had queued for after the next screen updates run out
        await pilot.pause(0.05)
    assert view.follow and view.scroll_y == view.max_scroll_y


def test_the_view_follows_its_end_when_a_horizontal_bar_takes_a_row(tmp_path):
    """The bar is made to appear while nothing else happens (no new line, no resize): before the fix the view
    stayed one row short of its end for good, saying it followed."""

    async def scenario():
        app = OneLog(_short_log(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(LogView)
            await _following(pilot, view, SHORT_LINES)
            end_without_bar = view.max_scroll_y
            view.styles.overflow_x = "scroll"
            await settle(pilot, lambda: view.show_horizontal_scrollbar, what="the horizontal bar")
            await pilot.pause()
            assert view.max_scroll_y == end_without_bar + 1
            assert view.follow and view.scroll_y == view.max_scroll_y

    asyncio.run(scenario())


def test_a_line_wider_than_the_view_keeps_the_last_line_in_view(tmp_path):
    async def scenario():
        path = _short_log(tmp_path)
        app = OneLog(path)
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(LogView)
            await _following(pilot, view, SHORT_LINES)
            with open(path, "a") as log:
                log.write("wide " + "x" * 95 + "\n")
            await settle(pilot, lambda: view.show_horizontal_scrollbar, what="the horizontal bar")
            await _following(pilot, view, SHORT_LINES + 1)
            await pilot.pause()
            assert view.follow and view.scroll_y == view.max_scroll_y

    asyncio.run(scenario())


def test_end_scrolls_to_the_end_even_when_the_view_thinks_it_follows(tmp_path):
    """End must not be a no-op when `follow` is already on (it was the only way out of the state above)."""

    async def scenario():
        app = OneLog(_short_log(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(LogView)
            await _following(pilot, view, SHORT_LINES)
            view.focus()
            view.scroll_to(y=view.max_scroll_y - 3, animate=False, immediate=True)
            assert not view.follow  # scrolling up stops following
            view.set_reactive(LogView.follow, True)  # the stale state: following, yet short of the end
            await pilot.press("end")
            await pilot.pause()
            assert view.follow and view.scroll_y == view.max_scroll_y

    asyncio.run(scenario())
