"""How close a render's first and last frames came to the frames it was given (PSNR, in dB).

A first-last-frame model is asked to start and end on the two inputs; a render that drifts from them (a wrong
colour, a different composition) is visible in these two numbers without watching it. Each is measured at
the input's own resolution: the input is centre-cropped to the video's aspect ratio (the engine fits the
frames to it the same way) and the generated frame is resized to that crop.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from PIL import Image

log = logging.getLogger("flf2v.engine")
# Identical frames have an infinite PSNR, which JSON cannot carry; anything above this is "the same".
PSNR_CAP_DB = 99.0


def _crop_to_aspect(image: Image.Image, width: int, height: int) -> Image.Image:
    w, h = image.size
    if w * height > h * width:  # wider than the video: trim the sides
        keep = max(1, round(h * width / height))
        left = (w - keep) // 2
        return image.crop((left, 0, left + keep, h))
    keep = max(1, round(w * height / width))
    top = (h - keep) // 2
    return image.crop((0, top, w, top + keep))


def psnr(generated: np.ndarray, reference: Image.Image) -> float:
    """PSNR of one generated frame ([H, W, 3] uint8) against an input image, at the input's resolution."""
    height, width = generated.shape[:2]
    target = _crop_to_aspect(reference.convert("RGB"), width, height)
    resized = Image.fromarray(generated).resize(target.size, Image.Resampling.BICUBIC)
    diff = np.asarray(resized, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0:
        return PSNR_CAP_DB
    return round(min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse)), 2)


def endpoint_psnr(frames: np.ndarray, first_frame: str, last_frame: str) -> dict[str, float]:
    """{"psnr_first": dB, "psnr_last": dB} for a video's frames ([F, H, W, 3] uint8) and its two inputs; {}
    (and a warning in the log) if an input can no longer be read: the measure never fails a finished render."""
    try:
        with Image.open(first_frame) as first, Image.open(last_frame) as last:
            return {"psnr_first": psnr(frames[0], first), "psnr_last": psnr(frames[-1], last)}
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        log.warning(f"PSNR against the inputs not measured: {type(exc).__name__}: {exc}")
        return {}
