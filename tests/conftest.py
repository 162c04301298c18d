"""Fixtures shared by the whole suite.

`tiny_official_ckpt` and `tiny_diffusers_ckpt` are the embedded random-weight checkpoint (same seed, so the
same numbers) in both layouts, written once per session. Treat them as read-only: copy before corrupting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.tiny import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-checkpoints")


@pytest.fixture(scope="session")
def tiny_official_ckpt(tiny_checkpoints: Path) -> Path:
    return write_tiny_checkpoint(tiny_checkpoints / "official", layout="official", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_diffusers_ckpt(tiny_checkpoints: Path) -> Path:
    return write_tiny_checkpoint(tiny_checkpoints / "diffusers", layout="diffusers", preset="tiny", seed=0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped on a machine where torch sees no CUDA device."""
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in marked:
        item.add_marker(skip)
