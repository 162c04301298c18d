"""The TUI's database access from worker threads: one connection for reads and one for writes, each used by
one thread at a time, so a write waiting on another process's lock never holds up the next poll."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import TypeVar

from textual.app import App

from storage.db import connect
from storage.paths import Home

T = TypeVar("T")


class Db:
    def __init__(self, home: Home) -> None:
        self.home = home
        self._conns: dict[str, sqlite3.Connection] = {}
        self._locks = {"read": threading.Lock(), "write": threading.Lock()}

    def _use(self, kind: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._locks[kind]:
            conn = self._conns.get(kind)
            if conn is None:
                conn = self._conns[kind] = connect(self.home.db)
            return fn(conn)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) on the reading connection (call from a worker thread, never the UI thread)."""
        return self._use("read", fn)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._use("write", fn)

    def close(self) -> None:
        for kind, lock in self._locks.items():
            with lock:
                conn = self._conns.pop(kind, None)
                if conn is not None:
                    conn.close()


def deliver(app: App[object], fn: Callable[..., object], *args: object) -> None:
    """Hand a worker thread's result to the UI thread; dropped quietly once the app is closing (Textual then
    refuses the call with a RuntimeError, or cancels it). An error of `fn` itself is a bug and is raised."""
    ran = False

    def run() -> object:
        nonlocal ran
        ran = True
        return fn(*args)

    try:
        app.call_from_thread(run)
    except (RuntimeError, CancelledError):
        if ran:
            raise
