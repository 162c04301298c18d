"""MP4 files through the ffmpeg that imageio-ffmpeg ships: H.264 yuv420p written atomically and verified, and read
back. Torch-free, so the app and the test engine can use it too."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.diskspace import free_bytes, human_size, out_of_space

# The official writer passes quality=8 to imageio, which imageio-ffmpeg turns into libx264 -crf 10.
OFFICIAL_QUALITY = 8

# The partial file a write goes to, beside the target: `.<stem>.partial-<writer pid>.mp4`.
PARTIAL_NAME = re.compile(r"^\.(?P<stem>.+)\.partial-(?P<pid>\d+)\.mp4$")
_FFMPEG_BANNER = ("ffmpeg version", "built with", "configuration:", "libav", "libsw", "libpostproc", "FFMPEG STDERR")


class VideoWriteError(RuntimeError):
    # Never a lost peer, whatever ffmpeg's pipe said (engine.failures reads this before its comm markers).
    failure_class = "engine_error"


class VideoDiskFullError(VideoWriteError):
    """The video's folder ran out of space while the video was written."""

    failure_class = "disk_full"


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: float
    duration: float
    codec: str = ""  # as ffmpeg names the video stream's codec, e.g. "h264"
    pix_fmt: str = ""  # e.g. "yuv420p"


def count_frames(path: str | os.PathLike[str]) -> int:
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return int(frames)


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode frame by frame as [H, W, 3] uint8, so a long video never has to fit in memory at once."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    width, height = next(reader)["size"]
    for buf in reader:
        yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)


def read_frames(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an mp4 to [F, H, W, 3] uint8 (used to verify outputs and in tests)."""
    frames = list(iter_frames(path))
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), dtype=np.uint8)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Size, exact frame count (by decoding), frame rate and duration; raises OSError if it does not open."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        reader.close()
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, StopIteration, OSError) as exc:
        raise OSError(f"{path} does not open as a video: {exc}") from None
    width, height = meta["size"]
    fps = float(meta.get("fps") or 0.0)
    duration = frames / fps if fps else float(meta.get("duration") or 0.0)
    # ffmpeg's stream line says e.g. "yuv420p(progressive)": the pixel format is the part before "(".
    pix_fmt = str(meta.get("pix_fmt") or "").split("(")[0]
    return VideoInfo(
        int(width), int(height), int(frames), fps, round(duration, 4), str(meta.get("codec") or ""), pix_fmt
    )


def partial_path(target: str | os.PathLike[str], pid: int) -> Path:
    target = Path(target)
    return target.with_name(f".{target.stem}.partial-{pid}.mp4")


def partials_of(target: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """The partial files a write of `target` left or is making, with their writers' pids."""
    target = Path(target)
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            match = PARTIAL_NAME.match(entry.name)
            if match and match["stem"] == target.stem:
                found.append((Path(entry.path), int(match["pid"])))
    return found


def _ffmpeg_summary(text: str, limit: int = 400) -> str:
    """ffmpeg's failure without its banner and command line (2,800 characters of build flags otherwise)."""
    kept, skip_next = [], False
    for line in (raw.strip() for raw in text.splitlines()):
        if skip_next or not line:
            skip_next = False
            continue
        if line.startswith("FFMPEG COMMAND"):
            skip_next = True
        elif not line.startswith(_FFMPEG_BANNER):
            kept.append(line)
    summary = " | ".join(kept)
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


def _no_space_message(target: Path, written: int, sent: int, count: int, raw_bytes: int) -> str:
    # The file grows about evenly with the frames sent, and a quarter more stands for the frames ffmpeg still
    # held in its encoder when the disk filled; with nothing written yet, H.264 at this quality is taken to be
    # an eighth of the raw frames.
    needed = written * count // sent * 5 // 4 if written and sent else raw_bytes // 8
    free = free_bytes(target.parent)
    have = f"{human_size(free)} free" if free is not None else "its free space unknown"
    return (
        f"no space left in {target.parent} for {target.name}: {have}, about {human_size(needed)} "
        "needed; free some space there and run it again"
    )


def write_mp4(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    fps: int,
    metadata: dict[str, str] | None = None,
    extra_params: Sequence[str] = (),
) -> Path:
    """Write frames [F, H, W, 3] uint8 to `path` atomically and confirm the frame count by reading it back."""
    import imageio_ffmpeg

    target = Path(path)
    tmp = partial_path(target, os.getpid())
    count, height, width = frames.shape[0], frames.shape[1], frames.shape[2]
    params = ["-movflags", "+faststart", *extra_params]
    for key, value in (metadata or {}).items():
        params += ["-metadata", f"{key}={value}"]
    sent = 0
    try:
        # Inside the try: a folder that cannot be made (a file in the way) is a write error like any other.
        target.parent.mkdir(parents=True, exist_ok=True)
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=OFFICIAL_QUALITY,
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=params,
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
            sent += 1
        writer.close()
        written = count_frames(tmp)
        if written != count:
            raise VideoWriteError(f"{target.name}: wrote {count} frames but the file holds {written}")
        os.replace(tmp, target)
    except BaseException as exc:
        # BaseException too: a termination signal mid-write (the engine raises it as an exception) must not
        # leave the temporary file behind. Its folder may not exist, hence the suppress. Space is judged
        # before the partial file goes, since removing it frees what the write had taken. ffmpeg says it ran out
        # of space only on its own stderr, so what is left in the folder decides when its words do not reach us.
        full = isinstance(exc, Exception) and out_of_space(exc, target.parent)
        size = 0
        with contextlib.suppress(OSError):
            size = tmp.stat().st_size
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        if full:
            message = _no_space_message(target, size, sent, count, int(frames.nbytes))
            raise VideoDiskFullError(message) from exc
        if isinstance(exc, VideoWriteError):
            raise
        raise VideoWriteError(f"could not write {target}: {_ffmpeg_summary(str(exc))}") from exc
    return target
