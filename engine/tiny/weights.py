"""Seeded random tensors for a model's state dict, independent of the order they are drawn in.

Each tensor has its own generator, seeded from the checkpoint seed and the tensor's name, so the same seed
gives the same weights whatever else changes. The values are scaled so that activations stay of order one
and every norm weight and bias differs from its default: a mix-up of two norms in a key map then shows.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn


def _is_norm(key: str) -> bool:
    return any("norm" in part or part == "gamma" for part in key.split("."))


def seeded_tensor(seed: int, component: str, key: str, shape: Sequence[int]) -> Tensor:
    # The CPU generator keeps only 32 bits of its seed, so the seed goes into the hash with the name.
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{component}/{key}".encode()))
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    if key.endswith("bias"):
        return 0.02 * noise
    if _is_norm(key):
        return 1.0 + 0.1 * noise
    if key.endswith("scale_shift_table") or key.endswith("modulation"):
        return noise / math.sqrt(shape[-1])
    if len(shape) <= 1:
        return 0.1 * noise
    return noise / math.sqrt(math.prod(shape[1:]))  # fan-in scaling


def random_state(
    seed: int, component: str, shapes: Mapping[str, Sequence[int]], skip: Iterable[str] = ()
) -> dict[str, Tensor]:
    skipped = set(skip)
    return {k: seeded_tensor(seed, component, k, s) for k, s in shapes.items() if k not in skipped}


def model_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a (possibly meta) model's state dict."""
    return {k: tuple(t.shape) for k, t in model.state_dict(keep_vars=True).items()}
