"""Fixtures of the queue's unit tests: a real SQLite database in a temporary FLF2V_HOME."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from storage.db import connect
from storage.jobs import insert_jobs
from storage.paths import Home
from tests.unit.queue_support import make_spec


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


@pytest.fixture
def conn(home: Home) -> Iterator[sqlite3.Connection]:
    c = connect(home.db)
    yield c
    c.close()


@pytest.fixture
def frames(tmp_path: Path) -> tuple[Path, Path]:
    first, last = tmp_path / "first.png", tmp_path / "last.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(first)
    Image.new("RGB", (48, 32), (30, 30, 200)).save(last)
    return first, last


@pytest.fixture
def queue(conn: sqlite3.Connection, home: Home, frames: tuple[Path, Path]):
    """queue(**overrides) -> job id: queues one job straight through storage (no engine checks)."""

    def add(**overrides: object) -> int:
        return insert_jobs(conn, home, [make_spec(frames, **overrides)])[0]

    return add
