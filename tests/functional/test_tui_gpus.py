"""The GPU panel against a fake NVML (gpus.FakeSource: GPUs described in a JSON file that the test edits),
with a worker whose pool holds GPU 0 for the running job."""

from __future__ import annotations

import asyncio
import json

from flf2v_tui.gpus import FakeSource
from flf2v_tui.tui.widgets.gpupanel import GpuPanel, GpuRowView
from flf2v_tui.tui.widgets.spark import ScaledSparkline
from storage.db import connect, write_tx
from tests.functional.queue_helpers import flf2v
from tests.functional.tui_world import screen_text, settle

GIB = 1 << 30


def _gpus(path, used0: int, util0: int, util1: int = 0) -> None:
    gpus = [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0", "memory_total": 80 * GIB,
         "memory_used": used0 * GIB, "utilization": util0},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_total": 80 * GIB,
         "memory_used": 2 * GIB, "utilization": util1, "processes": [{"pid": 4242, "used_bytes": GIB}]},
    ]  # fmt: skip
    path.write_text(json.dumps(gpus))


def _worker_pool(world, **held: dict[str, object]) -> None:
    """The world's worker holds GPUs 0 and 1 as `held` says (busy: slot -> attempt, warm: slot -> group)."""
    conn = connect(world.home.db)
    with write_tx(conn):
        conn.execute("UPDATE workers SET pool = ?", (json.dumps({"device": "cuda", "slots": ["0", "1"], **held}),))
    conn.close()


def test_gpu_panel_shows_memory_use_history_and_holders(world, make_app, tmp_path):
    fake = tmp_path / "gpus.json"
    _gpus(fake, used0=60, util0=97, util1=2)
    conn = connect(world.home.db)
    attempt = conn.execute("SELECT current_attempt_id FROM jobs WHERE id = ?", (world.ids["running"],)).fetchone()[0]
    conn.close()
    _worker_pool(world, busy={"0": attempt})

    async def scenario():
        app = make_app(world, gpu_source=FakeSource(fake))
        async with app.run_test(size=(150, 36)) as pilot:
            await settle(pilot, lambda: "NVIDIA H100" in screen_text(app), what="the GPUs")
            rows = [line for line in screen_text(app).splitlines() if "NVIDIA H100" in line]
            assert "util ███████████▋  97%" in rows[0] and "60.0 GiB/80.0 GiB" in rows[0]
            assert f"GiB  job {world.ids['running']} " in rows[0]
            assert "GiB  other: pid 4242 " in rows[1] and "   2%" in rows[1]
            assert "No NVIDIA GPU" not in screen_text(app)

            _gpus(fake, used0=70, util0=40, util1=3)
            panel = app.screen.query_one(GpuPanel)
            await settle(pilot, lambda: len(panel.last.gpus[0].util_history) >= 2, what="a second sample")
            assert panel.last.gpus[0].util_history[-2:] == (97.0, 40.0)
            await pilot.pause()
            util = [row.query(ScaledSparkline).first() for row in panel.query(GpuRowView)]
            assert util[0].data[-2:] == (97.0, 40.0)
            # One fixed 0-100 % scale: an idle GPU (2 %, then 3 %) draws the lowest bars, not full ones.
            drawn = [str(spark.render()).strip() for spark in util]
            assert drawn[0].endswith("█▄") and set(drawn[1]) == {"▁"}, drawn

    asyncio.run(scenario())


def test_an_idle_warm_group_shows_as_holding_its_gpus(world, make_app, tmp_path):
    """Between jobs a warm group keeps its models on its GPUs: the panel and `flf2v gpus` say it holds them
    (its processes are not taken for another program's)."""
    fake = tmp_path / "gpus.json"
    _gpus(fake, used0=60, util0=0)
    label = "idle warm group (flf2v-14B x2 key 1a2b3c4d)"
    _worker_pool(world, busy={}, warm={"0": label, "1": label})

    async def scenario():
        app = make_app(world, gpu_source=FakeSource(fake))
        async with app.run_test(size=(150, 36)) as pilot:
            await settle(pilot, lambda: "NVIDIA H100" in screen_text(app), what="the GPUs")
            rows = [line for line in screen_text(app).splitlines() if "NVIDIA H100" in line]
            assert all(label in row for row in rows) and "pid 4242" not in rows[1], rows

    asyncio.run(scenario())
    shown = flf2v(world.home.root, "gpus", env={"FLF2V_FAKE_GPUS": str(fake)})
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "NVIDIA H100" in line]
    assert len(lines) == 2 and all(line.rstrip().endswith(label) for line in lines), shown.stdout
