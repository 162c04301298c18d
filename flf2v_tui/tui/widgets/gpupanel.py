"""Per GPU: memory used/total and utilisation as bars with a sparkline of the last minute, and the job holding
it. Without an NVIDIA GPU it says why and shows CPU and RAM instead. Samples are taken in a thread. Every
series is a percentage (memory: of the GPU's total), so each sparkline is drawn on the same 0-100 scale."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from engine.diskspace import human_size
from flf2v_tui.screen_data.machine import MachineMonitor, MachineSample
from flf2v_tui.screen_data.queue_view import NARROW_BELOW, bar
from flf2v_tui.tui.db import deliver
from flf2v_tui.tui.widgets.spark import ScaledSparkline

BAR = 12


def _meter(label: str, fraction: float, detail: str) -> Text:
    colour = "red" if fraction > 0.9 else "yellow" if fraction > 0.7 else "green"
    return Text.assemble((f"{label} ", "bold"), (bar(fraction, BAR), colour), f" {detail}")


class GpuRowView(Horizontal):
    """One line: what it is, two meters, two sparklines, who holds it."""

    def __init__(self, text: Text, util: tuple[float, ...], memory: tuple[float, ...]) -> None:
        super().__init__(classes="gpu-row")
        self._first = (text, util, memory)

    def compose(self) -> ComposeResult:
        text, util, memory = self._first
        yield Static(text, classes="gpu-text")
        yield ScaledSparkline(util, 100.0, classes="gpu-spark util")
        spark = ScaledSparkline(memory, 100.0, classes="gpu-spark mem")
        spark.display = bool(memory)  # CPU and RAM rows have one series each
        yield spark

    def set(self, text: Text, util: tuple[float, ...], memory: tuple[float, ...]) -> None:
        self.query_one(".gpu-text", Static).update(text)
        sparks = self.query(ScaledSparkline)
        sparks[0].data = util
        sparks[1].data = memory
        sparks[1].display = bool(memory)


class GpuPanel(Vertical):
    def __init__(self, monitor: MachineMonitor, holders: Callable[[], dict[int, int]], **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.monitor = monitor
        self.holders = holders
        self.last: MachineSample | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="gpu-title")

    def sample_now(self) -> None:
        self._sample()

    @work(thread=True, exclusive=True, group="gpu")
    def _sample(self) -> None:
        sample = self.monitor.sample(self.holders())
        deliver(self.app, self.show, sample)

    def show(self, sample: MachineSample) -> None:
        if not self.query("#gpu-title"):
            return  # a reading that lands while the app closes
        self.last = sample
        title = self.query_one("#gpu-title", Static)
        rows: list[tuple[Text, tuple[float, ...], tuple[float, ...]]] = []
        if sample.gpus:
            title.update(Text("GPUs  (util and memory sparklines: last minute)", style="bold"))
            for g in sample.gpus:
                mem = g.memory_used / g.memory_total if g.memory_total else 0.0
                util = (g.utilization or 0) / 100
                holder = f"job {g.job}" if g.job is not None else (
                    f"other: pid {','.join(map(str, g.other_pids[:3]))}" if g.other_pids else "free"
                )  # fmt: skip
                name = "" if self.app.size.width < NARROW_BELOW else f"{g.name[:18]:<18} "  # 80 columns: no room
                text = Text.assemble(
                    (f"{g.index} ", "bold"), (name, "dim"),
                    _meter("util", util, "-" if g.utilization is None else f"{g.utilization:>3}%"), "  ",
                    _meter("mem", mem, f"{human_size(g.memory_used)}/{human_size(g.memory_total)}"), "  ",
                    (holder, "cyan" if g.job is not None else "dim"),
                )  # fmt: skip
                rows.append((text, g.util_history, g.memory_history))
        else:
            title.update(Text(f"No NVIDIA GPU here: {sample.no_gpu_reason}. CPU and RAM instead:", style="yellow"))
            rows.append((_meter("cpu", sample.cpu_percent / 100, f"{sample.cpu_percent:>3.0f}%"),
                         sample.cpu_history, ()))  # fmt: skip
            rows.append((_meter("ram", sample.ram_used / max(sample.ram_total, 1),
                                f"{human_size(sample.ram_used)}/{human_size(sample.ram_total)}"),
                         sample.ram_history, ()))  # fmt: skip
        views = list(self.query(GpuRowView))
        for view in views[len(rows) :]:
            view.remove()
        for view, row in zip(views, rows, strict=False):
            view.set(*row)
        if len(rows) > len(views):
            self.mount_all(GpuRowView(*row) for row in rows[len(views) :])
