"""The job view's helpers shared by its Pilot tests (test_tui_job, test_tui_job_logs)."""

from __future__ import annotations

from textual.widgets import TabbedContent

from flf2v_tui.tui.screens.job import JobScreen
from flf2v_tui.tui.widgets.logview import LogView
from tests.functional.tui_world import settle


async def open_job_view(app, pilot, job_id: int) -> JobScreen:
    """The job view once it has read the job and, for a job with attempts, composed its log views."""
    app.open_job(job_id)
    await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail is not None, what="the job")
    screen = app.screen
    await settle(pilot, lambda: not screen.detail.attempts or screen.query("#view-all"), what="the log views")
    return screen


async def show_tab(pilot, screen: JobScreen, tab: str) -> None:
    """Switch tabs as a click would; a TabbedContent still settling on its first tab may switch back, so the
    switch is repeated until it holds."""
    await settle(pilot, lambda: screen.query(f"Tab#--content-tab-{tab}"), what=f"the {tab} tab")
    tabs = screen.query_one(TabbedContent)

    def switched() -> bool:
        if tabs.active != tab:
            tabs.active = tab
            return False
        return True

    await settle(pilot, switched, what=f"the {tab} tab to stay active")


def log_view(screen: JobScreen, tab: str = "view-all") -> LogView:
    return screen.query_one(f"#{tab}", LogView)
