"""One job: its parameters, attempts, stage timeline, step progress, memory per rank, a preview spot and logs."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL.Image import Image
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Header, ProgressBar, Static
from textual.worker import get_current_worker

from engine.diskspace import human_size
from engine.errors import BadInputError
from flf2v_tui.job_text import (
    ATTEMPT_HEADER,
    STATE_COLOURS,
    attempt_rows,
    display_state,
    job_params,
    load_text,
    slurm_text,
    with_worker,
)
from flf2v_tui.screen_data.catalogue_view import fidelity_text
from flf2v_tui.screen_data.form import prefill_from_job
from flf2v_tui.screen_data.telemetry import JobTelemetry, ProgressInfo, StageSpan, progress_of
from flf2v_tui.term import duration, inert_row, one_line
from flf2v_tui.tui.db import deliver
from flf2v_tui.tui.images import load_picture, picture_class
from flf2v_tui.tui.messages import OpenSubmit
from flf2v_tui.tui.screens import actions
from flf2v_tui.tui.screens.base import AppScreen
from flf2v_tui.tui.text import plain
from flf2v_tui.tui.widgets.footer import FitFooter
from flf2v_tui.tui.widgets.logpane import TORCHRUN_LOG, LogPane
from flf2v_tui.tui.widgets.spark import ScaledSparkline
from storage.db import STORAGE_ERRORS
from storage.jobs import attempts_of, require_job
from storage.states import CANCELLING, INTERRUPTED, QUEUED, RUNNING

# The log folder is the log pane's business, and warm or cold is said beside the queue settings (the table
# has no room for it at 120 columns).
ATTEMPT_COLUMNS = [c for c in ATTEMPT_HEADER[:-1] if c != "LOAD"]
_SHOWN = [ATTEMPT_HEADER.index(c) for c in ATTEMPT_COLUMNS]
# PEAK is the highest rank's high-water mark (the allocator's peak on CUDA, the peak RSS on CPU), caught between
# samples too; the memory panel's "top sample" is the highest of its per-step samples, so it can be lower.
ATTEMPT_LABELS = {"PEAK": "HIGH-WATER"}
# Fixed widths: a table that sizes itself to rows arriving a moment later redraws its header a moment later too.
ATTEMPT_WIDTHS = (3, 11, 19, 7, 16, 6, 5, 5, 13, 10)
STAGE_STYLE = {"done": "green", "running": "bold cyan", "pending": "dim", "failed": "bold red",
               "cancelled": "yellow", "interrupted": "yellow"}  # fmt: skip
LIVE = (RUNNING, CANCELLING)  # a render is under way and its worker watches it: only then are ETAs and bars live
LOG_TABS = Binding.Group("Log tab")
MAX_RANK_KEYS = 8  # keys 0..7 switch to a rank's own log


@dataclass
class JobDetail:
    job: dict[str, Any]
    attempts: list[dict[str, Any]]
    state: str
    prefill: dict[str, str]
    progress: ProgressInfo
    preview: Image | None  # the newest latent preview, decoded on the reading thread
    first_tab: str  # the log tab to open on: torchrun's output when the attempt ended before any rank wrote a line


def timeline_text(spans: list[StageSpan]) -> Text:
    parts: list[Text | str] = []
    for span in spans:
        if parts:
            parts.append(Text(" ▸ ", style="dim"))
        took = "—" if span.seconds is None else f"{span.seconds:.1f}s"
        mark = {"running": "…", "done": "", "pending": ""}.get(span.state, f" {span.state}")
        parts.append(Text(f"{span.name} {took}{mark}", style=STAGE_STYLE[span.state]))
    return Text.assemble(*parts)


class JobScreen(AppScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
        Binding("c", "cancel_job", "Cancel"),
        Binding("r", "retry_job", "Retry"),
        Binding("e", "edit_job", "Edit"),
        Binding("y", "copy_job", "Copy"),
        Binding("slash", "search_log", "Search log"),
        Binding("a", "log_tab('log-all')", "all ranks", group=LOG_TABS),
        *[Binding(str(n), f"log_tab('log-r{n}')", f"rank {n}", group=LOG_TABS) for n in range(MAX_RANK_KEYS)],
        Binding("t", "log_tab('log-torchrun')", "torchrun", group=LOG_TABS),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.detail: JobDetail | None = None
        self._telemetry: JobTelemetry | None = None
        self._attempt_dir: Path | None = None
        self._memory_rows: dict[int, tuple[Static, ScaledSparkline]] = {}
        self._logs_shown: Path | None = None
        self._preview_read: tuple[str | None, Image | None] = (None, None)  # the reading thread's own
        # One reading at a time: a poll replaces the reading thread, but the old one runs on to its end, and
        # two reading the same new events would apply each twice (a stage shown twice, memory samples doubled).
        self._reading = threading.Lock()
        self._preview_shown: Image | None = None
        self._preview_drawn = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"job {self.job_id}: reading…", id="job-title")
        with Horizontal(id="job-top"):
            with VerticalScroll(id="job-params"):
                yield Static("", id="params")
            with Vertical(id="job-live"):
                yield Static("", id="stages")
                with Horizontal(id="step-row"):
                    yield ProgressBar(total=None, show_eta=False, id="steps")
                    yield Static("", id="step-text")
                yield Static("", id="fidelity", classes="hidden")
                yield Static("memory in use per rank, sampled each step", id="memory-title", classes="section")
                yield Vertical(id="memory")
            with Vertical(id="job-preview"):
                yield Static("", id="preview")
                yield picture_class()(id="preview-image")
        yield DataTable(id="attempts", cursor_type="none", show_cursor=False)
        yield Vertical(Static("no attempt yet: the job has not started", classes="muted"), id="logs")
        yield FitFooter()

    def on_mount(self) -> None:
        table = self.query_one("#attempts", DataTable)
        for column, width in zip(ATTEMPT_COLUMNS, ATTEMPT_WIDTHS, strict=True):
            table.add_column(ATTEMPT_LABELS.get(column, column), width=width, key=column)
        self.title = f"flf2v · job {self.job_id}"
        self._timer = self.set_interval(self.flf2v.poll_s, self.poll)
        self.poll()

    def poll(self) -> None:
        self._read()

    @work(thread=True, exclusive=True, group="job")
    def _read(self) -> None:
        with self._reading:
            if get_current_worker().is_cancelled:
                return  # a newer poll's thread, waiting behind this lock too, reads instead
            self._read_once()

    def _read_once(self) -> None:
        try:
            job, attempts = self.flf2v.db.read(lambda c: (require_job(c, self.job_id), attempts_of(c, self.job_id)))
        except BadInputError as exc:
            deliver(self.app, self._gone, exc.message)
            return
        except STORAGE_ERRORS as exc:  # said in the title; the next poll tries again
            deliver(self.app, self._unreadable, f"job {self.job_id}: cannot read the queue ({exc})")
            return
        latest = attempts[-1] if attempts else None
        if latest is not None:
            folder = Path(latest["log_dir"])
            if folder != self._attempt_dir:
                self._attempt_dir, self._telemetry = folder, JobTelemetry(folder)
            assert self._telemetry is not None
            with contextlib.suppress(OSError):  # events.jsonl unreadable: what the DB keeps is shown instead
                self._telemetry.poll()
        state = display_state(with_worker(job, attempts))
        progress = progress_of(self._telemetry if latest else None, latest, self.flf2v.now(), state)
        # The job as shown is made inert here; the form's prefill keeps the recipe exactly as it was submitted.
        detail = JobDetail(inert_row(job), attempts, state, prefill_from_job(job), progress, self._preview(progress),
                           first_log_tab(latest, job))  # fmt: skip
        deliver(self.app, self.show, detail)

    def _preview(self, progress: ProgressInfo) -> Image | None:
        """The newest preview, decoded here on the reading thread: again only when the engine wrote a newer
        one, or when the last could not be read yet."""
        path = str(progress.preview["path"]) if progress.preview and progress.preview.get("path") else None
        read_path, image = self._preview_read
        if path != read_path or (path is not None and image is None):
            self._preview_read = (path, load_picture(path))
        return self._preview_read[1]

    def _unreadable(self, message: str) -> None:
        if self.query("#job-title"):
            self.query_one("#job-title", Static).update(plain(message, style="red"))

    def _gone(self, message: str) -> None:
        self._timer.stop()
        self.query_one("#job-title", Static).update(Text(message, style="red"))

    def show(self, detail: JobDetail) -> None:
        if not self.query("#job-title"):
            return  # a reading that lands while the app closes
        job, now = detail.job, self.flf2v.now()
        if self.detail is None or self.detail.state != detail.state or self._logs_shown is None:
            self.refresh_bindings()  # edit is for a queued job only; the log tabs' keys come with the logs
        self.detail = detail
        self.query_one("#job-title", Static).update(title_text(detail))
        self._show_params(job, detail.attempts)
        self._show_attempts(detail.attempts, now, detail.state)
        self._show_progress(detail)
        self._show_logs(detail.attempts)

    def _show_params(self, job: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
        lines = Text()
        lines.append("prompt  ", style="bold").append(one_line(job["prompt"]) + "\n")
        queue = f"{job['gpus']} rank(s) · priority {job['priority']} · labels {','.join(job['labels']) or '-'}"
        if attempts and attempts[-1].get("warm") is not None:  # the latest attempt's engine: loaded before, or not
            queue += f" · {load_text(attempts[-1])}"
        lines.append("queue   ", style="bold").append(queue + "\n")
        for name, value in job_params(job):
            lines.append(f"{name:<19}", style="dim").append(value + "\n")
        self.query_one("#params", Static).update(lines)

    def _show_attempts(self, attempts: list[dict[str, Any]], now: float, state: str) -> None:
        table = self.query_one("#attempts", DataTable)
        rows = [[row[i] for i in _SHOWN] for row in attempt_rows(attempts, now)]
        if state == INTERRUPTED and rows and rows[-1][1] == RUNNING:
            rows[-1][1] = INTERRUPTED  # its worker died: nothing watches the attempt, whatever the row still says
        for attempt, row in zip(attempts, rows, strict=True):
            key = str(attempt["number"])
            if key in table.rows:
                for column, value in zip(ATTEMPT_COLUMNS, row, strict=True):
                    table.update_cell(key, column, plain(value))
            else:
                table.add_row(*map(plain, row), key=key)
        table.display = bool(attempts)

    def _show_progress(self, detail: JobDetail) -> None:
        p = detail.progress
        self.query_one("#stages", Static).update(Text.assemble(("stages  ", "bold"), timeline_text(p.spans)))
        live = detail.state in LIVE
        bar = self.query_one("#steps", ProgressBar)
        # An unknown total draws an animated "--%" bar: only for a render under way, never one that has stopped.
        bar.display = live or bool(p.total)
        bar.update(total=p.total or None, progress=p.step or 0)
        text = f"step {p.step or 0}/{p.total or '?'}"
        text += f" · {p.sec_per_it:.2f} s/it" if p.sec_per_it else " · - s/it"
        text += f" · ETA {duration(p.eta)}" if live and p.eta is not None else ""
        self.query_one("#step-text", Static).update(text)
        latest = detail.attempts[-1] if detail.attempts else {}
        fidelity = self.query_one("#fidelity", Static)
        fidelity.set_class(latest.get("psnr_first") is None, "hidden")
        fidelity.update(Text.assemble(("psnr    ", "bold"), fidelity_text(latest)))
        self._show_memory(p)
        self._show_preview(p.preview, detail.preview)

    def _show_preview(self, preview: dict[str, Any] | None, image: Image | None) -> None:
        """The newest latent preview: first, middle and last latent frames side by side, as the engine drew them.
        The picture arrives decoded; nothing here touches the file."""
        if self._preview_drawn and image is self._preview_shown:
            return
        self._preview_drawn, self._preview_shown = True, image
        caption = self.query_one("#preview", Static)
        if image is None or preview is None:
            caption.update(Text("latent preview: none yet", style="dim"))
            self.query_one("#preview-image").image = None  # type: ignore[attr-defined]
            return
        caption.update(Text(f"latent preview, step {preview.get('step', '?')}", style="dim"))
        self.query_one("#preview-image").image = image  # type: ignore[attr-defined]

    def _show_memory(self, p: ProgressInfo) -> None:
        box = self.query_one("#memory", Vertical)
        if not p.memory:
            if not box.children:
                box.mount(Static("no memory samples yet", classes="muted"))
            return
        for muted in box.query(".muted"):
            muted.remove()
        # One scale for every rank, so that ranks compare: a rank at half the others' memory draws half bars.
        ceiling = float(max(p.peak.values(), default=0) or max(max(s) for s in p.memory.values()))
        for rank in sorted(p.memory):
            series = [float(v) for v in p.memory[rank]]
            label = f"r{rank} {human_size(series[-1])} (top sample {human_size(p.peak.get(rank, 0))})"
            if rank in self._memory_rows:
                text, spark = self._memory_rows[rank]
                text.update(label)
                spark.data, spark.ceiling = tuple(series), ceiling
            else:
                text, spark = Static(label, classes="mem-label"), ScaledSparkline(series, ceiling)
                self._memory_rows[rank] = (text, spark)
                box.mount(Horizontal(text, spark, classes="mem-row"))

    def _show_logs(self, attempts: list[dict[str, Any]]) -> None:
        if not attempts:
            return
        latest = attempts[-1]
        folder = Path(latest["log_dir"])
        if folder == self._logs_shown:  # remembered, not queried: a pane still mounting is not in the DOM yet
            return
        self._logs_shown = folder
        box = self.query_one("#logs", Vertical)
        box.remove_children()
        assert self.detail is not None
        box.mount(LogPane(folder, self._ranks(), interval=self.flf2v.log_interval_s, first_tab=self.detail.first_tab))

    # ---- actions -------------------------------------------------------------------------------------------

    def action_cancel_job(self) -> None:
        if self.detail:
            actions.cancel(self, self.job_id, self.detail.state, self.poll)

    def action_retry_job(self) -> None:
        actions.retry(self, self.job_id, self.poll)

    def action_search_log(self) -> None:
        panes = self.query(LogPane)
        if panes:
            panes.first().action_search()

    def _ranks(self) -> int:
        if self.detail is None or not self.detail.attempts:
            return 1
        return attempt_ranks(self.detail.attempts[-1], self.detail.job)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Edit is offered for a job that has not started; a log tab's key only where the attempt has that tab."""
        if action == "edit_job":
            return self.detail is not None and self.detail.job["state"] == QUEUED
        if action == "log_tab":
            if self.detail is None or not self.detail.attempts:
                return False
            tab = str(parameters[0])
            return not tab.startswith("log-r") or int(tab.removeprefix("log-r")) < self._ranks()
        return True

    def action_log_tab(self, tab: str) -> None:
        for pane in self.query(LogPane):
            pane.show_tab(tab)

    def action_edit_job(self) -> None:
        """The form, filled with this queued job, saving into it (the same checks as a submit)."""
        if self.detail and self.detail.job["state"] == QUEUED:
            self.post_message(OpenSubmit(self.detail.prefill, edit_job=self.job_id))

    def action_copy_job(self) -> None:
        """The form, filled with this job's recipe, for a new job."""
        if self.detail:
            self.post_message(OpenSubmit(self.detail.prefill))


def title_text(detail: JobDetail) -> Text:
    """The job's number, state and why (whole: it wraps, so a failure's advice such as `flf2v retry 9` shows)."""
    job = detail.job
    title = Text.assemble((f"job {job['id']} ", "bold"), (detail.state, STATE_COLOURS.get(detail.state) or ""))
    reason = one_line(job.get("state_reason") or "")
    if detail.state == INTERRUPTED and job["state"] == RUNNING:  # the worker died under it; nobody wrote why
        reason = "its worker died; a worker that starts re-attaches the render if it still runs, or requeues it"
    if reason:
        title.append(f" — {reason}", style="dim")
    on_slurm = slurm_text(detail.attempts[-1]) if detail.attempts else ""
    if on_slurm:  # its Slurm job: why it is pending, or the nodes it runs on
        title.append(f" — {one_line(on_slurm)}", style="dim")
    if job.get("output_path"):
        title.append(f"  → {job['output_path']}", style="green")
    return title


def attempt_ranks(attempt: dict[str, Any], job: dict[str, Any]) -> int:
    """The attempt's ranks on every node: its nproc is per node, and rank logs are named by global rank."""
    return max(int(attempt.get("nproc") or 1), 1) * max(int(job.get("nodes") or 1), 1)


def first_log_tab(latest: dict[str, Any] | None, job: dict[str, Any]) -> str:
    """torchrun's output for an attempt that ended before any rank wrote a line (it says why); else all ranks.
    Called on the reading thread: it looks at the files."""
    if latest is None or latest["state"] == RUNNING:
        return "log-all"
    folder = Path(latest["log_dir"])
    wrote = any(_size(folder / f"rank{r}.log") for r in range(attempt_ranks(latest, job)))
    if wrote or not _size(folder / TORCHRUN_LOG):
        return "log-all"
    return "log-torchrun"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
