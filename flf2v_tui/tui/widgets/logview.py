"""A log that may be a gigabyte: a Line API widget that renders only the visible lines.

Lines come from a source (lineindex.FileLines for one rank, merged.MergedLines for all ranks) that a thread
keeps up to date; the widget asks for the lines around the view in another thread and draws blanks until they
arrive, so the UI thread never touches the file. Text is made inert (no escape sequence reaches the
terminal) before it is drawn. It follows the end until scrolled up, and follows again at the bottom (End).
"""

from __future__ import annotations

import time
from typing import ClassVar, Protocol

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from flf2v_tui.screen_data.merged import rank_of
from flf2v_tui.term import inert
from flf2v_tui.tui.db import deliver
from flf2v_tui.tui.text import notify_plain

MAX_CHARS = 2000  # longer lines are cut when drawn (they stay whole in the file)
MARGIN = 200  # lines read beyond the view on each side, so scrolling a page rarely waits
INDEX_BUDGET = 64 << 20  # bytes indexed between two screen updates while a big file is opened
RANK_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


class LineSource(Protocol):
    @property
    def count(self) -> int: ...
    @property
    def complete(self) -> bool: ...
    def cached(self, line: int) -> str | None: ...
    def load(self, first: int, stop: int) -> None: ...
    def refresh(self, budget: int | None = None) -> bool: ...
    def search(self, needle: str, from_line: int, backwards: bool = False) -> int | None: ...


def styled_line(raw: str, colour_ranks: bool, needle: str = "", current: bool = False) -> Text:
    """One log line as drawn: inert, tabs expanded, the rank prefix coloured, search hits marked."""
    clean = inert(raw)[:MAX_CHARS].expandtabs(4)
    text = Text(clean, no_wrap=True, end="")
    if colour_ranks:
        rank = rank_of(clean)
        if rank is not None:
            colour = RANK_COLOURS[rank % len(RANK_COLOURS)]
            text.stylize(colour)
            text.stylize(f"bold {colour}", 0, clean.index("]") + 1)
    elif " ERROR" in clean[:40] or clean.startswith("Traceback"):
        text.stylize("red")
    if needle:
        text.highlight_words([needle], "reverse", case_sensitive=False)
    if current:
        text.stylize("on grey30")
    return text


class LogView(ScrollView, can_focus=True):
    """Bindings: End follows, Home goes to the top, n/N jump to the next/previous search hit."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "follow", "Follow"),
        Binding("home", "top", "Top", show=False),
        Binding("n", "next_match", "Next hit", show=False),
        Binding("N", "previous_match", "Previous hit", show=False),
    ]
    follow: reactive[bool] = reactive(True)

    class Changed(Message):
        """The line count, follow state or search position changed (the pane's status line listens)."""

        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

    def __init__(self, source: LineSource, colour_ranks: bool = False, interval: float = 0.25, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.source = source
        self.colour_ranks = colour_ranks
        self.interval = interval
        self.needle = ""
        self.match: int | None = None
        self._widest = 0
        self._asked: tuple[int, int] | None = None
        self._shown_dropped = 0
        self._following_scroll = False

    # ---- keeping up with the file (a thread) --------------------------------------------------------------

    def keep_up(self, on: bool) -> None:
        """Keep up with the file while this view is the one shown (the pane calls this on tab changes)."""
        if on:
            self._tail()
        else:
            self.workers.cancel_group(self, "tail")

    @work(thread=True, exclusive=True, group="tail")
    def _tail(self) -> None:
        worker = get_current_worker()
        prime = getattr(self.source, "prime", None)
        if prime is not None and not self.source.complete and self.source.count == 0:
            prime()
            self._notify_grown()
        while not worker.is_cancelled:
            changed = self.source.refresh(INDEX_BUDGET)
            if changed:
                self._notify_grown()
            if self.source.complete:
                time.sleep(self.interval)

    def _notify_grown(self) -> None:
        deliver(self.app, self._grown)

    def _grown(self) -> None:
        dropped = getattr(self.source, "dropped", 0)
        if dropped != self._shown_dropped:  # the merged view let old lines go: keep the same lines in view
            shift, self._shown_dropped = dropped - self._shown_dropped, dropped
            if self.match is not None:  # and the search hit on its line (gone with them, if it was let go)
                self.match = self.match - shift if self.match >= shift else None
            if not self.follow:
                self._following_scroll = True
                self.scroll_to(y=max(self.scroll_y - shift, 0), animate=False)
                self._following_scroll = False
        self.virtual_size = Size(self._widest, self.source.count)
        if self.follow:
            self._scroll_to_end()
            self.call_after_refresh(self._scroll_to_end)  # again once a first layout has given the view its size
        self.refresh()
        self.post_message(self.Changed(self))

    def on_resize(self) -> None:
        if self.follow:
            self.call_after_refresh(self._scroll_to_end)

    # The end moves whenever the content or the room for it changes. A scroll bar that appears takes a row (or a
    # column) without resizing the widget, so no Resize comes; and a layout may come after the scrolls queued for
    # "after the next refresh" have already run. Textual sets these reactives during layout, once the new end is
    # known: following from here keeps the last line in view whatever the order of events.
    def watch_virtual_size(self) -> None:
        self._scroll_to_end()

    def watch_show_horizontal_scrollbar(self) -> None:
        self._scroll_to_end()

    def watch_show_vertical_scrollbar(self) -> None:
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        if not self.follow:
            return
        self._following_scroll = True
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        self._following_scroll = False

    # ---- following and scrolling --------------------------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._following_scroll:
            return
        at_bottom = new_value >= self.max_scroll_y
        if new_value < old_value and not at_bottom:
            self.follow = False
        elif at_bottom and not self.follow and new_value > old_value:
            self.follow = True

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._scroll_to_end()
        self.post_message(self.Changed(self))

    def action_follow(self) -> None:
        self.follow = True
        self._scroll_to_end()  # also when it already followed: End always brings the last line into view

    def action_top(self) -> None:
        self.follow = False
        self.scroll_to(y=0, animate=False)

    # ---- drawing --------------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        raw = self.source.cached(index)
        if raw is None:
            if index < self.source.count:
                self._ask(index)
            return Strip.blank(width, self.rich_style)
        text = styled_line(raw, self.colour_ranks, self.needle, index == self.match)
        if text.cell_len > self._widest:
            self._widest = text.cell_len
            self.call_later(self._widen)
        strip = Strip(list(text.render(self.app.console)), text.cell_len)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style).apply_style(self.rich_style)

    def _widen(self) -> None:
        self.virtual_size = Size(self._widest, self.source.count)  # the bar it may bring is followed (watchers)

    def _ask(self, index: int) -> None:
        if self._asked is not None and self._asked[0] <= index < self._asked[1]:
            return  # already on its way
        top = max(int(self.scroll_y) - MARGIN, 0)
        stop = int(self.scroll_y) + self.size.height + MARGIN
        self._asked = (top, stop)
        self._load(top, stop)

    @work(thread=True, exclusive=True, group="load")
    def _load(self, first: int, stop: int) -> None:
        self.source.load(first, stop)
        self._asked = None
        deliver(self.app, self.refresh)

    # ---- search ---------------------------------------------------------------------------------------------

    def search(self, needle: str, backwards: bool = False) -> None:
        self.needle = needle
        # From the last hit, else from the view's edge in the direction of the search.
        start = self.match if self.match is not None else int(self.scroll_y) + (self.size.height if backwards else -1)
        self._search(needle, start, backwards)

    @work(thread=True, exclusive=True, group="search")
    def _search(self, needle: str, start: int, backwards: bool) -> None:
        found = self.source.search(needle, start, backwards)
        deliver(self.app, self._found, needle, found, backwards)

    def _found(self, needle: str, line: int | None, backwards: bool) -> None:
        if line is None:
            where = "above" if backwards else "below"
            still = "" if self.source.complete else " yet (the log is still being indexed; try again in a moment)"
            notify_plain(self, f"no more matches for {needle!r} {where}{still}", severity="warning", timeout=3)
            self.refresh()
            return
        self.follow = False
        self.match = line
        self.scroll_to(y=max(line - self.size.height // 2, 0), animate=False)
        self.refresh()
        self.post_message(self.Changed(self))

    def action_next_match(self) -> None:
        if self.needle:
            self.search(self.needle)

    def action_previous_match(self) -> None:
        if self.needle:
            self.search(self.needle, backwards=True)
