"""Issue 16's smaller CLI defects: wait on a held job, option names at 80 columns, `flf2v service`."""

from __future__ import annotations

from pathlib import Path

from tests.functional.cli_in_process import run_cli


def submit(home: Path, ckpt: Path, frames: tuple[Path, Path], *extra: str) -> int:
    code, out, err = run_cli(["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame",
                              str(frames[0]), "--last_frame", str(frames[1]), "--prompt", "a heron", "-q",
                              "--other-worker", *extra], home)  # fmt: skip
    assert code == 0, err
    return int(out)


def test_wait_on_a_held_job_says_it_is_held(qhome, stub_ckpt, qframes):
    held = submit(qhome, stub_ckpt, qframes, "--hold")
    code, _, err = run_cli(["wait", str(held), "--timeout", "0.3", "-q"], qhome)
    assert code == 1
    assert err.strip() == (
        f"timed out after 0.3 s; job {held} is held and never starts until released (flf2v release {held})"
    )
    after = submit(qhome, stub_ckpt, qframes, "--after", str(held))
    code, _, err = run_cli(["wait", str(after), "--timeout", "0.3", "-q"], qhome)
    assert code == 1 and err.strip() == f"timed out after 0.3 s; job {after} is held: it waits for job {held}"
    run_cli(["release", str(held)], qhome)
    code, _, err = run_cli(["wait", str(held), "--timeout", "0.3", "-q"], qhome)
    assert code == 1 and err.strip() == f"timed out after 0.3 s; job {held} is queued"
