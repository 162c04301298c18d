"""What every command shares: opening the home and database, and turning errors into exit codes."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import math
import os
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer

from engine.errors import EXIT_BAD_INPUT, BadInputError
from engine.limits import INT64_MAX, INT64_MIN, shown
from flf2v_tui.term import echo, json_text
from storage.db import DatabaseError, connect
from storage.errors import CORRUPT, DB_HEADROOM_BYTES, files_size, storage_fault
from storage.lost_queue import refuse_lost_queue
from storage.paths import Home

F = TypeVar("F", bound=Callable[..., Any])
# A range of ids (`rm 1..N`) is a list in memory: 1..10**12 would fill it before any id is looked at.
MAX_IDS = 1_000_000


@dataclass
class StartOver:
    """`flf2v --force`: the user's say-so to start a new queue where flf2v.db is missing or empty although job
    folders exist (set by the app's callback, with the command it runs, for the refusal to quote)."""

    allowed: bool = False
    command: str = "<command>"


START_OVER = StartOver()


def open_home() -> tuple[Home, sqlite3.Connection]:
    """The home and a connection to its database; a lost database is refused, never silently made anew."""
    home = Home.resolve().ensure()
    refuse_lost_queue(home, START_OVER.command, force=START_OVER.allowed)
    return home, connect(home.db)


# A line break or tab that a quoted path or prompt holds, shown as its escape: an error is always one line.
_BREAKS = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def one_line_error(message: str) -> str:
    """`error: <message>` on one line whatever the message quotes (see _BREAKS); echo then makes it inert."""
    return f"error: {message.translate(_BREAKS)}"


def die(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Every error a command prints comes here, and is made inert here: it may quote a path or a prompt."""
    echo(one_line_error(message), err=True)
    raise typer.Exit(code)


def _standard_stream_failed(exc: OSError) -> int | None:
    """1 or 2 when `exc` is a failed write to stdout or stderr, else None. Such an error names no file, so it is
    told by the stream the failing frame wrote to (click's echo, a command's own `out`), or, for a write that
    only filled the buffer, by stdout's flush failing again now."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    for value in tb.tb_frame.f_locals.values() if tb is not None else ():
        if isinstance(value, io.IOBase):
            with contextlib.suppress(OSError, ValueError):
                if value.fileno() in (1, 2):
                    return value.fileno()
    try:
        sys.stdout.flush()
    except OSError:
        return 1
    return None


def _output_failed(exc: OSError, fd: int) -> NoReturn:
    """The output could not be written: say so on stderr (unless that is what failed), and exit 1. A stream
    that failed then points at /dev/null, so that the flush at exit neither fails again nor adds a message."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    why = "no space left on the device it goes to" if full else (exc.strerror or str(exc)).lower()
    _to_devnull(fd)
    if fd == 1:
        try:
            echo(
                one_line_error(f"could not write the output ({why}); free some space there or send it elsewhere"), True
            )
        except OSError:  # stderr goes to the same full device: exit 1 has to say it alone
            _to_devnull(2)
    raise typer.Exit(1)


def _to_devnull(fd: int) -> None:
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def handles_errors(fn: F) -> F:
    """Bad input becomes one line on stderr and exit 2. A storage error (disk full, read-only, locked too long,
    corrupt) or an unusable database becomes one line naming the cause, where and the fix, and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_numbers(kwargs)
            return fn(*args, **kwargs)
        except BadInputError as exc:
            die(exc.message, EXIT_BAD_INPUT)
        except BrokenPipeError:
            sys.stderr.close()  # `flf2v ls | head` is not an error
            raise typer.Exit(0) from None
        except (DatabaseError, sqlite3.Error, OSError) as exc:
            unnamed = isinstance(exc, OSError) and not exc.filename
            stream = _standard_stream_failed(exc) if unnamed else None
            if isinstance(exc, OSError) and stream is not None:
                _output_failed(exc, stream)
            # The database is where an SQLite error happened; an OSError names its own file (or none).
            fault = storage_fault(exc, None if isinstance(exc, OSError) else Home.resolve().db)
            if isinstance(exc, DatabaseError) and (fault is None or fault.cause == CORRUPT):
                die(str(exc), 1)  # its own words already say which file and what to do
            if fault is None:
                raise  # not a storage condition: a bug, whose traceback is what helps
            if fault.path is None:  # an OSError naming no file, and not from writing the output
                disks = f"check the disks this command writes to (FLF2V_HOME is {Home.resolve().root}) and try again"
                die(f"{fault.cause} ({fault.detail}) writing a file the system did not name; {disks}", 1)
            # What a write needs at most: copies of the frames it was given, and room for the database's log.
            frames = [kwargs[k] for k in ("first_frame", "last_frame") if isinstance(kwargs.get(k), str)]
            die(fault.line(DB_HEADROOM_BYTES + files_size(frames)), 1)

    return wrapper  # type: ignore[return-value]


def check_numbers(kwargs: dict[str, Any]) -> None:
    """No whole number a command was given (an id, a count) may overflow SQLite's 64-bit INTEGER, and no
    number may be NaN (every comparison with it is false: a timeout that never ends, or ends at once). One line,
    not an OverflowError from the query; options with bounds of their own were checked as they were parsed."""
    for name, value in kwargs.items():
        for number in value if isinstance(value, list) else [value]:
            if type(number) is int and not INT64_MIN <= number <= INT64_MAX:
                raise BadInputError(f"{name.replace('_', ' ')} {shown(number)} is beyond 64 bits; no such thing exists")
            if type(number) is float and math.isnan(number):
                raise BadInputError(f"{name.replace('_', ' ')} nan is not a number; give one")


def print_json(value: Any) -> None:
    """Indented for a person at a terminal; one compact line for a program (much faster at 10,000 jobs)."""
    typer.echo(json_text(value, indent=2 if sys.stdout.isatty() else None))


def parse_ids(values: list[str]) -> list[int]:
    """Job ids from arguments such as `3 4 7` or `3,4,7` or `3..7`."""
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            low, sep, high = part.partition("..")
            try:
                first, last = (int(low), int(high)) if sep else (int(part), int(part))
            except ValueError:
                raise BadInputError(f"{part!r} is not a job id (use numbers, e.g. 12, 12,13 or 12..15)") from None
            if first < INT64_MIN or last > INT64_MAX:
                raise BadInputError(f"{part!r} is not a job id: ids fit in 64 bits (at most {INT64_MAX})")
            if last - first >= MAX_IDS:
                raise BadInputError(f"{part!r} is {last - first + 1} ids, more than the {MAX_IDS} allowed at once")
            ids += range(first, last + 1)
    if not ids:
        raise BadInputError("give at least one job id")
    return ids
