"""Errors the engine reports to the user (torch-free)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class BadInputError(Exception):
    """A problem with what the user gave us: exits 2 with a one-line message, before weights load.

    `field` names the flag it is about ("sample_shift"), when one is, so that the submit form can show the
    message under that field; None for a problem of the whole submission."""

    failure_class = "user_input"
    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@contextmanager
def about(field: str) -> Iterator[None]:
    """Bad input raised inside is about `field` (for checks that know the file, not the flag it came from),
    unless it already names a field of its own."""
    try:
        yield
    except BadInputError as exc:
        if exc.field is None:
            exc.field = field
        raise


class PeerLostError(RuntimeError):
    """Another rank of the job died or stopped answering."""

    failure_class = "comm"
