"""Text from people and from engine output (prompts, labels, tags, paths, error messages) as the TUI shows it.

Two ways such text could drive the terminal or break a screen: escape sequences, which Textual passes through
to the terminal, and Textual's own markup, which a bare string in a Static, a DataTable cell or a notification
is read as (`[link=…]` makes a hyperlink; an unmatched `[/x]` raises and ends the app). Every screen hands
such text over through these two functions, never as a bare string.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import App
from textual.notifications import SeverityLevel
from textual.widget import Widget

from flf2v_tui.term import inert


def plain(value: object, style: str = "") -> Text:
    """`value` as literal, inert text: no markup is read and no control character is left."""
    return Text(inert(str(value)), style=style, end="")


def notify_plain(
    node: Widget | App[object], message: str, severity: SeverityLevel = "information", timeout: float = 4
) -> None:
    """A notification whose message may hold user or engine text."""
    node.notify(inert(message), severity=severity, timeout=timeout, markup=False)
