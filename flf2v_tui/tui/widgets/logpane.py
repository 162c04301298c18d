"""An attempt's logs: a tab with all ranks merged by time, a tab per rank, torchrun's own output, and search."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import ContentSwitcher, Input, Static, TabbedContent, TabPane

from flf2v_tui.screen_data.lineindex import FileLines
from flf2v_tui.screen_data.merged import MergedLines
from flf2v_tui.tui.text import plain
from flf2v_tui.tui.widgets.logview import LogView

TORCHRUN_LOG = "torchrun.log"


class LogPane(Vertical):
    # In the search box: shift+enter for the previous hit where the terminal tells it from enter (many send
    # the same bytes for both), and the arrows everywhere. In the log itself n and N do it (LogView).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close_search", "Close search", show=False),
        Binding("shift+enter,up", "search_step(True)", "Previous hit", show=False),
        Binding("down", "search_step(False)", "Next hit", show=False),
    ]

    def __init__(
        self, attempt_dir: Path, ranks: int, interval: float = 0.25, first_tab: str = "log-all", **kw: object
    ) -> None:
        """`first_tab`: the tab shown first (the job view opens torchrun's output when no rank wrote a line)."""
        super().__init__(**kw)  # type: ignore[arg-type]
        self.attempt_dir = attempt_dir
        self.ranks = max(ranks, 1)
        self.interval = interval
        self.first_tab = first_tab

    def compose(self) -> ComposeResult:
        files = {r: self.attempt_dir / f"rank{r}.log" for r in range(self.ranks)}
        # No `initial`: Textual's tab bar checks an initial tab when it mounts, and if the app quits while the pane
        # is still mounting, the tabs are already gone and that check raises; the first tab is chosen once mounted.
        with TabbedContent(id="log-tabs"):
            with TabPane("all ranks", id="log-all"):
                yield LogView(MergedLines(files), colour_ranks=True, interval=self.interval, id="view-all")
            for rank, path in files.items():
                with TabPane(f"rank {rank}", id=f"log-r{rank}"):
                    yield LogView(FileLines(path), interval=self.interval, id=f"view-r{rank}")
            with TabPane("torchrun", id="log-torchrun"):
                yield LogView(FileLines(self.attempt_dir / TORCHRUN_LOG), interval=self.interval, id="view-torchrun")
        yield Input(placeholder="search this log (enter or ↓: next, shift+enter or ↑: previous, esc: close)",
                    id="log-search", classes="hidden")  # fmt: skip
        yield Static("", id="log-status")

    @property
    def active_view(self) -> LogView | None:
        """The view of the tab on show; None before the tabs have settled on one (ValueError: no active tab
        yet), and while the pane is taken down (the job view was left), when a callback queued before that
        can still arrive."""
        try:
            tabs = self.query_one(TabbedContent)
            return tabs.get_pane(tabs.active).query_one(LogView)
        except (NoMatches, ValueError):
            return None

    def on_mount(self) -> None:
        self.call_after_refresh(self._settle_tabs)
        self.call_after_refresh(self._watch_active)

    def _settle_tabs(self) -> None:
        """Open on `first_tab`, and show the pane of the tab the bar has chosen. Without `initial` the tab bar picks
        its first tab as it mounts, but the pane switcher mounts after it and may hide every pane again (it
        resets to no pane), while the bar still names one: this pane is mounted after both, so it sets them right."""
        if self.first_tab != "log-all":
            self.show_tab(self.first_tab)
        for tabs in self.query(TabbedContent).results(TabbedContent):
            for switcher in tabs.query(ContentSwitcher).results(ContentSwitcher):  # none while taken down
                if tabs.active and switcher.current != tabs.active:
                    switcher.current = tabs.active

    def on_tabbed_content_tab_activated(self, _event: TabbedContent.TabActivated) -> None:
        self._watch_active()

    def _watch_active(self) -> None:
        """Only the view on screen reads its files; the others pick up where they left off when shown."""
        active = self.active_view
        if active is None:
            if self.query(TabbedContent):  # not settled on its first tab yet: look again after the next frame
                self.call_after_refresh(self._watch_active)
            return
        for view in self.query(LogView):
            view.keep_up(view is active)
        self._status(active)

    def on_log_view_changed(self, event: LogView.Changed) -> None:
        if event.view is self.active_view:
            self._status(event.view)

    def _status(self, view: LogView) -> None:
        source = view.source
        parts = [f"{source.count:,} lines"]
        problem = getattr(source, "problem", None)
        if problem:
            parts.insert(0, problem)
        if getattr(source, "provisional", False):
            parts.append("indexing… (showing the tail)")
        if getattr(source, "truncated", False):
            parts.append("recent lines of each rank; full history in the rank tabs")
        parts.append("following" if view.follow else "paused: scrolled up (End follows)")
        if view.match is not None:
            parts.append(f"hit at line {view.match + 1:,} for {view.needle!r} (n/N)")
        for status in self.query("#log-status").results(Static):  # none once the pane is being taken down
            status.update(plain(" · ".join(parts)))

    def show_tab(self, tab: str) -> None:
        """Show the tab of that id (log-all, log-rN, log-torchrun); one this attempt lacks is ignored."""
        tabs = self.query(TabbedContent)
        if tabs and tabs.first().query(f"TabPane#{tab}"):
            with suppress(ValueError):  # its tab bar is being taken down (the view was left, the app is quitting)
                tabs.first().active = tab

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape closes the search only while it is open; otherwise it goes on to the screen (back)."""
        if action == "close_search":  # asked for the footer too, maybe before the box is composed
            return any(not box.has_class("hidden") for box in self.query("#log-search"))
        return True

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.remove_class("hidden")
        box.focus()

    def action_close_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.add_class("hidden")
        if self.active_view is not None:
            self.active_view.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-search" and event.value.strip():
            event.stop()
            self.search(event.value.strip())

    def action_search_step(self, backwards: bool) -> None:
        """The next or previous hit of what the search box holds (or of the last search)."""
        view = self.active_view
        needle = self.query_one("#log-search", Input).value.strip() or (view.needle if view else "")
        if needle:
            self.search(needle, backwards)

    def search(self, needle: str, backwards: bool = False) -> None:
        view = self.active_view
        if view is not None:
            view.search(needle, backwards)
