"""MP4 files through the ffmpeg that imageio-ffmpeg ships: H.264 yuv420p written atomically and verified, and read
back. Torch-free, so the app and the test engine can use it too."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The official writer passes quality=8 to imageio, which imageio-ffmpeg turns into libx264 -crf 10.
OFFICIAL_QUALITY = 8


class VideoWriteError(RuntimeError):
    pass


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
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}.mp4")
    count, height, width = frames.shape[0], frames.shape[1], frames.shape[2]
    params = ["-movflags", "+faststart", *extra_params]
    for key, value in (metadata or {}).items():
        params += ["-metadata", f"{key}={value}"]
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
        writer.close()
        written = count_frames(tmp)
        if written != count:
            raise VideoWriteError(f"{target.name}: wrote {count} frames but the file holds {written}")
        os.replace(tmp, target)
    except BaseException as exc:
        # BaseException too: a termination signal mid-write (the engine raises it as an exception) must not
        # leave the temporary file behind. Its folder may not exist, hence the suppress.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, VideoWriteError) or not isinstance(exc, Exception):
            raise
        raise VideoWriteError(f"could not write {target}: {exc}") from exc
    return target
