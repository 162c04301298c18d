"""Map an exception to one of the design card's failure classes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn

from engine.diskspace import out_of_space
from engine.errors import BadInputError, PeerLostError

_COMM_MARKERS = (
    "nccl",
    "gloo",
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "timed out",
    "rendezvous",
    "socket",
    "process group",
)


class Killed(BaseException):
    """Raised in the main thread when a termination signal arrives, so the error event still gets written."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")
        self.signum = signum


def log_line(exc: BaseException, failure: str, trace: str, where: str = "") -> tuple[int, str]:
    """What a rank's log says about the end of a failed run. A stop by signal (a user's cancel, a worker or
    torchrun stopping the ranks) is no crash: one line naming the signal and where the run was, not the
    traceback of the frame the signal happened to interrupt, and a warning. Anything else: the error and its
    traceback. Returns (logging level, text)."""
    if isinstance(exc, Killed | KeyboardInterrupt):
        name = signal.Signals(exc.signum).name if isinstance(exc, Killed) else "SIGINT"
        return (
            logging.WARNING,
            f"Render stopped by {name}{f' {where}' if where else ''} (a cancel or a stop, not a crash)",
        )
    return logging.ERROR, f"Generation failed ({failure}): {type(exc).__name__}: {exc}" + (
        f"\n{trace}" if trace else ""
    )


def classify(exc: BaseException) -> str:
    if isinstance(exc, BadInputError):
        return "user_input"
    if isinstance(exc, Killed | KeyboardInterrupt):
        return "killed"
    if isinstance(exc, PeerLostError):
        return "comm"
    declared = getattr(exc, "failure_class", None)
    if isinstance(declared, str):
        return declared
    if out_of_space(exc):  # before the comm markers: a full disk reaches a writer as a broken pipe too
        return "disk_full"
    message = f"{type(exc).__name__}: {exc}".lower()
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in message:
        return "oom"
    try:
        import torch.distributed as dist

        if isinstance(exc, dist.DistError):
            return "comm"
    except (ImportError, AttributeError):
        pass
    if any(marker in message for marker in _COMM_MARKERS):
        return "comm"
    return "engine_error"


PeerProbe = Callable[[], BaseException | None]
_peer_probe: PeerProbe | None = None


def set_peer_probe(probe: PeerProbe | None) -> None:
    """`probe()` returns the error for a peer rank found gone, or None. A termination signal that arrives
    once a peer is gone is torchrun stopping the survivors (or the peer watch interrupting the main
    thread): the loss, not the signal, is then what ends the run."""
    global _peer_probe
    _peer_probe = probe


_reporting = False


@contextlib.contextmanager
def reporting_failure() -> Iterator[None]:
    """The failure that ends the run is being reported. A termination signal now (torchrun sends SIGTERM to
    every surviving rank as soon as one dies) must not raise into the report and cut it short: the handler
    lets it pass, and the run ends right after the report anyway."""
    global _reporting
    _reporting = True
    try:
        yield
    finally:
        _reporting = False


_stopping = False


def install_signal_handlers() -> None:
    global _stopping
    _stopping = False

    def handler(signum: int, _frame: object) -> None:
        global _stopping
        # The first signal decides how the run ends. A cancel signals the ranks' whole process group, torchrun
        # with them, and torchrun then signals each rank again: that second signal lands while the first is
        # unwinding (finally blocks, a preview writer joined), often after a peer has already gone, and must
        # not turn a stop into a lost peer.
        if _reporting or _stopping:
            return
        _stopping = True
        lost = _peer_probe() if _peer_probe is not None else None
        raise lost if lost is not None else Killed(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


def leave(code: int) -> NoReturn:
    """End a failed process now, its report written: the interpreter's teardown would otherwise wait on
    collectives left pending by the failure (gloo's process group joins its worker threads, up to the
    group's timeout, when a peer is stuck)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
