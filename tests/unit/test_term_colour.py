"""When the CLI colours its output: NO_COLOR beats FORCE_COLOR, and without either only a terminal gets colour."""

from __future__ import annotations

import io

import pytest

from flf2v_tui.term import use_colour


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("no_color", "force_color", "stream", "expected"),
    [
        (None, None, io.StringIO(), False),
        (None, None, Tty(), True),
        (None, "1", io.StringIO(), True),
        ("1", "1", Tty(), False),
        ("0", "1", io.StringIO(), False),  # any non-empty value means no colour
        ("", "1", io.StringIO(), True),  # empty is unset (no-color.org)
    ],
)
def test_use_colour(monkeypatch, no_color, force_color, stream, expected):
    monkeypatch.setenv("TERM", "xterm")
    for name, value in (("NO_COLOR", no_color), ("FORCE_COLOR", force_color)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert use_colour(stream) is expected
