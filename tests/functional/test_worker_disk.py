"""The worker and a full disk, for real: real torchrun, the real engine (or the scripted one where a rank must
die mid-save), FLF2V_HOME or its videos folder on a small tmpfs that the test mounts and fills.

The disk tests are skipped, with the reason, where the test cannot mount (not root, or no tmpfs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.mp4 import PARTIAL_NAME
from tests.disk_helpers import fill, small_tmpfs
from tests.functional.queue_helpers import (
    REPO,
    SCRIPTED,
    attempt_processes,
    attempt_rows,
    env_for,
    flf2v,
    job_row,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow

QUICK = ("--size", "64*64", "--frame_num", "9", "--sample_steps", "4")
# Long enough to fill the disk mid-denoise (made long with steps, never with sleeps); dpm++ as in
# test_worker_engine.py.
SLOW = ("--size", "128*128", "--frame_num", "17", "--sample_steps", "400", "--sample_solver", "dpm++")
FINAL = ("succeeded", "failed", "cancelled")


def submit(home: Path, ckpt: Path, frames: tuple[Path, Path], *extra: str, engine: str | None = None) -> int:
    proc = flf2v(home, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
                 "--last_frame", str(frames[1]), "--gpus", "2", "--base_seed", "42", "-q", *extra,
                 engine=engine)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def start_worker(home: Path, log: Path, *args: str, engine: str | None = None) -> subprocess.Popen:
    """A worker whose own output goes to `log`, off the disk that the test fills."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flf2v_tui.cli", "worker", "--cpu-slots", "1", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env_for(home, engine), cwd=REPO,
        )  # fmt: skip


def test_the_worker_rides_out_a_full_home_disk_mid_render(qhome, tiny_ckpt, qframes, tmp_path):
    log = tmp_path / "worker.log"
    with small_tmpfs(qhome, "16m"):
        # No retries: a retry would wait for room and then render again (test_a_full_videos_disk... has that).
        job = submit(qhome, tiny_ckpt, qframes, "--prompt", "a small blue bird takes off", "--retries", "0", *SLOW)
        worker = start_worker(qhome, log)
        try:
            wait_for(lambda: ((attempt_rows(qhome, job) or [{}])[0].get("step") or 0) >= 2, what="denoising")
            ballast = fill(qhome)
            wait_for(lambda: "disk full on" in log.read_text(), what="the worker to say the disk is full")
            wait_for(lambda: not attempt_processes(qhome), what="the render to end")
            # The render's end cannot be written while the disk is full: the worker keeps it and retries.
            time.sleep(6)  # a few of its retries (after 1, 2, 4 s)
            assert worker.poll() is None, log.read_text()
            assert job_row(qhome, job)["state"] == "running"
            ballast.unlink()
            wait_for(lambda: job_row(qhome, job)["state"] in FINAL, what="the job's end to be recorded")
            row, attempts = job_row(qhome, job), attempt_rows(qhome, job)
            assert stop(worker) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
    said = log.read_text()
    # Said once, when the disk filled, however many writes failed (the job's own end says it once more).
    assert said.count("] disk full on") == 1 and "storage works again after" in said, said
    assert "Traceback" not in said, said
    # The home's disk filled: the render could write neither its events nor its exit status. It is not the
    # network's fault; with no retries left it fails, saying how to go on.
    assert (row["state"], row["failure_class"], len(attempts)) == ("failed", "disk_full", 1), said
    assert f"disk full on {qhome.resolve()}" in attempts[0]["failure_message"]
    assert "flf2v retry" in row["state_reason"]


def test_a_render_outlives_a_full_database_disk_and_the_worker_stopped_on_it(qhome, stub_ckpt, qframes, tmp_path):
    """Only the database's disk fills (the render's folders are elsewhere, so the render goes on): the worker
    keeps watching, and stopped while the disk is full it hands the render over without a traceback, though
    it cannot write the hand-off; the next worker re-attaches it and records its success."""
    log, again_log, gate = tmp_path / "worker.log", tmp_path / "again.log", tmp_path / "finish"
    with small_tmpfs(qhome, "4m"):
        for name in ("jobs", "videos"):
            (tmp_path / name).mkdir()
            (qhome / name).symlink_to(tmp_path / name)
        # Progress to write for 8 s, then the render waits before its last step until the test lets it end.
        script = f"script: steps=80 step_s=0.1 gate={gate}"
        job = submit(qhome, stub_ckpt, qframes, "--prompt", script, engine=SCRIPTED)
        worker = start_worker(qhome, log, engine=SCRIPTED)
        try:
            wait_for(lambda: ((attempt_rows(qhome, job) or [{}])[0].get("step") or 0) >= 2, what="the first steps")
            ballast = fill(qhome)
            wait_for(lambda: "] disk full on" in log.read_text(), what="the worker to say the disk is full")
            assert stop(worker) == 0, log.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
        said = log.read_text()
        assert f"could not write the hand-off (disk full on {qhome.resolve()} (" in said, said
        assert "job 1 keeps running" in said and "Traceback" not in said, said
        assert attempt_processes(qhome), "the render must outlive the worker"
        ballast.unlink()
        again = start_worker(qhome, again_log, "--once", engine=SCRIPTED)
        try:
            wait_for(lambda: "re-attached" in again_log.read_text(), what="the next worker to re-attach the render")
            gate.touch()
            assert again.wait(timeout=120) == 0, again_log.read_text()
        finally:
            if again.poll() is None:
                again.kill()
        row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    assert (row["state"], attempt["state"], attempt["step"]) == ("succeeded", "succeeded", 80), again_log.read_text()


def test_a_full_videos_disk_is_disk_full_in_one_line_and_the_job_waits_for_room(qhome, tiny_ckpt, qframes, tmp_path):
    """disk_full is retried only once the disk has room: until then the job waits, queued, and says for what;
    no worker takes it (and spends a retry on it) while the disk is still full."""
    videos = qhome / "videos"
    with small_tmpfs(videos, "4m"):
        ballast = fill(videos)  # (the unit tests of the writer cover disks with some room left)
        job = submit(qhome, tiny_ckpt, qframes, "--prompt", "a small blue bird takes off", "--retries", "2", *QUICK)
        run = flf2v(qhome, "worker", "--once", "--cpu-slots", "1", timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        row, attempts = job_row(qhome, job), attempt_rows(qhome, job)
        leftovers = [p.name for p in videos.iterdir() if p.name != "ballast"]
        # Still full: another worker leaves the job where it is.
        again = flf2v(qhome, "worker", "--once", "--cpu-slots", "1", timeout=300)
        assert again.returncode == 0 and f"still queued: {job} " in again.stdout, again.stdout + again.stderr
        waiting, tried = job_row(qhome, job), len(attempt_rows(qhome, job))
        listed = flf2v(qhome, "ls").stdout
        ballast.unlink()
        last = flf2v(qhome, "worker", "--once", "--cpu-slots", "1", timeout=300)
        assert last.returncode == 0, last.stdout + last.stderr
        done, attempts_after = job_row(qhome, job), attempt_rows(qhome, job)
    assert (row["state"], row["failure_class"], row["retries_used"], len(attempts)) == ("queued", "disk_full", 1, 1)
    assert attempts[0]["failure_class"] == "disk_full", run.stdout
    message = attempts[0]["failure_message"]
    # One line naming the folder, what is free and what is needed; not ffmpeg's banner, not a lost peer.
    assert message.startswith(f"no space left in {qhome.resolve() / 'videos'} for ") and "\n" not in message
    assert " free, about " in message and " needed" in message and len(message) < 300, message
    assert attempts[0]["failing_rank"] == 0 and "comm" not in row["state_reason"]
    assert leftovers == []  # no partial file either
    # Waiting: the NOTE says for what (at least the 1 MiB under which a disk counts as full).
    assert (waiting["state"], tried) == ("queued", 1), again.stdout
    note = f"waits for space: 0 B free on {qhome.resolve() / 'videos'}, about 1.0 MiB needed"
    assert waiting["state_reason"] == note and note in listed, listed
    assert (done["state"], len(attempts_after), done["retries_used"]) == ("succeeded", 2, 1), last.stdout
    assert done["failure_class"] is None and Path(done["output_path"]).parent == qhome.resolve() / "videos"


def test_a_writer_killed_mid_save_leaves_no_partial_and_verify_reports_strays(qhome, stub_ckpt, qframes, tmp_path):
    """A rank killed while saving leaves `.<name>.partial-<pid>.mp4`: the worker removes the partial files of
    the attempt that ended (and only those), and `videos verify` reports any other one whose writer is gone."""
    videos = qhome / "videos"
    videos.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    strays = {
        "gone": videos / f".000099-someone-s1.partial-{int(dead.stdout)}.mp4",  # its writer has exited
        "live": videos / f".000098-saving-now-s1.partial-{os.getpid()}.mp4",  # a write in progress
    }
    for path in strays.values():
        path.write_bytes(b"\0" * 100)
    log, never = tmp_path / "worker.log", tmp_path / "never-made"
    # The save stops half-way, its partial file on disk, until `never` exists: the test kills the writer there.
    script = f"script: steps=1 frames=40 side=64 save_gate={never}"
    job = submit(qhome, stub_ckpt, qframes, "--prompt", script, "--retries", "0", engine=SCRIPTED)
    worker = start_worker(qhome, log, "--once", engine=SCRIPTED)
    try:
        partial = wait_for(
            lambda: next((p for p in videos.iterdir() if PARTIAL_NAME.match(p.name) and p not in strays.values()),
                         None),
            every=0.01, what="rank 0 to start saving",
        )  # fmt: skip
        writer = int(PARTIAL_NAME.match(partial.name)["pid"])
        os.kill(writer, signal.SIGKILL)
        assert worker.wait(timeout=120) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    row = job_row(qhome, job)
    assert (row["state"], row["failure_class"]) == ("failed", "killed"), log.read_text()
    assert not partial.exists(), log.read_text()
    assert f"removed {partial.name}" in log.read_text()
    assert all(path.exists() for path in strays.values())  # not this attempt's: the worker leaves them

    proc = flf2v(qhome, "videos", "verify", "--json")
    assert proc.returncode == 1
    findings = [(f["kind"], Path(f["path"]).name) for f in json.loads(proc.stdout)]
    assert findings == [("stray", strays["gone"].name)]
    assert f"{strays['gone']}" in flf2v(qhome, "videos", "verify").stdout


def test_a_bad_video_on_a_nearly_full_disk_fails_its_check_and_is_not_taken_for_a_full_disk(
    qhome, stub_ckpt, qframes, tmp_path
):
    """The video is written (there is room for it) but is not what the engine said: that is the video's fault,
    whatever the space left around it, and the job fails at once rather than waiting forever for room."""
    videos, log = qhome / "videos", tmp_path / "worker.log"
    with small_tmpfs(videos, "2m"):
        fill(videos, leave=256 << 10)  # room for the small video, less than the 1 MiB that counts as full
        job = submit(qhome, stub_ckpt, qframes, "--prompt", "script: steps=1 done_frames=10", "--retries", "0",
                     engine=SCRIPTED)  # fmt: skip
        worker = start_worker(qhome, log, "--once", engine=SCRIPTED)
        try:
            assert worker.wait(timeout=90) == 0, log.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
        row, attempts = job_row(qhome, job), attempt_rows(qhome, job)
    said = log.read_text()
    assert (row["state"], row["failure_class"], len(attempts)) == ("failed", "engine_error", 1), said
    assert "the video failed its check" in attempts[0]["failure_message"], attempts[0]["failure_message"]
    assert "9 frames, not 10" in attempts[0]["failure_message"]
    assert "disk full" not in said, said


def test_thumbnails_with_no_room_wait_for_space_and_the_video_is_then_catalogued(qhome, stub_ckpt, qframes, tmp_path):
    """The video is good, but its thumbnails find the disk full: the disk's fault, not the video's. The end
    is recorded once there is room, and the video catalogued."""
    videos, log, gate = qhome / "videos", tmp_path / "worker.log", tmp_path / "exit"
    with small_tmpfs(videos, "2m"):
        job = submit(qhome, stub_ckpt, qframes, "--prompt", f"script: steps=1 exit_gate={gate}", engine=SCRIPTED)
        worker = start_worker(qhome, log, engine=SCRIPTED)
        try:
            video = wait_for(lambda: next(videos.glob("0*.mp4"), None), what="the video to be saved")
            ballast = fill(videos)
            gate.touch()
            wait_for(lambda: "] disk full on" in log.read_text(), what="the worker to say the disk is full")
            time.sleep(3)  # a few of its retries (after 1, 2 s)
            assert job_row(qhome, job)["state"] == "running", log.read_text()
            ballast.unlink()
            wait_for(lambda: job_row(qhome, job)["state"] in FINAL, what="the job's end to be recorded")
            assert stop(worker) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
        row = job_row(qhome, job)
        thumbnails = sorted(p.name for p in (videos / f"{video.stem}.files").iterdir())
    said = log.read_text()
    assert row["state"] == "succeeded", said
    assert f"] disk full on {videos.resolve() / (video.stem + '.files')}" in said, said
    assert "catalogued as video 1" in said and "Traceback" not in said, said
    assert "sheet.png" in thumbnails, thumbnails
