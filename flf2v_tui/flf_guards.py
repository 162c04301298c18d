"""Warnings at submit that are particular to first-last-frame video, from what users of FLF2V report. They
never refuse a job: `-q` silences them, and `--json` carries them as fields.

- The same image (or nearly) as first and last frame: the model tends to make a still clip.
- More frames than the 81 the model was trained on: longer clips repeat themselves and drift in colour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageChops, ImageStat

from engine.tasks import TASKS

TRAINED_FRAMES = TASKS["flf2v-14B"].frame_num
# Mean absolute difference of the two frames (0..1, on small grey copies) below which they count as the same
# picture: re-encoding or a slight exposure change stays well under it, a moved subject does not.
SAME_FRAMES_BELOW = 0.02
_PROBE = (64, 64)  # both frames compared at this size: cheap, and blind to a difference of resolution


@dataclass(frozen=True)
class FlfWarning:
    code: str  # "same_frames" or "long_clip", for scripts reading --json
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def frame_difference(first: str, last: str) -> float:
    """How different two images are: the mean absolute difference of small grey copies, 0 (same) to 1."""
    copies = []
    for path in (first, last):
        with Image.open(path) as image:
            copies.append(image.convert("L").resize(_PROBE, Image.Resampling.BILINEAR))
    return float(ImageStat.Stat(ImageChops.difference(*copies)).mean[0]) / 255.0


def flf_warnings(values: dict[str, Any]) -> list[FlfWarning]:
    """The warnings for a job's engine values (frames as readable paths, frame_num resolved)."""
    warnings = []
    first, last = values.get("first_frame"), values.get("last_frame")
    try:  # the frames were read as images by submit's checks; a warning is never worth failing for
        difference = frame_difference(first, last) if first and last else 1.0
    except (OSError, ValueError):
        difference = 1.0
    if difference < SAME_FRAMES_BELOW:
        warnings.append(FlfWarning(
            "same_frames",
            f"the first and last frame are the same picture or nearly so (they differ by {difference:.1%}); "
            "the model tends to make a still clip from them",
        ))  # fmt: skip
    frames = values.get("frame_num")
    if isinstance(frames, int) and frames > TRAINED_FRAMES:
        warnings.append(FlfWarning(
            "long_clip",
            f"--frame_num {frames} is more than the {TRAINED_FRAMES} frames the model was trained on; longer "
            "clips tend to repeat themselves and drift in colour",
        ))  # fmt: skip
    return warnings
