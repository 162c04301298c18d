"""Live latent previews: a cheap linear projection from the Wan latent space to RGB, within a time budget.

Where the factors come from. The 16x3 matrix and the 3 biases are not a published table: they are fitted at
the start of every job that asks for previews, to the checkpoint's own VAE, by `fit_projection`. Its inputs
are 12 images of 64x64 pixels: 6 flat colours (black, white, red, green, blue, grey) and 6 smooth random
colour fields (4x4 random colours upsampled bicubically). Each is encoded by the VAE as a one-frame video
(the normalised latent mean, as sampling sees it), and each image is average-pooled by the VAE's spatial
stride to the latent grid. The factors are the linear least-squares solution (normal equations in float64,
with a 1e-3 ridge term for stability) that maps each latent cell's 16 channels, plus a constant, to the
pooled RGB of that cell. Hand-fitted tables exist in community tools for the official Wan2.1 VAE; they are
not used because they hold only for those weights, and this fit works for any Wan VAE (the embedded
random-weight model included) for the cost of 12 tiny encodes per job.

What a preview costs sampling, and the 2 % budget. A preview is made on rank 0 every k steps (and at the last
step). On the sampling thread it costs only the projection of three latent frames (first, middle, last) to
8-bit RGB on the device and the copy of that small strip to the host (`project_latent`); enlarging, PNG
encoding, the file and the `preview` event are the writer thread's (`PreviewWriter`). `PreviewBudget` times
that sampling-thread work and, on a CPU device, where the writer competes for the same cores and the GIL,
the writer's whole busy time by the wall clock (its CPU time alone undercounted the measured slowdown about
twofold), and skips a due preview whenever the cost so far, plus the mean cost of one preview, would
exceed 2 % of the sampling time so far. The sampling time is counted from the end of the first step, so it
is never over-estimated; the first preview's cost cannot be known before it is made, every later one stays
within the budget. When a preview is skipped for the budget, the log says once that previews are thinned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
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
# Issue 6: previews must never slow a step by more than 2 %.
PREVIEW_BUDGET = 0.02


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


def project_latent(latent: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The sampling thread's share of a preview: [C, T, h, w] latent -> uint8 [3, h, w * 3] on the host, the
    first, middle and last latent frames side by side. 8-bit on the device, so the copy is a quarter of float's.
    Weight and bias are best already on the latent's device (LatentPreviewer puts them there once); `.to` is then
    a no-op."""
    t = latent.shape[1]
    picks = sorted({0, t // 2, t - 1})
    frames = latent[:, picks].float()
    rgb = torch.einsum("cthw,cr->rthw", frames, weight.to(frames.device)) + bias.to(frames.device).view(3, 1, 1, 1)
    strip = torch.cat(list(rgb.unbind(1)), dim=2)  # [3, h, w * frames]
    return ((strip.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def strip_image(strip: torch.Tensor) -> Image.Image:
    """The writer thread's share: the strip as a picture, enlarged by whole pixels for viewers that do not scale."""
    image = Image.fromarray(np.ascontiguousarray(strip.permute(1, 2, 0).numpy()))
    scale = max(1, PREVIEW_MIN_WIDTH // max(1, image.width))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


class PreviewBudget:
    """Whether a due preview may be made: only while what previews cost the sampling, plus the mean cost of
    one preview, stays within `share` of the sampling time so far. `background` gives the seconds the writer
    has taken from the sampling's cores so far (on a CPU device; none elsewhere). `clock` is injectable for tests."""

    def __init__(
        self,
        share: float = PREVIEW_BUDGET,
        clock: Callable[[], float] = time.perf_counter,
        background: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.share = share
        self.clock = clock
        self.background = background
        self.origin: float | None = None
        self.charged = 0.0  # seconds of preview work on the sampling thread
        self.made = 0

    def step_done(self) -> None:
        """Called after every step; the first call starts the sampling clock (the first step is not counted)."""
        if self.origin is None:
            self.origin = self.clock()

    def sampling_seconds(self) -> float:
        """Time since the end of the first step, less the preview work done on the sampling thread."""
        return 0.0 if self.origin is None else self.clock() - self.origin - self.charged

    def spent(self) -> float:
        return self.charged + self.background()

    def allows(self) -> bool:
        spent = self.spent()  # once: the writer's busy time may grow meanwhile
        expected = spent / self.made if self.made else 0.0
        sampling = self.sampling_seconds()
        return sampling > 0 and spent + expected <= self.share * sampling

    @contextlib.contextmanager
    def charge(self) -> Iterator[None]:
        """Time the preview work inside the block against the budget."""
        started = self.clock()
        try:
            yield
        finally:
            self.charged += self.clock() - started
            self.made += 1


class PreviewWriter:
    """Writes preview PNGs off the sampling thread and reports each one once it is on disk. It keeps the time
    it was busy (`busy_seconds`, by the wall clock): the conservative measure of what a CPU device's sampling pays."""

    def __init__(
        self,
        folder: Path,
        on_written: Callable[[int, Path], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.on_written = on_written
        self.clock = clock
        self._busy = 0.0
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, torch.Tensor] | None] = queue.Queue(maxsize=4)
        # Pillow loads its format plugins on the first save (tens of ms): pay that here, before sampling starts,
        # not in the first preview, whose cost the budget cannot know in advance.
        strip_image(torch.zeros(3, 1, 1, dtype=torch.uint8)).save(io.BytesIO(), format="PNG")
        self._thread = threading.Thread(target=self._run, name="preview-writer", daemon=True)
        self._thread.start()

    def busy_seconds(self) -> float:
        with self._lock:
            return self._busy

    def full(self) -> bool:
        return self._queue.full()

    def submit(self, step: int, strip: torch.Tensor) -> bool:
        """Queue the strip; False (and nothing queued) when the writer is behind. LatentPreviewer checks `full()`
        first, so that no projection is made in vain, and says so in the log; being the only producer, its
        submit then always succeeds."""
        try:
            self._queue.put_nowait((step, strip))
        except queue.Full:
            return False
        return True

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            started = self.clock()
            step, strip = item
            path = self.folder / f"step-{step:04d}.png"
            tmp = path.with_suffix(".tmp.png")
            strip_image(strip).save(tmp, compress_level=PNG_COMPRESS_LEVEL)
            tmp.replace(path)
            self.on_written(step, path)
            with self._lock:
                self._busy += self.clock() - started

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


class LatentPreviewer:
    """Every `every` steps (and at the last one), the current latent as a small PNG, reported by `on_written`,
    unless the budget (see the module's docstring) says the preview would cost the sampling too much.
    `device` is the sampling's (where the latents are); `clock` is injectable for tests."""

    def __init__(
        self,
        projection: tuple[torch.Tensor, torch.Tensor],
        every: int,
        folder: Path,
        on_written: Callable[[int, Path], None],
        device: torch.device = torch.device("cpu"),
        clock: Callable[[], float] = time.perf_counter,
        writer: PreviewWriter | None = None,
    ) -> None:
        # On the sampling device once, not copied there again by every preview.
        self.weight, self.bias = (t.to(device) for t in projection)
        self.every = every
        # torch's first-call set-up of the projection (on a GPU: its kernels and the copy to the host), on the
        # sampling device, here rather than in the first (unbudgeted) preview.
        project_latent(torch.zeros(len(self.weight), 1, 1, 1, device=device), self.weight, self.bias)
        self.writer = writer or PreviewWriter(folder, on_written)
        # The writer's PNG work slows a CPU sampling (same cores, same GIL); on a GPU it does not.
        background = self.writer.busy_seconds if device.type == "cpu" else (lambda: 0.0)
        self.budget = PreviewBudget(clock=clock, background=background)
        self.skipped = 0
        self._said_thinned = False

    def __call__(self, step: int, total: int, latent: torch.Tensor) -> None:
        self.budget.step_done()
        if not (step % self.every == 0 or step == total):
            return
        if self.writer.full():  # the projection would be thrown away
            log.info(f"Preview for step {step} skipped: the writer is behind")
            return
        if not self.budget.allows():
            self.skipped += 1
            if not self._said_thinned and self.budget.sampling_seconds() > 0:
                self._said_thinned = True
                log.info(
                    f"Previews are being thinned: one every {self.every} step(s) would cost sampling more than "
                    f"{self.budget.share:.0%} of its time here, so a due preview is skipped until it fits"
                )
            return
        with self.budget.charge():
            strip = project_latent(latent, self.weight, self.bias)
        self.writer.submit(step, strip)

    def close(self) -> None:
        self.writer.close()
