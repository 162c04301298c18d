"""A test hook: FLF2V_TEST_DELAY makes named points of the run slower, so tests can push real work past the
timeouts (a decode longer than the collective timeout, one rank loading later than the others).

    FLF2V_TEST_DELAY="decode=6,load@1=5"   # sleep 6 s before the decode; 5 s at the end of loading, rank 1 only

Unset (always, outside tests) it costs one dictionary lookup per point.
"""

from __future__ import annotations

import os
import time

ENV = "FLF2V_TEST_DELAY"


def delay_seconds(point: str, rank: int, spec: str) -> float:
    """The delay that `spec` asks for at `point` on `rank` (0 when none)."""
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, seconds = item.partition("=")
        where, _, only_rank = name.partition("@")
        if where == point and (not only_rank or int(only_rank) == rank):
            return float(seconds)
    return 0.0


def delay_point(point: str, rank: int) -> None:
    spec = os.environ.get(ENV)
    if spec:
        time.sleep(delay_seconds(point, rank, spec))
