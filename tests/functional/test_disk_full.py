"""A full disk, for real: FLF2V_HOME (or its videos folder) on a small tmpfs that the test mounts and fills.

Skipped, with the reason, where the test cannot mount (not root, or no tmpfs in a container).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.disk_helpers import fill, small_tmpfs
from tests.functional.queue_helpers import flf2v

PAGE = 4096


def submit_args(ckpt: Path, first: Path, last: Path) -> list[str]:
    return ["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(first),
            "--last_frame", str(last), "--prompt", "a bird", "-q"]  # fmt: skip


def noise_frame(path: Path, side: int) -> Path:
    """A PNG that does not compress: `side`² × 3 bytes on disk, near enough."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("case", ["all full", "database full after the copies", "copies do not fit"])
def test_submit_on_a_full_disk_says_so_in_one_line_and_queues_nothing(case, qhome, stub_ckpt, qframes, tmp_path):
    first, last = qframes
    roomy_jobs = tmp_path / "roomy-jobs"
    with small_tmpfs(qhome, "2m"):
        if case == "database full after the copies":
            # The frames are copied to another disk; what is left here holds SQLite's 32 KiB shared-memory
            # file but not its log, so the COMMIT is what fails, after the copies were made.
            roomy_jobs.mkdir()
            (qhome / "jobs").symlink_to(roomy_jobs)
        if case == "copies do not fit":
            # 380 KiB each: the first copy fits in what is left, the second does not.
            first, last = noise_frame(tmp_path / "a.png", 360), noise_frame(tmp_path / "b.png", 361)
        assert flf2v(qhome, "ls").returncode == 0  # the database exists before the disk fills
        leave = {"all full": 0, "database full after the copies": 8 * PAGE, "copies do not fit": 600 * 1024}[case]
        ballast = fill(qhome, leave)

        proc = flf2v(qhome, *submit_args(stub_ckpt, first, last))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        where = qhome.resolve() / "jobs" if case == "copies do not fit" else qhome.resolve()
        said = rf"error: disk full on {re.escape(str(where))} \([\d.]+ (B|KiB) free\); about [\d.]+ MiB is needed; free"
        assert re.match(said, lines[0]), lines[0]
        needed = float(re.search(r"about ([\d.]+) MiB", lines[0])[1]) * 2**20
        assert needed >= first.stat().st_size + last.stat().st_size  # at least the copies

        ballast.unlink()
        listed = flf2v(qhome, "ls", "--all", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == []
        jobs = roomy_jobs if roomy_jobs.exists() else qhome / "jobs"
        assert os.listdir(jobs) == []  # neither a job folder nor a staging folder is left
        assert flf2v(qhome, *submit_args(stub_ckpt, first, last)).returncode == 0  # and with room, it queues


def test_retry_with_new_frames_on_a_full_disk_says_so_and_keeps_nothing_half_made(qhome, stub_ckpt, qframes, tmp_path):
    first, last = qframes
    with small_tmpfs(qhome, "2m"):
        assert flf2v(qhome, *submit_args(stub_ckpt, first, last)).returncode == 0
        assert flf2v(qhome, "cancel", "1").returncode == 0  # a finished job, so that it can be retried
        inputs = qhome / "jobs" / "1" / "inputs"
        before = sorted(os.listdir(inputs))
        # The new first frame fits in what is left, the new last frame does not.
        new_first, new_last = noise_frame(tmp_path / "a.png", 360), noise_frame(tmp_path / "b.png", 361)
        ballast = fill(qhome, 600 * 1024)

        proc = flf2v(qhome, "retry", "1", "--first_frame", str(new_first), "--last_frame", str(new_last))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        assert lines[0].startswith(f"error: disk full on {inputs.resolve()} ("), lines[0]
        assert sorted(os.listdir(inputs)) == before  # the first frame's copy went with the failed second
        ballast.unlink()
        shown = json.loads(flf2v(qhome, "show", "1", "--json").stdout)
        assert shown["state"] == "cancelled" and len(shown["attempts"]) == 0
