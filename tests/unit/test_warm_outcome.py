"""How a warm group's job is recorded when no worker watched it end (reconciliation, `flf2v cancel`): from the
files the group and the job left, through the same settle path as a one-shot render's."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.warm_protocol import JobEnd, JobFile
from flf2v_tui.shim import EXIT_FILE
from flf2v_tui.worker.settle import settle_unwatched
from flf2v_tui.worker.tracker import Tracker
from storage import attempts as store
from storage.claim import Assignment, claim_next
from storage.workers import WorkerIdentity

ME = WorkerIdentity("host", 1, 1.0)


def handed(conn, home, queue, seq: int, group: Path, **job: object) -> dict:
    """A job claimed and handed to `group` as its job `seq`, by a worker that is gone; the group is gone too."""
    job_id = queue(**job)
    claimed = claim_next(conn, ME, lambda n: Assignment("cpu", ("cpu0",)), lambda j, n: str(home.attempt_dir(j, n)))
    home.attempt_dir(job_id, 1).mkdir(parents=True)
    (group / "jobs").mkdir(parents=True, exist_ok=True)
    store.set_launched(conn, claimed.attempt_id, 2**22 + 7, 1.0, None, "", str(group), seq)
    JobFile(seq, claimed.attempt_id, ["--prompt", "x"]).write(group)
    (group / EXIT_FILE).write_text(json.dumps({"returncode": 1}))
    (attempt,) = store.running_attempts(conn)
    return attempt


def event(kind: str, **fields: object) -> str:
    return json.dumps({"v": 1, "t": time.time(), "rank": 0, "kind": kind, **fields}) + "\n"


def test_a_job_whose_group_died_before_it_began_goes_back_to_the_queue(conn, home, queue, tmp_path):
    attempt = handed(conn, home, queue, 2, tmp_path / "groups" / "g1", max_retries=0)
    settled, _ = settle_unwatched(conn, str(home.root), attempt)
    assert (settled.new_state, settled.outcome.state, settled.outcome.failure_class) == (
        "queued", "interrupted", "worker_lost",
    )  # fmt: skip
    job = conn.execute("SELECT retries_used FROM jobs WHERE id = ?", (attempt["job_id"],)).fetchone()
    assert job["retries_used"] == 0  # not the job's fault: its retries are untouched


def test_the_first_job_of_a_group_that_failed_to_load_takes_the_loads_failure(conn, home, queue, tmp_path):
    group = tmp_path / "groups" / "g2"
    group.mkdir(parents=True)
    (group / "events.jsonl").write_text(event("error", type="BadInputError", message="no config.json in /c",
                                              traceback="", **{"class": "user_input"}))  # fmt: skip
    attempt = handed(conn, home, queue, 1, group)
    settled, _ = settle_unwatched(conn, str(home.root), attempt)
    assert (settled.new_state, settled.outcome.failure_class) == ("failed", "user_input")
    assert "no config.json" in settled.outcome.message


def test_a_job_that_ended_before_its_group_died_keeps_its_own_end(conn, home, queue, tmp_path):
    group = tmp_path / "groups" / "g3"
    attempt = handed(conn, home, queue, 3, group, max_retries=0)
    folder = Path(attempt["log_dir"])
    (folder / "events.jsonl").write_text(
        event("start", task="flf2v-tiny", world_size=1, device="cpu", args={}, engine_version="t", warm=True)
        + event("error", type="ValueError", message="a bad solver state", traceback="", **{"class": "engine_error"})
    )
    JobEnd(3, ok=False, failure="engine_error", healthy=True).write(group)
    settled, _ = settle_unwatched(conn, str(home.root), attempt)
    assert (settled.new_state, settled.outcome.failure_class) == ("failed", "engine_error")


def test_a_job_waiting_for_its_groups_load_counts_the_load_log_as_progress(tmp_path):
    """The stall timer of a group's first job: its own folder is silent while the group loads the models, and
    the group's rank logs growing is progress, as a one-shot render's load lines are."""
    attempt, group = tmp_path / "attempt-1", tmp_path / "groups" / "g1"
    attempt.mkdir()
    group.mkdir(parents=True)
    tracker = Tracker(attempt / "events.jsonl", attempt, waited_for_load=True, load_dir=group)
    tracker.log_activity(1.0)
    (group / "rank0.log").write_text("Loading the transformer\n")
    assert tracker.log_activity(2.0) and tracker.progress_at == 2.0
    assert not tracker.log_activity(3.0)  # nothing new
