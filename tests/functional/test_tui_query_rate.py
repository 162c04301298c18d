"""How often the TUI asks the database, counted by SQLite itself (a trace callback on every connection the app
opens), with the dashboard open on a queue with a running job, two GPUs and the app's own poll interval."""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
import threading
import time

from flf2v_tui.gpus import FakeSource
from flf2v_tui.tui import db as tui_db
from flf2v_tui.tui.app import Flf2vApp
from flf2v_tui.tui.widgets.jobtable import JobTable
from tests.functional.tui_world import STATES, settle

GIB = 1 << 30
SECONDS = 5.0
# Issue 5: "poll the DB at a modest interval (at most a few queries a second in total)".
QUERIES_PER_S = 3
# A poll is a handful of SELECTs in one read transaction; more than this per query means a query per row crept in.
STATEMENTS_PER_QUERY = 12


class Trace:
    """Counts every SQL statement, and queries: a read or write transaction (BEGIN ... COMMIT) is one query,
    and so is a statement run on its own outside one."""

    def __init__(self) -> None:
        self.statements = 0
        self.queries = 0
        self._open: set[int] = set()
        self._lock = threading.Lock()  # the app's connections are used from several worker threads

    def hook(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        key = id(conn)

        def traced(sql: str) -> None:
            word = sql.split(None, 1)[0].upper() if sql.strip() else ""
            with self._lock:
                self.statements += 1
                if word == "BEGIN":
                    self._open.add(key)
                    self.queries += 1
                elif word in ("COMMIT", "ROLLBACK", "END"):
                    self._open.discard(key)
                elif key not in self._open:
                    self.queries += 1

        conn.set_trace_callback(traced)
        return conn

    def reset(self) -> None:
        with self._lock:
            self.statements = self.queries = 0


def test_the_dashboard_asks_the_database_at_most_a_few_times_a_second(world, make_app, monkeypatch):
    """'Queries' in the issue's sense are round trips to the database: each poll reads one consistent snapshot
    in one read transaction of several SELECTs, and that transaction is one query (as is any statement run
    outside a transaction). The ceiling is on those, over 5 s at the app's default poll interval; statements
    are bounded per query, so a poll cannot quietly grow into a query per job row."""
    trace = Trace()
    real_connect = tui_db.connect
    monkeypatch.setattr(tui_db, "connect", lambda path: trace.hook(real_connect(path)))  # the app's one opener
    gpus = world.home.root / "gpus.json"
    gpus.write_text(json.dumps([
        {"index": i, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i}", "memory_total": 80 * GIB,
         "memory_used": 10 * GIB, "utilization": 50} for i in (0, 1)
    ]))  # fmt: skip
    defaults = {name: p.default for name, p in inspect.signature(Flf2vApp).parameters.items()}

    async def scenario():
        app = make_app(world, gpu_source=FakeSource(gpus), poll_s=defaults["poll_s"],
                       log_interval_s=defaults["log_interval_s"])  # fmt: skip
        async with app.run_test(size=(140, 40)) as pilot:
            await settle(pilot, lambda: app.screen.query_one(JobTable).row_count == len(STATES), what="the jobs")
            await settle(pilot, lambda: len(app.screen.query(".gpu-row")) == 2, what="the GPUs")
            trace.reset()
            started = time.monotonic()
            await pilot.pause(SECONDS)
            return time.monotonic() - started, trace.queries, trace.statements

    elapsed, queries, statements = asyncio.run(scenario())
    assert queries >= 2, "the dashboard stopped polling, so this test measures nothing"
    # One query of slack for a poll that began just before the window and ended in it.
    assert queries <= QUERIES_PER_S * elapsed + 1, f"{queries} queries in {elapsed:.1f} s"
    assert statements <= STATEMENTS_PER_QUERY * queries, f"{statements} statements in {queries} queries"
