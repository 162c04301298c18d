"""The `flf2v tui` application: screens, the command palette, and what every screen shares (the database,
the GPU monitor, the clock: tui/screens/base.py's AppServices, which this app fulfils)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from flf2v_tui.gpus import GpuSource, default_source
from flf2v_tui.screen_data.machine import MachineMonitor
from flf2v_tui.tui.db import Db
from flf2v_tui.tui.messages import OpenJob, OpenSubmit, OpenVideos
from flf2v_tui.tui.screens.dashboard import DashboardScreen
from flf2v_tui.tui.screens.job import JobScreen
from flf2v_tui.tui.screens.submit import SubmitScreen
from flf2v_tui.tui.screens.videos import VideosScreen
from storage.db import STORAGE_ERRORS
from storage.paths import Home
from storage.workers import gpu_holders

HOLDERS_EVERY_S = 5.0


class Flf2vApp(App[None]):
    CSS_PATH = Path(__file__).with_name("flf2v.tcss")
    TITLE = "flf2v"
    # Under 100 columns a screen has the class -narrow (flf2v.tcss gives the job view's side panels less room).
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (100, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(
        self,
        home: Home,
        gpu_source: GpuSource | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 1.0,
        log_interval_s: float = 0.25,
        open_job_id: int | None = None,
    ) -> None:
        """`clock` and `gpu_source` are there for tests: a fixed time makes ages and ETAs reproducible, and a
        fake GPU source stands in for NVML."""
        super().__init__()
        self.db = Db(home)
        self.monitor = MachineMonitor(gpu_source or default_source())
        self.now = clock
        self.poll_s = poll_s
        self.log_interval_s = log_interval_s
        self._first_job = open_job_id
        self._holders: dict[int, int] = {}
        self._holders_at = -HOLDERS_EVERY_S

    def gpu_holders(self) -> dict[int, int]:
        """GPU index -> job id; called from the GPU panel's thread every second, read from the database only
        every HOLDERS_EVERY_S (holders change when jobs start and end), to keep the TUI to a few queries a
        second in all."""
        now = time.monotonic()
        if now - self._holders_at >= HOLDERS_EVERY_S:
            self._holders_at = now  # first: an overlapping sampling thread keeps the last holders, not a 2nd read
            with contextlib.suppress(*STORAGE_ERRORS):  # the last known holders until the queue reads again
                self._holders = self.db.read(gpu_holders)
        return self._holders

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen())
        if self._first_job is not None:
            self.open_job(self._first_job)

    def on_unmount(self) -> None:
        self.db.close()

    @property
    def dashboard(self) -> DashboardScreen:
        return next(s for s in self.screen_stack if isinstance(s, DashboardScreen))

    def open_job(self, job_id: int) -> None:
        self.push_screen(JobScreen(job_id))

    def open_videos(self) -> None:
        self.push_screen(VideosScreen())

    def open_submit(self, prefill: dict[str, str] | None = None, edit_job: int | None = None) -> None:
        """The submit form, empty or prefilled with field texts (screen_data.form.prefill_from_job makes them);
        with `edit_job`, it edits that queued job and goes back to where it was opened."""

        def done(ids: list[int] | None) -> None:
            if ids and edit_job is None:
                while not isinstance(self.screen, DashboardScreen):
                    self.pop_screen()
                self.dashboard.select_job(ids[0])

        self.push_screen(SubmitScreen(prefill, edit_job=edit_job), done)

    # What the screens ask for (tui/messages.py): they open other screens through the app, never by importing it.
    def on_open_job(self, message: OpenJob) -> None:
        self.open_job(message.job_id)

    def on_open_submit(self, message: OpenSubmit) -> None:
        self.open_submit(message.prefill, message.edit_job)

    def on_open_videos(self, _message: OpenVideos) -> None:
        self.open_videos()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Every key of the screen is in the palette too (the screen's own keys first, then those of the focused
        widget), under its description and key."""
        own = [(screen, b) for b in screen.BINDINGS if isinstance(b, Binding)]
        focused = [(a.node, a.binding) for a in screen.active_bindings.values()]
        seen = set()
        for node, binding in own + focused:
            if not binding.description or binding.description in seen:
                continue
            seen.add(binding.description)
            keys = self.get_key_display(binding)
            run = partial(self.run_action, binding.action, node)
            yield SystemCommand(f"{binding.description} ({keys})", f"the {keys} key", run)
        yield from super().get_system_commands(screen)
