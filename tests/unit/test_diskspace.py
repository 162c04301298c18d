"""engine.diskspace: the one size formatter, free space and the full-disk test that the engine, the queue's
storage errors and the app's views share. The full disks are real (a small tmpfs; root only, skipped elsewhere)."""

from __future__ import annotations

import errno
import itertools
import subprocess
import sys

import pytest

from engine.diskspace import LOW_SPACE_BYTES, free_bytes, human_size, nearest_existing, nearly_full, out_of_space
from tests.disk_helpers import fill, small_tmpfs


@pytest.mark.parametrize(
    ("size", "said"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (12 * 1024, "12.0 KiB"),
        ((1 << 20) - 1, "1024.0 KiB"),  # rounded in its unit, never moved up to the next
        (5 << 20, "5.0 MiB"),
        (int(1.3 * (1 << 30)), "1.3 GiB"),
        (80 << 30, "80.0 GiB"),
        (1 << 40, "1.0 TiB"),
        (1 << 50, "1024.0 TiB"),  # TiB is the largest unit
        (-2048, "-2.0 KiB"),
    ],
)
def test_sizes_read_in_binary_units(size, said):
    assert human_size(size) == said


def test_the_module_is_torch_and_numpy_free():
    # storage and `flf2v submit` import it, and submit must start without either.
    code = "import sys, engine.diskspace; print([m for m in ('torch', 'numpy') if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def _chained(*links: BaseException) -> BaseException:
    """links[0] raised while handling links[1], and so on (each one's context is the next)."""
    for outer, inner in itertools.pairwise(links):
        outer.__context__ = inner
    return links[0]


def test_no_space_is_found_anywhere_in_the_chain_by_errno_or_by_words():
    assert out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert out_of_space(_chained(RuntimeError("broken pipe"), OSError(errno.EDQUOT, "quota")))
    assert out_of_space(_chained(ValueError("x"), RuntimeError("ffmpeg: No space left on device")))
    assert out_of_space(RuntimeError("Disk quota exceeded"))
    assert not out_of_space(_chained(RuntimeError("broken pipe"), OSError(errno.EPIPE, "Broken pipe")))


def test_a_chain_that_loops_ends():
    first, second = RuntimeError("a"), RuntimeError("b")
    _chained(first, second, first)  # second's context is first again
    assert not out_of_space(first)
    second.__context__ = OSError(errno.ENOSPC, "full")
    assert out_of_space(first)


def test_a_folder_left_with_next_to_no_space_is_full_whatever_the_error_said(tmp_path):
    plain = RuntimeError("could not write: broken pipe")
    assert not out_of_space(plain, tmp_path)  # a test machine's temporary folder has far more than 1 MiB free
    mount = tmp_path / "small"
    with small_tmpfs(mount, "2m"):
        not_yet_made = mount / "videos" / "v.mp4"
        assert nearest_existing(not_yet_made) == mount
        roomy = free_bytes(not_yet_made)
        assert roomy is not None and roomy > LOW_SPACE_BYTES and not nearly_full(not_yet_made)
        fill(mount)
        free = free_bytes(not_yet_made)
        assert free is not None and free < LOW_SPACE_BYTES and nearly_full(not_yet_made)
        assert out_of_space(plain, not_yet_made.parent) and not out_of_space(plain)
