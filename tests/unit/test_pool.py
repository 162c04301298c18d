"""The worker's GPU pool, against fake NVML data (the one boundary the tests replace)."""

from __future__ import annotations

import json

import pytest

from flf2v_tui.gpus import FakeSource, GpuInfo, GpuUnavailable
from flf2v_tui.worker.pool import Pool, PoolError
from storage.claim import Assignment


def gpus(tmp_path, count: int, busy: dict[int, list[int]] | None = None) -> FakeSource:
    path = tmp_path / "gpus.json"
    items = [
        {"index": i, "name": "H100", "uuid": f"GPU-{i}", "memory_total": 80 << 30, "memory_used": 1 << 30,
         "utilization": 0, "processes": [{"pid": p, "used_bytes": 1 << 30} for p in (busy or {}).get(i, [])]}
        for i in range(count)
    ]  # fmt: skip
    path.write_text(json.dumps(items))
    return FakeSource(path)


class NoNvml:
    def devices(self) -> list[GpuInfo]:
        raise GpuUnavailable("NVML is not available (NVML Shared Library Not Found)")


def test_two_four_gpu_jobs_get_disjoint_sets(tmp_path):
    pool = Pool.build(gpus(tmp_path, 8))
    first = pool.fit(4)
    assert first == Assignment("cuda", ("0", "1", "2", "3"))
    pool.take(first, attempt_id=1)
    second = pool.fit(4)
    assert second == Assignment("cuda", ("4", "5", "6", "7"))
    pool.take(second, attempt_id=2)
    assert pool.fit(1) == "waiting for 1 GPU: 0 free of 8"
    pool.release(1)
    assert pool.fit(2) == Assignment("cuda", ("0", "1"))


def test_gpus_used_by_other_programs_are_not_handed_out(tmp_path):
    pool = Pool.build(gpus(tmp_path, 2, busy={1: [4242]}))
    pool.refresh()
    assert pool.fit(1) == Assignment("cuda", ("0",))
    reason = pool.fit(2)
    assert isinstance(reason, str) and "GPU 1 is used by another program (pid 4242)" in reason
    assert pool.describe()["blocked"] == {"1": "GPU 1 is used by another program (pid 4242)"}


def test_a_display_server_does_not_block_a_gpu(tmp_path):
    source = gpus(tmp_path, 1)
    items = json.loads(source.path.read_text())
    items[0]["processes"] = [{"pid": 77, "used_bytes": 1 << 27, "kind": "graphics"}]
    source.path.write_text(json.dumps(items))
    pool = Pool.build(source)
    pool.refresh()
    assert pool.fit(1) == Assignment("cuda", ("0",))


def test_explicit_gpu_list_and_env(tmp_path, monkeypatch):
    source = gpus(tmp_path, 4)
    assert Pool.build(source, gpus="2,3").slots == ["2", "3"]
    monkeypatch.setenv("FLF2V_GPUS", "1")
    assert Pool.build(source).slots == ["1"]
    with pytest.raises(PoolError, match="GPU 9 is not on this machine"):
        Pool.build(source, gpus="9")
    with pytest.raises(PoolError, match="distinct"):
        Pool.build(source, gpus="1,1")


def test_a_job_larger_than_the_pool_can_never_fit(tmp_path):
    assert Pool.build(gpus(tmp_path, 2)).fit(4) == ("never: needs 4 GPUs; the worker has 2 (start it with more --gpus)")


def test_cpu_slots_without_nvidia():
    pool = Pool.build(NoNvml())
    assert pool.device == "cpu" and pool.slots == ["cpu0"] and "NVML is not available" in pool.note
    # A CPU job of any number of ranks takes one slot.
    assert pool.fit(4) == Assignment("cpu", ("cpu0",))
    pool.take(Assignment("cpu", ("cpu0",)), 1)
    assert pool.fit(1) == "waiting for a CPU slot: all 1 in use"
    assert Pool.build(NoNvml(), cpu_slots=3).slots == ["cpu0", "cpu1", "cpu2"]
