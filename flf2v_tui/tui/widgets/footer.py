"""The footer of every screen: compact (less space between keys) below NARROW_BELOW columns, so that an
80-column terminal shows more of the keys."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer

from flf2v_tui.screen_data.queue_view import NARROW_BELOW


class FitFooter(Footer):
    def on_mount(self) -> None:
        self.compact = self.app.size.width < NARROW_BELOW  # from the start: a late switch redraws every key

    def on_resize(self, _event: events.Resize) -> None:
        self.compact = self.app.size.width < NARROW_BELOW
