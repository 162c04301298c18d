"""Errors the engine reports to the user (torch-free)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class BadInputError(Exception):
    """A problem with what the user gave us: exits 2 with a one-line message, before weights load."""

    failure_class = "user_input"
    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PeerLostError(RuntimeError):
    """Another rank of the job died or stopped answering."""

    failure_class = "comm"
