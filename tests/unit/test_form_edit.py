"""The submit form saving into a queued job: what it says when nothing the job keeps was changed."""

from __future__ import annotations

from flf2v_tui.screen_data import form
from storage.jobs import get_job
from tests.functional.queue_helpers import write_stub_checkpoint


def test_an_edit_that_changes_nothing_the_job_keeps_is_said_in_the_forms_words(conn, home, queue, tmp_path):
    job_id = queue(ckpt_dir=str(write_stub_checkpoint(tmp_path / "ckpt")))
    before = get_job(conn, job_id)
    original = form.prefill_from_job(before)
    for values in (original, {**original, form.OTHER_WORKER: "1"}):  # nothing, or only Other worker
        said, errors = form.edit(conn, home, job_id, original, values)
        assert said == "" and errors == {form.FORM_LEVEL: form.NOTHING_CHANGED}, errors
        assert "--prompt" not in errors[form.FORM_LEVEL]  # no CLI flag on a form
    assert get_job(conn, job_id) == before
