"""Map an exception to one of the design card's failure classes."""

from __future__ import annotations

import signal

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


def classify(exc: BaseException) -> str:
    if isinstance(exc, BadInputError):
        return "user_input"
    if isinstance(exc, Killed | KeyboardInterrupt):
        return "killed"
    if isinstance(exc, PeerLostError):
        return "comm"
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


def install_signal_handlers() -> None:
    def handler(signum: int, _frame: object) -> None:
        raise Killed(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)
