"""Scheduling with warm groups: a job an idle group can run goes first, but never against priority, and never
past a job that has waited its reservation out; idle groups hold their slots and give them up on demand; the
engine key is what must match, and nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flf2v_tui.worker.engine_key import could_match, job_key
from flf2v_tui.worker.pool import Pool
from storage.claim import Assignment, claim_next
from storage.workers import WorkerIdentity

ME = WorkerIdentity("host", 1, 1.0)
GROUP = Assignment("cpu", ("cpu0",))


def one_cpu(ranks: int) -> Assignment | str:
    return Assignment("cpu", ("cpu1",))


def warm_for(ckpt: str):
    """The answer of an idle group loaded for checkpoint `ckpt`: its slot for jobs of that checkpoint."""
    return lambda job: GROUP if job["ckpt_dir"] == ckpt else None


def claims(conn, warm_fit, **kw) -> list[tuple[int, bool]]:
    out = []
    while (c := claim_next(conn, ME, one_cpu, lambda j, n: f"/l/{j}/{n}", warm_fit=warm_fit, **kw)) is not None:
        out.append((c.job["id"], c.warm))
        assert c.assignment == (GROUP if c.warm else Assignment("cpu", ("cpu1",)))
    return out


def test_a_job_the_warm_group_can_run_goes_first_among_its_priority(conn, queue):
    cold_a, warm_b, cold_c, warm_d = (queue(ckpt_dir=c) for c in ("/other", "/warm", "/other", "/warm"))
    assert claims(conn, warm_for("/warm")) == [(warm_b, True), (warm_d, True), (cold_a, False), (cold_c, False)]


def test_warm_preference_never_goes_against_priority(conn, queue):
    warm_low = queue(ckpt_dir="/warm", priority=0)
    cold_high = queue(ckpt_dir="/other", priority=5)
    warm_high = queue(ckpt_dir="/warm", priority=5)
    cold_higher = queue(ckpt_dir="/other", priority=9)
    got = claims(conn, warm_for("/warm"))
    assert got == [(cold_higher, False), (warm_high, True), (cold_high, False), (warm_low, True)]


def test_a_job_that_waited_its_reservation_out_is_not_passed_by_warm_ones(conn, queue):
    old = queue(ckpt_dir="/other")
    queue(ckpt_dir="/warm")
    conn.execute("UPDATE jobs SET queued_at = ? WHERE id = ?", (time.time() - 3600, old))
    first = claim_next(conn, ME, one_cpu, lambda j, n: "/l", warm_fit=warm_for("/warm"), reserve_after_s=600)
    assert (first.job["id"], first.warm) == (old, False)


def test_without_warm_groups_the_order_is_unchanged(conn, queue):
    ids = [queue(ckpt_dir=c) for c in ("/other", "/warm", "/other")]
    assert claims(conn, None) == [(i, False) for i in ids]


def test_an_idle_group_holds_its_slots_and_gives_them_up_on_demand():
    pool = Pool("cuda", ["0", "1", "2"])
    pool.hold_warm(("0", "1"), "g1", "idle warm group (flf2v-tiny x2 key 12345678)")
    assert pool.free() == ["2"]
    assert pool.fit(2) == "waiting for 2 GPUs: 1 free of 3"
    # A job that does not fit the group may take its slots (the worker stops it first): free slots first.
    assert pool.fit(2, reclaim=True) == Assignment("cuda", ("2", "0"))
    assert pool.describe()["warm"] == {"0": "idle warm group (flf2v-tiny x2 key 12345678)"} | {
        "1": "idle warm group (flf2v-tiny x2 key 12345678)"
    }
    pool.take(Assignment("cuda", ("0", "1")), attempt_id=7)  # the group's own next job
    assert pool.warm == {} and pool.busy == {"0": 7, "1": 7}
    pool.release(7)
    pool.hold_warm(("0", "1"), "g1")
    pool.release_warm("g1")
    assert pool.free() == ["0", "1", "2"]


def _job(ckpt: Path, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "task": "flf2v-tiny", "ckpt_dir": str(ckpt), "gpus": 1, "offload_model": None, "ulysses_size": 1,
        "ring_size": 1, "t5_fsdp": 0, "t5_cpu": 0, "dit_fsdp": 0, "size": "64*64", "frame_num": 9, "base_seed": 1,
        "prompt": "a", "sample_solver": "unipc", "sample_steps": 4,
    }  # fmt: skip
    row.update(values)
    return row


def test_the_engine_key_is_the_engine_key_flags_world_size_and_checkpoint_files(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "weights.bin").write_bytes(b"1234")
    base = job_key(_job(ckpt), "cpu")
    # What may change from job to job does not change the key.
    varied = _job(ckpt, size="96*64", frame_num=13, base_seed=9, prompt="b", sample_solver="dpm++", sample_steps=7)
    assert job_key(varied, "cpu") == base and could_match(varied, base)
    # The layout, the world size, the device and the checkpoint's files do.
    assert job_key(_job(ckpt, t5_fsdp=1), "cpu") != base
    assert job_key(_job(ckpt, gpus=2), "cpu") != base and not could_match(_job(ckpt, gpus=2), base)
    assert job_key(_job(ckpt), "cuda") != base
    os.utime(ckpt / "weights.bin", ns=(1, 1))
    assert job_key(_job(ckpt), "cpu") != base
