"""What every number and text a render takes may be (torch-free).

Each engine flag's bound is filed with the flag in engine.flags (ENGINE_BOUNDS there); the engine checks its
flags against them before anything loads. The app adds the queue's own numbers in storage.spec and checks
both at its CLI options, at submit and in JobSpec, so the same value is refused with the same reason wherever
it is typed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.errors import BadInputError

# SQLite's INTEGER, torch's generator seed and the official code's seeds are all signed 64-bit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The official generate.py draws a missing seed with random.randint(0, sys.maxsize), 2**63 - 1 on 64 bits.
SEED_MAX = INT64_MAX
# The scheduler spreads the sampling steps over the 1000 timesteps the model was trained on: more steps than
# that repeat timesteps instead of refining, and each one costs a full forward pass of the 14B model.
MAX_SAMPLE_STEPS = 1000
# 2001 frames (4n+1) are over two minutes at 16 fps, 25 times the 81 frames the model was trained on. Every
# 4 frames add a latent frame to one attention sequence, so far longer clips cannot fit in any GPU's memory.
MAX_FRAME_NUM = 2001
# One job runs on one machine (--nodes 1); no machine has this many GPUs, or cores for CPU ranks.
MAX_RANKS = 1024


def shown(value: Any) -> str:
    """A value as a message quotes it: a 40-digit number is cut to its ends, so the line stays short."""
    text = repr(value) if isinstance(value, float) else str(value)
    return f"{text[:8]}…{text[-4:]} ({len(text)} digits)" if len(text) > 24 and text.lstrip("-").isdigit() else text


@dataclass(frozen=True)
class Bound:
    """The allowed range of one number; `why` says where an upper bound comes from."""

    flag: str
    low: float
    high: float
    integer: bool = True
    low_open: bool = False
    why: str = ""

    def _edge(self, edge: float) -> str:
        return str(int(edge)) if self.integer else f"{edge:g}"

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value`, as a phrase that starts with it ("0 must be at least 1"), or None."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{shown(value)} is not a number"
        if self.integer and not isinstance(value, int):
            return f"{shown(value)} must be a whole number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{shown(value)} must be a finite number"
        if self.low_open and value <= self.low:
            return f"{shown(value)} must be more than {self._edge(self.low)}"
        if value < self.low:
            return f"{shown(value)} must be at least {self._edge(self.low)}"
        if value > self.high:
            return f"{shown(value)} must be at most {self._edge(self.high)}" + (f" ({self.why})" if self.why else "")
        return None

    def check(self, value: Any, field: str | None = None) -> None:
        """Raises BadInputError naming the flag; `field` is the name the value goes by (storage.spec's)."""
        problem = self.problem(value)
        if problem:
            raise BadInputError(f"{self.flag} {problem}", field=field)


# One seed of a sweep (--seeds, --seed-range): a concrete seed, never "draw one".
SEED = Bound("seed", 0, SEED_MAX, why="seeds are 64-bit, as in the official code")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored or passed on as text, or None. Linux hands bytes that are not UTF-8 to
    Python as lone surrogates (U+DC80..U+DCFF, one per byte); SQLite, JSON and the logs take only UTF-8."""
    if "\x00" in value:
        return f"contains a NUL character at character {value.index(chr(0)) + 1}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"a lone surrogate U+{code:04X}"
        return f"is not valid UTF-8 ({what} at character {exc.start + 1})"
    return None


def check_text(flag: str, value: str | None, path: bool = False, field: str | None = None) -> None:
    problem = None if value is None else text_problem(value)
    if problem:
        fix = "rename the file (or link it) so its path is UTF-8" if path else "give it as UTF-8 text"
        raise BadInputError(f"{flag} {problem}; {fix}", field=field)
