"""`--device cuda` checked before any weights load: the one check of the engine's input that needs torch.

Kept apart from engine.checks, which the app imports and which therefore imports no torch (see the import
contracts in pyproject.toml).
"""

from __future__ import annotations

from engine.errors import BadInputError


def check_device(choice: str, local_rank: int) -> None:
    """`--device cuda` on a machine (or a rank) without its CUDA device is bad input, found before anything
    loads. torch is imported only when CUDA is asked for, so other bad input stays quick to report."""
    if choice != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise BadInputError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu or auto)")
    if local_rank >= torch.cuda.device_count():
        raise BadInputError(
            f"--device cuda: local rank {local_rank} has no GPU of its own (torch sees "
            f"{torch.cuda.device_count()}); start at most that many processes per node"
        )
