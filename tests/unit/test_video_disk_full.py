"""The mp4 writer on a full disk: real ffmpeg into a small tmpfs the test mounts (root only; skipped elsewhere).

ffmpeg says "No space left on device" only on its own stderr; to us it is a broken pipe (it died while frames
were still being sent) or a file that does not open (it died at the end). Either way the error must be
disk_full, in one line naming the folder, what is free and what is needed, and never a lost peer.
"""

from __future__ import annotations

import errno
import re

import numpy as np
import pytest

from engine.failures import classify
from engine.mp4 import PARTIAL_NAME, VideoDiskFullError, VideoWriteError, partial_path, partials_of, write_mp4
from tests.disk_helpers import fill, small_tmpfs


def noise(frames: int, side: int = 128) -> np.ndarray:
    return np.random.default_rng(frames).integers(0, 256, (frames, side, side, 3), dtype=np.uint8)


# 30 frames are all sent before ffmpeg fails at the end; 300 break its pipe while they are still being sent.
@pytest.mark.parametrize("frames", [30, 300])
def test_a_full_folder_is_disk_full_in_one_line(frames, tmp_path):
    videos = tmp_path / "videos"
    with small_tmpfs(videos, "256k"):
        with pytest.raises(VideoDiskFullError) as caught:
            write_mp4(noise(frames), videos / "v.mp4", fps=16)
        left = sorted(p.name for p in videos.iterdir())
    message = str(caught.value)
    assert re.fullmatch(
        rf"no space left in {re.escape(str(videos))} for v\.mp4: [\d.]+ KiB free, about [\d.]+ (KiB|MiB) needed; "
        "free some space there and run it again",
        message,
    ), message
    needed = float(re.search(r"about ([\d.]+) (KiB|MiB)", message)[1]) * (1024 if "KiB needed" in message else 2**20)
    assert needed > 200 * 1024  # more than the disk could hold (256 KiB, some of it taken by the failed write)
    assert left == []  # the partial file is gone
    assert classify(caught.value) == "disk_full"
    pipe = caught.value.__cause__
    assert pipe is not None and "FFMPEG" in str(pipe)  # ffmpeg's own failure, kept as the cause


def test_an_error_of_the_os_saying_no_space_is_disk_full_before_any_comm_marker(tmp_path):
    with small_tmpfs(tmp_path / "small", "64k") as mount:
        fill(mount)
        with pytest.raises(OSError) as caught, open(mount / "events.jsonl", "ab", buffering=0) as fh:
            fh.write(b"{}" * 40000)
    assert caught.value.errno == errno.ENOSPC and classify(caught.value) == "disk_full"
    # A write error that is not a full disk is the engine's, not the network's, whatever ffmpeg's pipe said.
    assert classify(VideoWriteError("could not write v.mp4: [Errno 32] Broken pipe")) == "engine_error"


def test_partial_names_carry_the_writer(tmp_path):
    target = tmp_path / "000001-a-bird-s42.mp4"
    mine, other = partial_path(target, 1234), partial_path(tmp_path / "000002-x-s1.mp4", 99)
    for path in (mine, other):
        path.write_bytes(b"")
    assert PARTIAL_NAME.match(mine.name)["pid"] == "1234"
    assert partials_of(target) == [(mine, 1234)]
