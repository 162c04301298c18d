"""The end of an attempt, as the supervising loop and reconciliation both record it.

A success counts only once its video has passed the catalogue's check (the file opens, and its frames, size
and fps are what the engine reported); then the video is catalogued with its recipe and thumbnails.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from engine.mp4 import partials_of
from flf2v_tui.catalogue.media import VideoCheckError
from flf2v_tui.catalogue.record import catalogue, prepare_row
from flf2v_tui.term import inert
from flf2v_tui.worker.classify import classify, read_exit
from flf2v_tui.worker.procs import attempt_tag, kill_all
from flf2v_tui.worker.tracker import Tracker
from flf2v_tui.worker.warm import group_tag, job_outcome
from storage import attempts as store
from storage.errors import storage_fault
from storage.jobs import get_job

log = logging.getLogger("flf2v.worker")


@dataclass
class Settled:
    new_state: str | None  # the job's; None when another worker had already recorded this attempt
    outcome: store.Outcome
    video: dict[str, Any] | None = None
    problem: str = ""  # a catalogue failure that did not undo a good render


def settle(conn: sqlite3.Connection, job_id: int, attempt_id: int, outcome: store.Outcome, tracker: Tracker) -> Settled:
    row, problem = None, ""
    if outcome.state == "succeeded" and tracker.done is not None:
        job = get_job(conn, job_id) or {}
        world_size = int((tracker.start or {}).get("world_size") or job.get("gpus") or 1)
        try:
            row = prepare_row(job, attempt_id, tracker.done, tracker.stage_seconds, tracker.peak_memory, world_size)
        except VideoCheckError as exc:  # the video's own fault, whatever the disk it is on
            outcome = store.Outcome(
                "failed", exit_code=outcome.exit_code, failure_class="engine_error",
                message=f"the video failed its check: {exc}",
            )  # fmt: skip
        except Exception as exc:  # a catalogue bug must neither stop the worker nor fail a verified video
            if isinstance(exc, OSError) and storage_fault(exc) is not None:
                # The disk's fault (no room for the thumbnails): nothing is recorded now, and the worker
                # records this end once storage works again (outage.py).
                raise
            # Its traceback quotes what the exception holds (the video's path): inert, like all the worker says.
            log.error("cataloguing job %s failed\n%s", job_id, inert(traceback.format_exc().rstrip()))
            problem = f"the video is fine but could not be catalogued: {type(exc).__name__}: {exc}"
    store.write_progress(conn, attempt_id, tracker.progress())
    new_state = store.finish(conn, attempt_id, outcome)
    video = None
    # None: recorded before, by another worker or by this one before storage failed the catalogue's write;
    # the catalogue is written again then (it keeps a row it already has).
    if row is not None and (new_state or (get_job(conn, job_id) or {}).get("state")) == "succeeded":
        try:
            video = catalogue(conn, row)
        except OSError as exc:
            problem = f"the video is fine but its catalogue sidecar could not be written: {exc}"
    return Settled(new_state, outcome, video, problem)


def remove_partials(save_file: str | None) -> list[Path]:
    """The unfinished videos of an attempt whose processes are all gone: a rank killed while saving leaves its
    `.<name>.partial-<pid>.mp4`. Only partial files of this attempt's video, and only those whose writer is
    gone, so another render writing the same name is never touched."""
    removed = []
    for path, pid in partials_of(save_file) if save_file else []:
        if psutil.pid_exists(pid):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)
            continue
        removed.append(path)
    return removed


def settle_unwatched(conn: sqlite3.Connection, home_root: str, attempt: dict[str, Any]) -> tuple[Settled, int]:
    """Record an attempt whose shim is gone and that no worker watched end: reconciliation, and `flf2v cancel`
    once it has stopped a render itself. The shim's exit file tells how torchrun ended; the events and logs
    say why. `attempt` is a row of store.running_attempts (its job's cancel flag included). Returns the
    settlement and how many leftover processes of the render had to be killed."""
    folder = Path(attempt["log_dir"])
    tracker = Tracker(folder / "events.jsonl", folder)
    tracker.poll(time.time())
    group_dir = attempt.get("group_dir")
    # Nothing of the render may outlive its record: without an exit file the shim died before it could
    # stop the ranks it adopted, and even with one a rank may have slipped out of its group.
    leftovers = kill_all(None, group_tag(Path(group_dir)) if group_dir else attempt_tag(home_root, attempt["id"]))
    remove_partials(attempt["save_file"])
    cancelled = bool(attempt["cancel_requested"])
    if group_dir and attempt.get("group_seq"):
        # Its warm group is gone: the job's end file says how it ended, else the group's exit does.
        outcome = job_outcome(
            Path(group_dir), int(attempt["group_seq"]), tracker, folder, group_alive=False, cancelled=cancelled,
            save_file=attempt["save_file"],
        )  # fmt: skip
        return settle(conn, attempt["job_id"], attempt["id"], outcome, tracker), leftovers
    returncode = read_exit(folder)
    outcome = classify(returncode, tracker, folder, cancelled=cancelled, save_file=attempt["save_file"])
    if returncode is None and attempt["pgid"] is None:
        outcome.message = "the worker stopped between claiming the job and starting it"
    return settle(conn, attempt["job_id"], attempt["id"], outcome, tracker), leftovers
