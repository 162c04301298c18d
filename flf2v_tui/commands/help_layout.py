"""`--help` that never cuts an option's name, at 80 columns too.

Typer's rich help joins all spellings of an option with commas (`--first_frame,--first-frame`) into one
unbreakable word; with the `--no_...` spellings of switches in a column of their own, the table is wider than
80 columns and rich cuts the names (`--first_frame,--fir…`). Listing each spelling on a line of its own makes
the names' column as wide as the longest single name, and the help text wraps beside it. Typer builds the
cells through its module's highlighters, so those are wrapped here; rich_utils is imported only when help is
printed (it costs a tenth of a second that `flf2v ls` need not pay).
"""

from __future__ import annotations

from typing import Any


class _OnePerLine:
    """A highlighter that puts the comma-joined spellings of one option on separate lines."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, text: Any) -> Any:
        if isinstance(text, str) and text.startswith("-") and "," in text:
            text = text.replace(",", "\n")
        return self.inner(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def names_one_per_line() -> None:
    """Make typer's rich help list an option's spellings one per line (idempotent)."""
    from typer import rich_utils

    for name in ("highlighter", "negative_highlighter"):
        current = getattr(rich_utils, name)
        if not isinstance(current, _OnePerLine):
            setattr(rich_utils, name, _OnePerLine(current))


def help_wanted(argv: list[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in argv)
