"""The dashboard: queue status, the job table, the GPU panel; keys to open, steer and submit jobs."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Header, Input, Static

from engine.errors import BadInputError
from flf2v_tui.screen_data.form import prefill_from_job
from flf2v_tui.screen_data.queue_view import JobFilter, QueueSnapshot, read_snapshot, status_line
from flf2v_tui.tui.db import deliver
from flf2v_tui.tui.messages import OpenJob, OpenSubmit, OpenVideos
from flf2v_tui.tui.screens import actions
from flf2v_tui.tui.screens.base import AppScreen
from flf2v_tui.tui.text import notify_plain, plain
from flf2v_tui.tui.widgets.footer import FitFooter
from flf2v_tui.tui.widgets.gpupanel import GpuPanel
from flf2v_tui.tui.widgets.jobtable import JobTable
from storage.db import STORAGE_ERRORS
from storage.jobs import require_job
from storage.states import FINISHED, QUEUED

GPU_EVERY_S = 1.0
# Polls to wait for a job just submitted to show up before giving up on selecting it: one beyond the rows
# listed (a long queue) never does.
SELECT_TRIES = 5


class DashboardScreen(AppScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_job", "Open", show=True),
        Binding("c", "cancel_job", "Cancel"),
        Binding("r", "retry_job", "Retry"),
        Binding("e", "edit_job", "Edit"),
        Binding("h", "hold_job", "Hold/release"),
        Binding("t", "top_job", "To top"),
        Binding("p", "pause_queue", "Pause/resume"),
        Binding("n", "new_job", "New job"),
        Binding("v", "videos", "Videos"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = JobFilter()
        self.snapshot: QueueSnapshot | None = None
        self._want_selected: int | None = None
        self._want_tries = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the queue…", id="queue-status")
        yield Input(placeholder="filter: running, state:failed, label:NAME or #NAME, words in the prompt "
                    "(enter applies, esc clears)", id="filter", classes="hidden")  # fmt: skip
        yield JobTable(id="jobs")
        yield GpuPanel(self.flf2v.monitor, self.flf2v.gpu_holders, id="gpu-panel")
        yield FitFooter()

    def on_mount(self) -> None:
        self.title = "flf2v"
        self.sub_title = str(self.flf2v.db.home.root)
        self._queue_timer = self.set_interval(self.flf2v.poll_s, self.poll)
        self._gpu_timer = self.set_interval(GPU_EVERY_S, self.query_one(GpuPanel).sample_now)
        self.poll()
        self.query_one(GpuPanel).sample_now()
        self.query_one(JobTable).focus()

    def on_screen_suspend(self) -> None:
        self._queue_timer.pause()
        self._gpu_timer.pause()

    def on_screen_resume(self) -> None:
        self._queue_timer.resume()
        self._gpu_timer.resume()
        self.poll()

    # ---- data ----------------------------------------------------------------------------------------------

    def poll(self) -> None:
        self._read(self.filter)

    @work(thread=True, exclusive=True, group="queue")
    def _read(self, flt: JobFilter) -> None:
        now = self.flf2v.now()
        try:
            snap = self.flf2v.db.read(lambda conn: read_snapshot(conn, flt, now))
        except STORAGE_ERRORS as exc:  # said on the status line; the next poll tries again
            deliver(self.app, self._unreadable, f"cannot read the queue in {self.flf2v.db.home.db}: {exc}")
            return
        deliver(self.app, self.show, snap)

    def _unreadable(self, message: str) -> None:
        if self.query("#queue-status"):
            self.query_one("#queue-status", Static).update(plain(message, style="red"))

    def show(self, snap: QueueSnapshot) -> None:
        if not self.query("#queue-status"):
            return  # a reading that lands while the app closes
        self.snapshot = snap
        status = status_line(snap)
        if snap.problem:
            status = f"filter: {snap.problem}"
        elif str(self.filter):
            status += f" · filter {self.filter} ({len(snap.jobs)} shown)"
        elif snap.hidden_finished:
            status += f" · {snap.hidden_finished} older finished jobs hidden (filter state:succeeded shows them)"
        if snap.left_out:
            status += f" · {snap.left_out:,} more not listed (narrow it with /)"
        self.query_one("#queue-status", Static).update(plain(status))
        self.query_one("#queue-status").set_class(snap.workers == 0 or snap.paused, "warn")
        table = self.query_one(JobTable)
        first = table.row_count == 0
        table.show(snap, snap.taken_at)
        if self._want_selected is not None:
            self._select_wanted(table)
        elif first and snap.jobs:  # start on what is happening now rather than on the oldest finished job
            current = [j["id"] for j in snap.jobs if j["state"] not in FINISHED]
            table.select(current[0] if current else snap.jobs[-1]["id"])

    def _select_wanted(self, table: JobTable) -> None:
        wanted = self._want_selected
        if wanted is None or table.select(wanted):
            self._want_selected = None
            return
        self._want_tries -= 1
        if self._want_tries <= 0:
            self._want_selected = None
            notify_plain(self, f"job {wanted} is queued, but not among the rows listed (narrow them with /)")

    def select_job(self, job_id: int) -> None:
        """Put the cursor on this job once it shows up (a job just submitted appears on the next poll)."""
        self._want_selected, self._want_tries = job_id, SELECT_TRIES
        self.poll()

    # ---- actions -------------------------------------------------------------------------------------------

    def _selected(self) -> tuple[int, str, dict[str, Any]] | None:
        table = self.query_one(JobTable)
        job_id = table.selected_id
        if job_id is None or job_id not in table.jobs:
            self.notify("no job selected", severity="warning")
            return None
        return job_id, table.states[job_id], table.jobs[job_id]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_job()

    def action_open_job(self) -> None:
        picked = self._selected()
        if picked:
            self.post_message(OpenJob(picked[0]))

    def action_cancel_job(self) -> None:
        picked = self._selected()
        if picked:
            actions.cancel(self, picked[0], picked[1], self.poll)

    def action_retry_job(self) -> None:
        picked = self._selected()
        if picked:
            actions.retry(self, picked[0], self.poll)

    def action_hold_job(self) -> None:
        picked = self._selected()
        if picked:
            actions.toggle_hold(self, picked[0], picked[1], bool(picked[2].get("held")), self.poll)

    def action_top_job(self) -> None:
        picked = self._selected()
        if picked:
            actions.to_top(self, picked[0], self.poll)

    def action_pause_queue(self) -> None:
        if self.snapshot is not None:
            actions.toggle_pause(self, self.snapshot.paused, self.poll)

    def action_edit_job(self) -> None:
        """The form, filled with the selected queued job, saving into it (the job view's `e` too)."""
        picked = self._selected()
        if picked is None:
            return
        job_id, _state, row = picked
        if row["state"] != QUEUED:
            notify_plain(self, f"job {job_id} has started; only a queued job can be edited", "warning")
            return
        self._edit(job_id)

    @work(thread=True, group="edit")
    def _edit(self, job_id: int) -> None:
        try:  # the whole row (the table's has only its columns), and the frames' paths looked at: in a thread
            prefill = self.flf2v.db.read(lambda conn: prefill_from_job(require_job(conn, job_id)))
        except (BadInputError, *STORAGE_ERRORS) as exc:
            deliver(self.app, notify_plain, self, f"cannot edit job {job_id}: {exc}", "error")
            return
        deliver(self.app, self.post_message, OpenSubmit(prefill, edit_job=job_id))

    def action_new_job(self) -> None:
        self.post_message(OpenSubmit())

    def action_videos(self) -> None:
        self.post_message(OpenVideos())

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.add_class("hidden")
        self.filter = JobFilter()
        self.query_one(JobTable).focus()
        self.poll()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.stop()
            self.filter = JobFilter.parse(event.value)
            if not event.value.strip():
                event.input.add_class("hidden")
            self.query_one(JobTable).focus()
            self.poll()
