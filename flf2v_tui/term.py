"""Terminal output that works without a TTY: colour only when wanted, inert text and JSON, short durations.

Everything printed for a person passes through `inert` (directly, through `echo`, or cell by cell in `table`
and the views); everything printed for a program passes through `json_text`. Only `flf2v logs --raw` writes
what it read as it is.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any, TextIO

import typer

_ANSI = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36", "dim": "2"}
# CSI, then OSC and the other string sequences (DCS, SOS, PM, APC; ended by BEL or ST), then other two-byte ESC
# sequences, then the remaining C0 and C1 controls. The C1 forms count too: some terminals take U+009B as CSI
# and U+009D as OSC without any ESC, so their parameters go with them rather than being left as text.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
# Lone surrogates stand for the bytes of a file name that is not UTF-8; no UTF-8 stream can write them.
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# What json.dumps(ensure_ascii=False) leaves as it is though a terminal acts on it (DEL and the C1 controls;
# it escapes C0 itself), and the lone surrogates. Outside its strings JSON is plain ASCII, so every match is
# inside a string, where a \u escape reads back as the same character.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\ud800-\udfff]")


def use_colour(stream: TextIO | None = None) -> bool:
    """NO_COLOR wins; otherwise colour only on a terminal; FORCE_COLOR forces it.

    As no-color.org has it, an empty NO_COLOR counts as unset: the help screens (rich) read it the same way,
    so that all of one command's output agrees."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("TERM") != "dumb"


def paint(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or not colour or colour not in _ANSI:
        return text
    return f"\x1b[{_ANSI[colour]}m{text}\x1b[0m"


def inert(text: str) -> str:
    """Remove escape sequences and control characters so a rank's output cannot drive the terminal."""
    if text.isascii() and text.isprintable():
        return text  # nothing to remove; most cells are so, and `ls` of 10,000 jobs makes 100,000 of them
    return _ESCAPES.sub("", text)


def echo(text: object = "", err: bool = False) -> None:
    """Print a message for a person (stdout, or stderr with `err`): inert, so that no prompt, label, path or
    engine message it quotes can drive the terminal. Tables and views that are already inert cell by cell
    and then coloured are printed with typer.echo instead, or their colour would go too."""
    typer.echo(_SURROGATES.sub("\ufffd", inert(str(text))), err=err)


def json_text(value: Any, indent: int | None = None) -> str:
    """`value` as JSON that no terminal acts on: every control character and lone surrogate is a \\u escape,
    so json.loads gives back exactly the strings that went in. Other characters stay as they are (readable)."""
    text = json.dumps(value, indent=indent, sort_keys=True, default=str, ensure_ascii=False)
    if text.isascii() and "\x7f" not in text:
        return text  # the usual case, and a scan of megabytes (ls --json --all) the regex need not make
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def one_line(text: object, width: int = 0) -> str:
    """Text for a table cell or a title: inert, every run of whitespace (newlines too) one space, and cut to
    `width` characters (0: not cut)."""
    flat = " ".join(inert(str(text or "")).split())
    return flat if not width or len(flat) <= width else flat[: max(width - 1, 0)] + "…"


def inert_row(value: Any) -> Any:
    """A copy of a database row (dicts and lists nested) with every string made inert. Prompts, labels,
    tags, notes, state reasons and failure messages come from people and from engine output, and every view
    formats them; rows pass through here first, so no field can carry an escape sequence to the terminal.
    Only for showing: paths read or written stay the raw ones."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, dict):
        return {k: inert_row(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(inert_row(v) for v in value)
    return value


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def age(since: float | None, now: float | None = None) -> str:
    return "-" if since is None else duration((now or time.time()) - since)


def clock(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def table(rows: list[list[str]], header: list[str]) -> str:
    """Plain aligned columns, nothing cut (fast at 10,000 rows, unlike a rich Table); see fitted_table."""
    return fitted_table(rows, header)[0]


def fitted_table(
    rows: list[list[str]],
    header: list[str],
    colours: list[str | None] | None = None,
    width: int = 0,
    whole_cells: bool = False,
    last_whole: bool = False,
) -> tuple[str, list[str]]:
    """The table's text and the headings of the columns left out. The line is cut to `width`; with
    `whole_cells` only the last column may be cut, and each column before it that does not fit is left out
    whole (a number cut short reads as another number), the ones after it still shown where they fit; with
    `last_whole` too, the last column is left out rather than cut."""
    colour_on = use_colour()
    # No cell spans lines or moves the cursor, whatever a prompt or an engine message holds.
    all_rows = [[one_line(cell) for cell in row] for row in (header, *rows)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    shown = list(range(len(header)))
    if width and whole_cells:
        shown, end = [], -2
        # The last column, when it may be cut, keeps at least one character and the ellipsis.
        room = width if last_whole else width - 2 - min(widths[-1], 2)
        for i in range(len(header) - 1):
            if end + 2 + widths[i] <= room:
                shown.append(i)
                end += 2 + widths[i]
        if not last_whole or end + 2 + widths[-1] <= width:
            shown.append(len(header) - 1)
    lines = []
    for n, row in enumerate(all_rows):
        cells = [row[i] if i == len(header) - 1 else row[i].ljust(widths[i]) for i in shown]
        line = "  ".join(cells)
        if shown[-1:] != [len(header) - 1]:
            line = line.rstrip()
        if width and len(line) > width:
            line = line[: max(width - 1, 0)] + "…"
        if n == 0:
            line = paint(line, "dim", colour_on)
        elif colours and colours[n - 1]:
            line = paint(line, colours[n - 1], colour_on)
        lines.append(line)
    return "\n".join(lines), [header[i] for i in range(len(header)) if i not in shown]


def terminal_width(stream: TextIO | None = None) -> int:
    """0 (no cutting) when not a terminal, so piped output keeps whole lines."""
    stream = stream or sys.stdout
    if not getattr(stream, "isatty", lambda: False)():
        return 0
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except OSError:
        return 0
