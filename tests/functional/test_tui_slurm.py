"""A job on the Slurm backend in the dashboard and the job view: its Slurm job, why it is pending, its nodes."""

from __future__ import annotations

import asyncio

from flf2v_tui.tui.screens.job import JobScreen
from storage.db import connect, write_tx
from tests.functional.tui_world import screen_text, settle


def _on_slurm(world, **columns: str) -> int:
    """The world's running job, as the Slurm backend would have recorded it."""
    job = world.ids["running"]
    conn = connect(world.home.db)
    try:
        with write_tx(conn):
            conn.execute("UPDATE jobs SET nodes = 2 WHERE id = ?", (job,))
            sets = ", ".join(f"{k} = ?" for k in columns)
            conn.execute(f"UPDATE attempts SET backend = 'slurm', {sets} WHERE job_id = ? AND state = 'running'",
                         (*columns.values(), job))  # fmt: skip
    finally:
        conn.close()
    return job


def test_the_dashboard_and_the_job_view_show_a_pending_slurm_job(world, make_app):
    job = _on_slurm(world, slurm_job="4242", slurm_state="PENDING", slurm_reason="Priority")

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 40)) as pilot:
            await settle(pilot, lambda: "slurm 4242" in screen_text(app), what="the Slurm job in the queue")
            assert "slurm 4242 2×" in screen_text(app)
            app.open_job(job)
            await settle(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail, what="the job view")
            await settle(pilot, lambda: "why pending: Priority" in screen_text(app), what="why it is pending")
            assert "slurm 4242" in screen_text(app)  # the attempts table

    asyncio.run(scenario())


def test_the_job_view_shows_the_nodes_a_slurm_job_runs_on(world, make_app):
    job = _on_slurm(world, slurm_job="4243", slurm_state="RUNNING", node_list="gpu[07-08]")

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=(150, 40)) as pilot:
            app.open_job(job)
            await settle(pilot, lambda: "slurm 4243 RUNNING on gpu[07-08]" in screen_text(app), what="the nodes")

    asyncio.run(scenario())
