"""What the screens ask of the app, as Textual messages (they bubble from a screen to the app, which handles
them), so that a screen opens another without reaching into the app."""

from __future__ import annotations

from textual.message import Message


class OpenJob(Message):
    """Open the job's screen."""

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id


class OpenSubmit(Message):
    """Open the submit form, empty or prefilled with field texts (screen_data.form makes them); with `edit_job`,
    the form saves into that queued job instead of queueing a new one."""

    def __init__(self, prefill: dict[str, str] | None = None, edit_job: int | None = None) -> None:
        super().__init__()
        self.prefill = prefill
        self.edit_job = edit_job


class OpenVideos(Message):
    """Open the catalogue of videos."""
