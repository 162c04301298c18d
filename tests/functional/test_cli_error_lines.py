"""An error is one line that blames the right thing: output that cannot be written is not the home's disk,
and a path or prompt that holds a line break does not break the line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.queue_helpers import REPO, env_for, flf2v

OUTPUT_FULL = (
    "error: could not write the output (no space left on the device it goes to); free some space there or send it "
    "elsewhere"
)


def submit_args(ckpt: Path, first: Path | str, last: Path | str, *more: str) -> list[str]:
    return ["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(first),
            "--last_frame", str(last), "--prompt", "a bird", "-q", *more]  # fmt: skip


def run_into(home: Path, stdout: str, stderr: str | None, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI with its stdout (and stderr, unless None: then captured) opened on the files named."""
    with open(stdout, "wb") as out, open(stderr or os.devnull, "wb") as err:
        return subprocess.run(
            [sys.executable, "-m", "flf2v_tui.cli", *args],
            stdout=out,
            stderr=subprocess.PIPE if stderr is None else err,
            env=env_for(home),
            cwd=REPO,
            timeout=120,
        )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, whose every write fails with ENOSPC")
def test_output_to_a_full_device_is_said_as_such_not_as_the_home_disk(qhome, stub_ckpt, qframes):
    # 300 jobs: `ls --all` writes far more than a buffer's 8 KiB in one go, `show 1` a little that only fills it.
    assert flf2v(qhome, *submit_args(stub_ckpt, *qframes, "--seed-range", "1..300", "--hold")).returncode == 0
    for args in (["show", "1"], ["ls", "--all"], ["ls", "--all", "--json"], ["videos", "ls"]):
        proc = run_into(qhome, "/dev/full", None, *args)
        said = proc.stderr.decode()
        assert proc.returncode == 1, (args, said)
        assert said.splitlines() == [OUTPUT_FULL], (args, said)  # nothing more at exit either
    # stderr on the full device too: nothing can be said, and exit 1 says it, without a traceback's hang.
    both = run_into(qhome, "/dev/full", "/dev/full", "ls", "--all")
    assert both.returncode == 1
    assert len(json.loads(flf2v(qhome, "ls", "--all", "--json").stdout)) == 300  # and nothing changed


def test_an_error_that_quotes_a_line_break_stays_on_one_line(qhome, stub_ckpt, qframes, tmp_path):
    first, last = qframes
    odd = tmp_path / "a\nb\rc\td.png"
    proc = flf2v(qhome, *submit_args(stub_ckpt, odd, last))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: first frame {tmp_path}/a\\nb\\rc\\td.png does not exist"]
    proc = flf2v(qhome, *submit_args(stub_ckpt, first, last, "--save_file", str(tmp_path / "two\nlines.avi")))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: --save_file {tmp_path}/two\\nlines.avi must end in .mp4"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert json.loads(flf2v(qhome, "ls", "--all", "--json").stdout) == []
