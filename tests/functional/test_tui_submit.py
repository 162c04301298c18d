"""The submit form through Pilot: inline errors from the CLI's own validation, queueing, prefilling."""

from __future__ import annotations

import asyncio

from textual.widgets import Checkbox, Input, Static, TextArea

from flf2v_tui.screen_data.form import prefill_from_job
from flf2v_tui.tui.screens.dashboard import DashboardScreen
from flf2v_tui.tui.screens.submit import SubmitScreen
from flf2v_tui.tui.widgets.jobtable import JobTable
from storage.db import connect
from storage.jobs import get_job
from tests.functional.tui_world import STATES, settle


def _fill(screen: SubmitScreen, **values: str) -> None:
    for name, value in values.items():
        widget = screen.query_one(f"#{name}")
        if isinstance(widget, TextArea):
            widget.text = value
        else:
            widget.value = value


def _error(screen: SubmitScreen, name: str) -> str:
    box = screen.query_one(f"#{name}-error", Static)
    return "" if box.has_class("hidden") else str(box.render())


def _form_ready(app) -> bool:
    """The form is on screen and mounted (its on_mount titled it): keys pressed before that go elsewhere."""
    return isinstance(app.screen, SubmitScreen) and bool(app.screen.query("#form-buttons")) and bool(app.screen.title)


async def _shown_form(app, pilot) -> SubmitScreen:
    """The form once it is ready for keys (opened by a key, `e`, or `app.open_submit`)."""
    await settle(pilot, lambda: _form_ready(app), what="the form")
    return app.screen


def _count(world) -> int:
    conn = connect(world.home.db)
    try:
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    finally:
        conn.close()


def test_the_form_rejects_bad_input_inline_and_queues_good_input(world, make_app, tmp_path):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 50)) as pilot:
            await settle(pilot, lambda: app.screen.query_one(JobTable).row_count == len(STATES), what="the jobs")
            await pilot.press("n")
            form = await _shown_form(app, pilot)
            first, last = (str(p) for p in world.frames)
            missing = str(tmp_path / "missing.png")
            _fill(form, first_frame=first, last_frame=missing, prompt="a kite rises", task="flf2v-tiny",
                  ckpt_dir=str(world.ckpt), size="64*48", frame_num="8", sample_steps="x")  # fmt: skip
            await settle(pilot, lambda: "64×48 RGB" in str(form.query_one("#first_frame-info").render()),
                         what="the first frame's size")  # fmt: skip
            await settle(pilot, lambda: "does not exist" in str(form.query_one("#last_frame-info").render()),
                         what="the missing last frame noticed")  # fmt: skip

            await pilot.press("ctrl+s")
            await settle(pilot, lambda: _error(form, "sample_steps"), what="the type error")
            assert "'x' is not a whole number" in _error(form, "sample_steps")
            assert _count(world) == len(STATES)

            _fill(form, sample_steps="4")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: _error(form, "frame_num"), what="the engine's own check")
            assert "4n+1" in _error(form, "frame_num") and not _error(form, "sample_steps")

            _fill(form, frame_num="9")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: _error(form, "last_frame"), what="the missing frame")
            assert "does not exist" in _error(form, "last_frame") and not _error(form, "frame_num")
            assert _count(world) == len(STATES)

            _fill(form, last_frame=last, seeds="5,6", labels="kites, tui", gpus="2", priority="3")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back to the dashboard")
            assert _count(world) == len(STATES) + 2
            conn = connect(world.home.db)
            new = [get_job(conn, i) for i in (len(STATES) + 1, len(STATES) + 2)]
            conn.close()
            assert [(j["base_seed"], j["frame_num"], j["sample_steps"], j["gpus"], j["priority"]) for j in new] == [
                (5, 9, 4, 2, 3), (6, 9, 4, 2, 3)]  # fmt: skip
            assert new[0]["labels"] == ["kites", "tui"] and new[0]["prompt"] == "a kite rises"
            table = app.screen.query_one(JobTable)
            await settle(pilot, lambda: table.selected_id == new[0]["id"], what="the new job selected")

    asyncio.run(scenario())


def test_the_form_opens_prefilled_from_a_job(world, make_app):
    conn = connect(world.home.db)
    job = get_job(conn, world.ids["failed"])
    conn.close()

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 50)) as pilot:
            app.open_submit(prefill_from_job(job))
            form = await _shown_form(app, pilot)
            assert form.query_one("#prompt", TextArea).text == job["prompt"]
            assert form.query_one("#seeds", Input).value == str(job["base_seed"])
            assert form.query_one("#first_frame", Input).value == str(world.frames[0])  # the original still exists
            assert form.query_one("#task").value == "flf2v-tiny"
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the copy queued")
            assert _count(world) == len(STATES) + 1

    asyncio.run(scenario())


def test_path_completion_lists_the_folder(world, make_app, tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "bird-first.png").write_bytes(world.frames[0].read_bytes())

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 50)) as pilot:
            app.open_submit()
            form = await _shown_form(app, pilot)
            box = form.query_one("#first_frame", Input)
            box.focus()
            await pilot.press(*f"{tmp_path}/fra")
            await settle(pilot, lambda: box._suggestion == f"{tmp_path}/frames/", what="the folder suggested")
            await pilot.press("right", *"bi")
            await settle(pilot, lambda: box._suggestion.endswith("bird-first.png"), what="the file suggested")
            await pilot.press("right")
            assert box.value == f"{tmp_path}/frames/bird-first.png"

    asyncio.run(scenario())


def test_the_other_worker_switch_waives_the_check_of_gpus_against_this_machine(world, make_app, monkeypatch):
    monkeypatch.setenv("FLF2V_GPUS", "0")  # a worker started here would have one GPU

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 50)) as pilot:
            app.open_submit()
            form = await _shown_form(app, pilot)
            first, last = (str(p) for p in world.frames)
            _fill(form, first_frame=first, last_frame=last, prompt="two ranks elsewhere", task="flf2v-tiny",
                  ckpt_dir=str(world.ckpt), size="64*48", frame_num="9", sample_steps="4", gpus="2")  # fmt: skip
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: _error(form, "gpus"), what="the refusal")
            said = _error(form, "gpus")
            assert "FLF2V_GPUS gives the worker 1 GPU" in said and 'switch on "Other worker"' in said, said
            assert "--other-worker" not in said  # the form has no flags: it names its own switch
            assert _count(world) == len(STATES)

            switch = form.query_one("#other_worker", Checkbox)
            switch.focus()
            await pilot.press("space")
            assert switch.value
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, DashboardScreen), what="queued")
            conn = connect(world.home.db)
            job = get_job(conn, len(STATES) + 1)
            conn.close()
            assert (job["gpus"], job["prompt"]) == (2, "two ranks elsewhere")

    asyncio.run(scenario())


def test_switches_say_their_state_and_a_task_change_clears_a_stale_error(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 50)) as pilot:
            app.open_submit()
            form = await _shown_form(app, pilot)
            switch = form.query_one("#other_worker", Checkbox)
            assert str(switch.label) == "off" and not switch.value
            switch.focus()
            await pilot.press("space")
            await settle(pilot, lambda: str(switch.label) == "on", what="the switch to say on")
            await pilot.press("space")
            await settle(pilot, lambda: str(switch.label) == "off", what="the switch to say off")

            first, last = (str(p) for p in world.frames)
            _fill(form, first_frame=first, last_frame=last, prompt="a kite rises", task="flf2v-14B", size="1280*720",
                  frame_num="9", sample_steps="4")  # fmt: skip
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: _error(form, "ckpt_dir"), what="the missing checkpoint")
            assert "--ckpt_dir is required" in _error(form, "ckpt_dir")
            _fill(form, task="flf2v-tiny", size="64*48")  # the embedded model needs no folder: no submit needed
            await settle(pilot, lambda: not _error(form, "ckpt_dir"), what="the stale error to go")
            assert _count(world) == len(STATES)

    asyncio.run(scenario())


def _job(world, job_id: int) -> dict:
    conn = connect(world.home.db)
    try:
        return get_job(conn, job_id)
    finally:
        conn.close()


def test_e_edits_a_queued_job_in_place_and_y_copies_a_job(world, make_app):
    from flf2v_tui.tui.screens.job import JobScreen

    queued = world.ids["queued"]

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 50)) as pilot:
            app.open_job(queued)
            await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail is not None,
                         what="the job view")  # fmt: skip
            job_view = app.screen
            keys = {k: a.binding.description for k, a in job_view.active_bindings.items() if a.enabled}
            assert keys["e"] == "Edit" and keys["y"] == "Copy"
            await pilot.press("e")
            form = await _shown_form(app, pilot)
            assert form.edit_job == queued and form.title == f"flf2v · edit job {queued}"
            assert form.query_one("#prompt", TextArea).text == "waves roll over black volcanic sand"
            await pilot.pause()
            assert form.values() == form.original  # the form reads back as it opened: nothing counts as changed
            _fill(form, sample_steps="x")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: _error(form, "sample_steps"), what="submit's check")
            _fill(form, prompt="waves roll over white sand", sample_steps="8", priority="5")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: app.screen is job_view, what="back in the job view")
            job = _job(world, queued)
            assert (job["prompt"], job["sample_steps"], job["priority"]) == ("waves roll over white sand", 8, 5)
            assert job["base_seed"] == 105 and _count(world) == len(STATES)  # the rest as it was; no new job

            # Started while the form was open: the edit is refused, and said so on the form.
            await pilot.press("e")
            await settle(pilot, lambda: _form_ready(app), what="the form again")
            form = app.screen
            conn = connect(world.home.db)
            conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (queued,))
            conn.commit()
            conn.close()
            _fill(form, priority="9")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: _error(form, "form"), what="the refusal")
            assert "only a queued job can be edited" in _error(form, "form")
            assert _job(world, queued)["priority"] == 5
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is job_view, what="the job view")

            # A job that has started offers no edit; y copies it into a new job.
            await pilot.press("escape")
            app.open_job(world.ids["running"])
            await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail is not None
                         and app.screen.job_id == world.ids["running"], what="the running job")  # fmt: skip
            await pilot.pause()
            assert "e" not in app.screen.active_bindings  # not offered (nor in the footer)
            await pilot.press("e")
            await pilot.pause()
            assert isinstance(app.screen, JobScreen)
            await pilot.press("y")
            await settle(pilot, lambda: _form_ready(app), what="the copy's form")
            assert app.screen.edit_job is None and app.screen.title == "flf2v · new job"
            assert app.screen.query_one("#prompt", TextArea).text == "a small blue bird takes off from a branch"

    asyncio.run(scenario())


def test_the_form_warns_of_a_still_clip_and_a_long_one_once_queued(world, make_app):
    """The same picture as first and last frame, and more frames than the model was trained on: warnings after
    the job is queued, as `flf2v submit` gives them, never a refusal."""

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(140, 50)) as pilot:
            app.open_submit()
            form = await _shown_form(app, pilot)
            first = str(world.frames[0])
            _fill(form, first_frame=first, last_frame=first, prompt="a still lake", task="flf2v-tiny",
                  ckpt_dir=str(world.ckpt), size="64*48", frame_num="85", sample_steps="4")  # fmt: skip
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, DashboardScreen), what="queued")
            said = lambda: [n.message for n in app.notes_seen if n.severity == "warning"]  # noqa: E731
            await settle(pilot, lambda: len(said()) == 2, what="the two warnings")
            job = len(STATES) + 1
            assert any(m.startswith(f"job {job}: the first and last frame are the same picture") for m in said())
            assert any("--frame_num 85 is more than the 81 frames" in m for m in said())
            assert _count(world) == len(STATES) + 1

    asyncio.run(scenario())
