"""`--compile`: regional torch.compile of the DiT, one compiled region per transformer block.

The 40 blocks of the 14B DiT share one code path, so compiling a block compiles them all once (same shapes,
same graph) instead of tracing the whole model: start-up stays in seconds, and the FSDP2 units (one per
block) and the Ulysses processors sit at the region's edges or break the graph cleanly. `nn.Module.compile`
compiles in place, so parameter names, FSDP sharding and the loaders are untouched.
"""

from __future__ import annotations

import logging

from torch import nn

log = logging.getLogger("flf2v.engine")


def compile_blocks(transformer: nn.Module) -> int:
    """Compile every block of `transformer` (a WanTransformer3DModel) in place; returns how many."""
    blocks = list(transformer.blocks)  # type: ignore[union-attr, arg-type]
    for block in blocks:
        block.compile(dynamic=False)
    log.info(f"torch.compile: {len(blocks)} DiT blocks compiled regionally (the first step pays for it)")
    return len(blocks)
