"""What every screen of the app gets from it: the database, the GPU monitor, the clock and the poll intervals.

Named here as a protocol, which the app (tui/app.py) fulfils, so that no screen imports the app: the app
imports the screens. Screens ask the app for another screen with the messages of tui/messages.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from textual.screen import Screen

from flf2v_tui.screen_data.machine import MachineMonitor
from flf2v_tui.tui.db import Db

ResultT = TypeVar("ResultT")


class AppServices(Protocol):
    db: Db
    monitor: MachineMonitor
    now: Callable[[], float]  # the clock: a fixed one in tests makes ages and ETAs reproducible
    poll_s: float  # between reads of the queue
    log_interval_s: float  # between looks at a growing log

    def gpu_holders(self) -> dict[int, int | str]: ...  # GPU index -> the job (or idle warm group) holding it


class AppScreen(Screen[ResultT]):
    @property
    def flf2v(self) -> AppServices:
        return cast(AppServices, self.app)
