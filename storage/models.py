"""sqlmodel classes for the queue database, for readers that want ORM objects (the TUI, the catalogue).

The schema itself is created by the migrations in `storage.schema`; these classes mirror its latest version
(a test keeps them equal). JSON-valued columns (labels, memory, recipe, tags, ...) are plain strings here.
Open sessions with `session(home)`, which applies the same connection settings as the queue.

Importing this module costs ~0.4 s (pydantic), so the CLI's fast paths do not.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine

from storage.db import connect
from storage.paths import Home


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: int | None = Field(default=None, primary_key=True)
    state: str = "queued"
    state_reason: str | None = None
    held: bool = False
    cancel_requested: bool = False
    priority: int = 0
    seq: int
    labels: str = "[]"
    gpus: int = 1
    nodes: int = 1
    max_retries: int = 2
    retry_on: str = "comm,worker_lost"
    retry_backoff: float = 30.0
    retries_used: int = 0
    not_before: float | None = None
    task: str
    size: str
    frame_num: int
    ckpt_dir: str
    offload_model: bool | None = None
    t5_fsdp: bool = False
    dit_fsdp: bool = False
    t5_cpu: bool = False
    ulysses_size: int = 1
    ring_size: int = 1
    sample_solver: str
    sample_steps: int
    sample_shift: float
    sample_guide_scale: float
    base_seed: int
    first_frame: str
    last_frame: str
    first_frame_src: str
    last_frame_src: str
    prompt: str
    neg_prompt: str | None = None
    save_file: str | None = None
    preview_every: int = 0
    created_at: float
    queued_at: float
    started_at: float | None = None
    finished_at: float | None = None
    current_attempt_id: int | None = None
    attempts_count: int = 0
    output_path: str | None = None
    failure_class: str | None = None


class JobDep(SQLModel, table=True):
    __tablename__ = "job_deps"

    job_id: int = Field(foreign_key="jobs.id", primary_key=True)
    after_id: int = Field(foreign_key="jobs.id", primary_key=True)


class Attempt(SQLModel, table=True):
    __tablename__ = "attempts"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id")
    number: int
    state: str = "running"
    worker_host: str
    worker_pid: int
    worker_started: float
    pgid: int | None = None
    pgid_started: float | None = None
    device: str
    gpus: str
    nproc: int
    master_port: int | None = None
    log_dir: str
    save_file: str | None = None
    exit_code: int | None = None
    failing_rank: int | None = None
    failure_class: str | None = None
    failure_message: str | None = None
    stage: str | None = None
    step: int | None = None
    steps_total: int | None = None
    sec_per_it: float | None = None
    eta_seconds: float | None = None
    progress_at: float | None = None
    memory: str = "{}"
    peak_memory: str = "{}"
    stage_seconds: str = "{}"
    engine_version: str | None = None
    started_at: float
    ended_at: float | None = None


class Worker(SQLModel, table=True):
    __tablename__ = "workers"

    id: int | None = Field(default=None, primary_key=True)
    host: str
    pid: int
    pid_started: float
    state: str = "running"
    pool: str = "{}"
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None


class Setting(SQLModel, table=True):
    __tablename__ = "settings"

    key: str = Field(primary_key=True)
    value: str


class Video(SQLModel, table=True):
    __tablename__ = "videos"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int | None = Field(default=None, foreign_key="jobs.id")
    attempt_id: int | None = Field(default=None, foreign_key="attempts.id")
    path: str = Field(unique=True)
    size_bytes: int
    sha256: str
    width: int
    height: int
    frames: int
    fps: float
    duration: float
    task: str
    size: str
    prompt: str
    neg_prompt: str | None = None
    seed: int
    sample_steps: int
    sample_shift: float
    sample_guide_scale: float
    sample_solver: str
    ckpt_dir: str
    ckpt_fingerprint: str | None = None
    engine_version: str | None = None
    world_size: int | None = None
    ulysses_size: int | None = None
    t5_fsdp: bool | None = None
    dit_fsdp: bool | None = None
    recipe: str = "{}"
    stage_seconds: str = "{}"
    total_seconds: float | None = None
    peak_memory: str = "{}"
    rating: int | None = None
    favourite: bool = False
    tags: str = "[]"
    notes: str = ""
    created_at: float
    files: str = "{}"


def make_engine(home: Home) -> Engine:
    """A SQLAlchemy engine over the migrated database, with the queue's connection settings."""
    connect(home.db).close()  # create and migrate first; the ORM never creates tables itself
    engine = create_engine(f"sqlite:///{home.db}", connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    return engine


def session(home: Home) -> Session:
    return Session(make_engine(home))
