"""disk_full waits for room: the policy retries it whatever --retry-on says (while retries remain, with no
back-off), and the claim leaves the job queued, saying for what, until the folder that was full has room.

Real SQLite and real file systems: what a job waits for is set by the bytes its failure says were needed
(more than any disk holds, or a few), not by filling a disk; tests/functional/test_worker_disk.py fills one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.diskspace import LOW_SPACE_BYTES
from engine.mp4 import _no_space_message
from storage.attempts import Outcome, finish, set_launched
from storage.claim import Assignment, claim_next
from storage.jobs import get_job
from storage.policy import decide
from storage.space import needed_bytes, space_wait
from storage.workers import WorkerIdentity

ME = WorkerIdentity("host", 1, 1.0)
NEVER_ROOM = 1 << 60  # bytes no disk here has free


def claim(conn, home, **kw):
    fit = lambda n: Assignment("cpu", ("cpu0",))  # noqa: E731
    return claim_next(conn, ME, fit, lambda j, n: str(home.attempt_dir(j, n)), **kw)


def fail_for_space(conn, home, job_id: int, videos: Path, needed: int) -> str | None:
    """Claim the job, and end its attempt as the engine's writer ends one that found `videos` full."""
    got = claim(conn, home, only_jobs={job_id})
    assert got is not None
    set_launched(conn, got.attempt_id, 4321, 1.0, None, str(videos / "v.mp4"))
    message = _no_space_message(videos / "v.mp4", 0, 0, 1, needed * 8)  # needs an eighth of the raw frames
    return finish(conn, got.attempt_id, Outcome("failed", 1, "disk_full", 0, message))


def test_the_engine_says_what_it_needed_and_the_job_waits_for_at_least_that(tmp_path):
    message = _no_space_message(tmp_path / "v.mp4", 0, 0, 9, 8 * (5 << 20))
    assert needed_bytes(message) == 5 << 20
    wait = space_wait(message, str(tmp_path / "v.mp4"), str(tmp_path / "jobs" / "1" / "attempt-1"))
    assert wait is not None and (wait.folder, wait.needed) == (tmp_path, 5 << 20)
    assert wait.free == shutil.disk_usage(tmp_path).free
    # Never less than the space under which a disk counts as full: the next attempt would fail at once.
    small = space_wait("disk full on /x (0 B free)", str(tmp_path / "v.mp4"), None)
    assert small is not None and small.needed == LOW_SPACE_BYTES and small.folder == tmp_path
    assert space_wait("disk full", None, None) is None


def test_disk_full_is_retried_whatever_retry_on_says_with_no_back_off_until_retries_run_out():
    job = {"id": 7, "retry_on": "comm", "max_retries": 2, "retries_used": 1, "retry_backoff": 30.0}
    waits = decide(job, "disk_full", "no space left in /v")
    assert (waits.retry, waits.delay_s) == (True, 0.0) and "retry 2 of 2 once there is room" in waits.reason
    spent = decide({**job, "retries_used": 2}, "disk_full", "no space left in /v")
    assert not spent.retry and "gave up after 2 retries" in spent.reason and "flf2v retry 7" in spent.reason
    never = decide({**job, "max_retries": 0}, "disk_full", "no space left in /v")
    assert not never.retry and "flf2v retry 7" in never.reason and "gave up" not in never.reason


def test_a_job_waits_queued_for_room_and_jobs_behind_it_still_run(conn, home, queue, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    first, behind = queue(max_retries=2), queue()
    conn.execute("UPDATE jobs SET priority = 1 WHERE id = ?", (first,))
    assert fail_for_space(conn, home, first, videos, NEVER_ROOM) == "queued"
    job = get_job(conn, first)
    assert (job["failure_class"], job["retries_used"], job["not_before"] <= job["queued_at"]) == ("disk_full", 1, True)
    assert job["state_reason"].startswith("waits for space: ") and f" free on {videos}, about " in job["state_reason"]
    got = claim(conn, home)
    assert got is not None and got.job["id"] == behind  # the waiting job, first in line, is passed over
    assert claim(conn, home) is None and get_job(conn, first)["state"] == "queued"
    assert get_job(conn, first)["state_reason"].startswith("waits for space: ")


def test_once_there_is_room_the_job_is_claimed_and_no_longer_waits(conn, home, queue, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    job_id = queue(max_retries=1)
    assert fail_for_space(conn, home, job_id, videos, 1000) == "queued"  # 1000 bytes: there is room here
    assert not get_job(conn, job_id)["state_reason"].startswith("waits for space")  # nothing to wait for
    got = claim(conn, home)
    assert got is not None and got.job["id"] == job_id and got.job["failure_class"] is None
    # Its retries spent, the next disk_full fails it with the hint, as any class without retries left.
    finish(conn, got.attempt_id, Outcome("failed", 1, "disk_full", 0, f"disk full on {videos} (0 B free)"))
    job = get_job(conn, job_id)
    assert (job["state"], job["failure_class"]) == ("failed", "disk_full") and "flf2v retry" in job["state_reason"]
