"""A sparkline on a fixed scale. Textual's Sparkline scales each series to its own minimum and maximum, so a GPU
idling between 2 and 3 % draws the same full bars as one busy at 97 %; here a bar's height is its value's share
of a ceiling the caller names (100 for percentages, the highest peak for memory in bytes)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

BARS = "▁▂▃▄▅▆▇█"


def spark_text(values: Sequence[float], ceiling: float, width: int) -> str:
    """One character per sample, newest on the right (a series shorter than `width` is padded on the left);
    a longer series is cut into `width` runs, each drawn at its highest value."""
    if width <= 0:
        return ""
    if len(values) > width:
        bounds = [len(values) * i // width for i in range(width + 1)]
        values = [max(values[a:b]) for a, b in pairwise(bounds)]
    top = ceiling if ceiling > 0 else 1.0
    bars = "".join(BARS[min(max(int(v / top * len(BARS)), 0), len(BARS) - 1)] for v in values)
    return bars.rjust(width)


class ScaledSparkline(Widget):
    DEFAULT_CSS = """
    ScaledSparkline { height: 1; color: $primary; }
    """
    data: reactive[tuple[float, ...]] = reactive(tuple)
    ceiling: reactive[float] = reactive(100.0)

    def __init__(self, data: Sequence[float], ceiling: float = 100.0, **kw: str) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.set_reactive(ScaledSparkline.data, tuple(data))
        self.set_reactive(ScaledSparkline.ceiling, ceiling)

    def render(self) -> Text:
        return Text(spark_text(self.data, self.ceiling, self.size.width), no_wrap=True, end="")
