"""Live latent previews: a cheap linear projection from the Wan latent space to RGB.

Where the factors come from: they are fitted for the checkpoint in use, by least squares, at the start of
a job that asks for previews. We encode a few smooth random colour images with the checkpoint's own VAE,
average-pool each image to the latent grid, and solve for the 16x3 matrix and the bias that best map the
normalised latent back to those pixels. Community tools ship a hand-fitted table for the official Wan2.1
VAE; fitting our own works for any checkpoint (the embedded random-weight model included) and costs one
small VAE encode per job.

A preview is written every k steps on rank 0 in a background thread, so a step waits only for the
projection (a 16-to-3 matrix product on the latent), never for PNG encoding or the disk.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger("flf2v.engine")

FIT_IMAGES = 12
FIT_SIZE = 64  # pixels; 8x8 latent cells per image
# Tiny latents are enlarged (by whole pixels) to about this width so that viewers that do not scale show them;
# a 720p latent strip is already 480 wide. Fast zlib: the PNG is a glance, written while the next step runs.
PREVIEW_MIN_WIDTH = 240
PNG_COMPRESS_LEVEL = 1


def smooth_colour_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """[count, 3, size, size] in [-1, 1]: low-frequency colour fields, plus flat colours for the extremes."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=gen) * 2 - 1
    images = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    corners = torch.tensor([[-1, -1, -1], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [0, 0, 0]])
    for i, colour in enumerate(corners[: max(0, count // 2)]):
        images[i] = colour.view(3, 1, 1).float()
    return images


def fit_projection(
    encode: Callable[[torch.Tensor], torch.Tensor], stride: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (weight [16, 3], bias [3]) mapping normalised latents to RGB in [-1, 1].

    `encode` takes a video [3, 1, H, W] and returns the normalised latent [C, 1, H/stride, W/stride].
    """
    images = smooth_colour_images(FIT_IMAGES, FIT_SIZE)
    latents, targets = [], []
    with torch.no_grad():
        for image in images:
            z = encode(image[:, None].to(device)).float().cpu()[:, 0]  # [C, h, w]
            pooled = F.avg_pool2d(image[None], stride)[0]  # [3, h, w]
            latents.append(z.flatten(1).T)
            targets.append(pooled.flatten(1).T)
    x = torch.cat(latents).double()
    y = torch.cat(targets).double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    ridge = 1e-3 * torch.eye(design.shape[1], dtype=x.dtype)
    solution = torch.linalg.solve(design.T @ design + ridge, design.T @ y)
    return solution[:-1].float(), solution[-1].float()


def latent_to_rgb(latent: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
    """[C, T, h, w] latent -> uint8 RGB strip of the first, middle and last latent frames side by side."""
    t = latent.shape[1]
    picks = sorted({0, t // 2, t - 1})
    frames = latent[:, picks].float()
    rgb = torch.einsum("cthw,cr->rthw", frames, weight.to(frames.device)) + bias.to(frames.device).view(3, 1, 1, 1)
    strip = torch.cat(list(rgb.unbind(1)), dim=2)  # [3, h, w * frames]
    strip = ((strip.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return strip.permute(1, 2, 0).cpu().numpy()


class PreviewWriter:
    """Writes preview PNGs off the sampling thread and reports each one once it is on disk."""

    def __init__(self, folder: Path, on_written: Callable[[int, Path], None]) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.on_written = on_written
        self._queue: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, name="preview-writer", daemon=True)
        self._thread.start()

    def submit(self, step: int, pixels: np.ndarray) -> None:
        try:
            self._queue.put_nowait((step, pixels))
        except queue.Full:
            log.info(f"Preview for step {step} skipped: the writer is behind")

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            step, pixels = item
            image = Image.fromarray(pixels)
            scale = max(1, PREVIEW_MIN_WIDTH // max(1, image.width))
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
            path = self.folder / f"step-{step:04d}.png"
            tmp = path.with_suffix(".tmp.png")
            image.save(tmp, compress_level=PNG_COMPRESS_LEVEL)
            tmp.replace(path)
            self.on_written(step, path)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


class LatentPreviewer:
    """Every `every` steps (and at the last one), the current latent as a small PNG, reported by `on_written`."""

    def __init__(
        self,
        projection: tuple[torch.Tensor, torch.Tensor],
        every: int,
        folder: Path,
        on_written: Callable[[int, Path], None],
    ) -> None:
        self.weight, self.bias = projection
        self.every = every
        self.writer = PreviewWriter(folder, on_written)

    def __call__(self, step: int, total: int, latent: torch.Tensor) -> None:
        if step % self.every == 0 or step == total:
            self.writer.submit(step, latent_to_rgb(latent, self.weight, self.bias))

    def close(self) -> None:
        self.writer.close()
