"""A missing or zero-byte flf2v.db beside job folders is refused, with one line, until `flf2v --force`."""

from __future__ import annotations

from pathlib import Path

from tests.functional.queue_helpers import flf2v


def _submit(home: Path, ckpt: Path, frames: tuple[Path, Path], prompt: str):
    return flf2v(home, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
                 "--last_frame", str(frames[1]), "--prompt", prompt, "--gpus", "1", "--hold")  # fmt: skip


def _lose_database(home: Path, damage: str) -> Path:
    db = home / "flf2v.db"
    for path in (db, home / "flf2v.db-wal", home / "flf2v.db-shm"):
        path.unlink(missing_ok=True)
    if damage == "empty":
        db.write_bytes(b"")
    return db


def _refused(proc, said: str, command: str) -> None:
    assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {said};"), proc.stderr
    assert f"run again with --force to start a new queue: flf2v --force {command} " in proc.stderr


def test_an_empty_database_beside_job_folders_is_refused_until_force(qhome, qframes, stub_ckpt):
    for prompt in ("first", "second"):
        assert _submit(qhome, stub_ckpt, qframes, prompt).returncode == 0
    jobs = qhome / "jobs"
    old_inputs = sorted(p.name for p in (jobs / "1" / "inputs").iterdir())
    db = _lose_database(qhome, "empty")

    said = f"the database {db} is empty while 2 job folders exist in {jobs}"
    for command in (("ls",), ("worker", "--once", "--cpu-slots", "1")):
        _refused(flf2v(qhome, *command), said, command[0])
    _refused(_submit(qhome, stub_ckpt, qframes, "third"), said, "submit")
    doctor = flf2v(qhome, "doctor")
    assert doctor.returncode == 1 and f"FAIL  database   {said}" in doctor.stdout, doctor.stdout
    assert db.stat().st_size == 0, "a refusal left the file as it was"

    # The user's say-so starts a new queue; the old job folders are kept, moved aside when an id comes round again.
    assert flf2v(qhome, "--force", "ls").returncode == 0
    assert db.stat().st_size > 0
    assert _submit(qhome, stub_ckpt, qframes, "after").returncode == 0, "a new queue, once made, needs no --force"
    (orphan,) = jobs.glob("1.orphan-*")
    assert sorted(p.name for p in (orphan / "inputs").iterdir()) == old_inputs
    assert (jobs / "2").is_dir()


def test_a_missing_database_beside_job_folders_is_refused_until_force(qhome, qframes, stub_ckpt):
    assert _submit(qhome, stub_ckpt, qframes, "first").returncode == 0
    db = _lose_database(qhome, "missing")
    _refused(flf2v(qhome, "ls"), f"the database {db} is missing while 1 job folder exists in {qhome / 'jobs'}", "ls")
    assert not db.exists()
    assert flf2v(qhome, "--force", "ls").returncode == 0
    assert db.stat().st_size > 0


def test_an_empty_database_with_no_job_folders_is_a_new_queue(qhome):
    (qhome / "flf2v.db").write_bytes(b"")
    (qhome / "jobs" / ".staging-left-by-a-killed-submit").mkdir(parents=True)
    proc = flf2v(qhome, "ls")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (qhome / "flf2v.db").stat().st_size > 0
