"""The TUI's data without the app: queue snapshots and cells, the submit form's parsing and error routing,
telemetry timelines, GPU samples, and log lines drawn inert."""

from __future__ import annotations

import json
import re

import pytest

from flf2v_tui.gpus import FakeSource, GpuUnavailable
from flf2v_tui.screen_data import form, queue_view
from flf2v_tui.screen_data.machine import MachineMonitor
from flf2v_tui.screen_data.queue_view import (
    MAX_ROWS,
    NARROW_COLUMNS,
    JobFilter,
    bar,
    job_cells,
    prompt_room,
    queue_eta,
    read_snapshot,
    status_line,
    within_rows,
)
from flf2v_tui.screen_data.telemetry import JobTelemetry, progress_of
from flf2v_tui.tui.widgets.logview import styled_line
from flf2v_tui.tui.widgets.spark import spark_text
from storage.db import write_tx
from storage.jobs import get_job
from storage.workers import set_paused
from tests.functional.queue_helpers import write_stub_checkpoint


def test_filter_words():
    f = JobFilter.parse("running state:failed,held label:sweep #demo Bird")
    assert f.states == ("running", "failed", "held") and f.labels == ("sweep", "demo") and f.words == ("bird",)
    assert f.problem() is None and JobFilter.parse("state:nope").problem().startswith("unknown state 'nope'")
    assert f.matches({"prompt": "A bird flies", "labels": []}) and not f.matches({"prompt": "a fox", "labels": []})


def test_bars_and_cells():
    assert bar(0) == "··········" and bar(1) == "██████████" and bar(0.24) == "██▍·······"
    job = {"id": 3, "state": "running", "labels": ["a", "b"], "prompt": "x " * 40, "gpus": 2, "assigned": "0,1",
           "device": "cuda", "step": 5, "steps_total": 50, "sec_per_it": 1.234, "eta_seconds": 61,
           "created_at": 100}  # fmt: skip
    cells = job_cells({**job, "stage": "denoise"}, "running", now=3800)
    assert [cells[c] for c in ("id", "state", "label", "note")] == ["3", "running", "a,b", "denoise"]
    assert cells["prompt"] == " ".join(["x"] * 40)  # whole: the table cuts it to its room
    assert [cells[c] for c in ("gpus", "step", "s/it", "eta", "age")] == ["0,1", "█········· 5/50", "1.23", "1m01s",
                                                                           "1h01m"]  # fmt: skip
    queued = job_cells({**job, "state": "queued"}, "queued", 3700, "waiting for a CPU slot (2 busy)", narrow=True)
    assert [queued[c] for c in ("gpus", "step", "s/it", "eta")] == ["2", "", "", ""]
    assert queued["note"] == "waiting for a CPU slot (2 busy)"
    lost = job_cells({**job, "stage": "denoise"}, "interrupted", 3800)  # its worker died: no speed nor ETA
    assert [lost[c] for c in ("s/it", "eta", "note")] == ["", "", "its worker died"]
    narrow = job_cells({**job, "stage": "denoise"}, "running", 3800, narrow=True)
    assert (narrow["step"], narrow["note"]) == ("▌···· 5/50", "denoise · ETA 1m01s")  # no ETA column at 80
    # The prompt gets what the other columns leave, never under 10 characters nor over 40.
    rows = [{c: "x" * 10 for c in NARROW_COLUMNS}]  # four other columns of 10, each padded a cell each side
    assert prompt_room(rows, NARROW_COLUMNS, 80) == 80 - 4 * 12 - 4 and prompt_room(rows, NARROW_COLUMNS, 30) == 10
    assert prompt_room(rows, NARROW_COLUMNS, 200) == 40


def _running(conn, job_id: int, eta: float | None, started: float) -> None:
    cur = conn.execute("INSERT INTO attempts (job_id, number, worker_host, worker_pid, worker_started, device, gpus, "
                       "nproc, log_dir, started_at, eta_seconds) VALUES (?, 1, 'h', 1, 0, 'cpu', 'c0', 1, '/x', ?, ?)",
                       (job_id, started, eta))  # fmt: skip
    conn.execute("UPDATE jobs SET state = 'running', current_attempt_id = ? WHERE id = ?", (cur.lastrowid, job_id))


def test_queue_eta_spreads_owed_work_over_the_slots(conn, queue):
    running, other, queued, held, waiting = queue(gpus=2), queue(), queue(), queue(), queue()
    with write_tx(conn):
        _running(conn, running, 100.0, started=0)
        _running(conn, other, None, started=250)  # no ETA of its own: the typical duration less its 50 s so far
        conn.execute("UPDATE jobs SET held = 1 WHERE id = ?", (held,))
        conn.execute("INSERT INTO job_deps (job_id, after_id) VALUES (?, ?)", (waiting, queued))
    owed = 100 * 2 + (300 - 50) + 300  # the held job (and one waiting on another) owe nothing yet
    assert queue_eta(conn, slots=4, typical=300.0, now=300) == owed / 4
    assert queue_eta(conn, slots=0, typical=300.0, now=300) is None  # no worker
    assert queue_eta(conn, slots=4, typical=None, now=300) is None  # nothing to estimate from


def test_queue_eta_covers_the_whole_queue_not_the_rows_listed(conn, queue, monkeypatch):
    """The table lists MAX_ROWS jobs at most; the ETA counts every queued job, in one aggregate query."""
    first = queue()
    columns = [r[1] for r in conn.execute("PRAGMA table_info(jobs)") if r[1] not in ("id", "seq")]
    names = ", ".join(columns)
    with write_tx(conn):  # MAX_ROWS + 300 queued jobs in all, copies of the first
        conn.execute(f"WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?) "
                     f"INSERT INTO jobs (seq, {names}) SELECT j.seq + n.k, {names} FROM jobs j, n WHERE j.id = ?",
                     (MAX_ROWS + 299, first))  # fmt: skip
    monkeypatch.setattr(queue_view, "_typical_seconds", lambda conn: 60.0)
    monkeypatch.setattr(queue_view, "live_workers", lambda conn: [{"pool": {"slots": ["0", "1"]}}])
    snap = read_snapshot(conn, JobFilter(), now=0)
    assert len(snap.jobs) == MAX_ROWS and snap.left_out == 300
    assert snap.queue_eta == (MAX_ROWS + 300) * 60.0 / 2
    assert read_snapshot(conn, JobFilter.parse("state:failed"), now=0).queue_eta == snap.queue_eta


def test_a_long_queue_keeps_recent_history_what_runs_and_the_head_of_the_queue():
    jobs = [{"id": i, "state": "succeeded"} for i in range(300)] + [
        {"id": 1000 + i, "state": "queued"} for i in range(900)
    ]
    kept = [j["id"] for j in within_rows(jobs, limit=100)]
    assert kept == list(range(275, 300)) + list(range(1000, 1075))
    assert [j["id"] for j in within_rows(jobs[:300], limit=100)] == list(range(200, 300))
    assert within_rows(jobs[:50], limit=100) == jobs[:50]


def test_snapshot_counts_states_and_says_when_paused(conn, queue):
    a, b, c = queue(), queue(labels=["x"]), queue()
    with write_tx(conn):
        conn.execute("UPDATE jobs SET state = 'succeeded', started_at = 0, finished_at = 100 WHERE id = ?", (a,))
        conn.execute("UPDATE jobs SET held = 1 WHERE id = ?", (c,))
    set_paused(conn, True)
    snap = read_snapshot(conn, JobFilter(), now=200)
    assert snap.counts == {"succeeded": 1, "queued": 1, "held": 1} and snap.paused and snap.workers == 0
    assert snap.states == {a: "succeeded", b: "queued", c: "held"}
    line = status_line(snap)
    assert line.startswith("PAUSED") and "no worker running" in line and "queue ETA" not in line
    assert [j["id"] for j in read_snapshot(conn, JobFilter.parse("label:x"), now=200).jobs] == [b]


def _values(frames, ckpt, **changes: str) -> dict[str, str]:
    values = {name: "" for name in form.FIELDS}
    values |= {"first_frame": str(frames[0]), "last_frame": str(frames[1]), "prompt": "a kite", "task": "flf2v-tiny",
               "ckpt_dir": str(ckpt), "size": "64*32", "frame_num": "9", "sample_steps": "4"}  # fmt: skip
    return values | changes


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"first_frame": "/nowhere/a.png"}, "first_frame", "does not exist"),
        ({"last_frame": ""}, "last_frame", "required"),
        ({"prompt": "  "}, "prompt", "prompt is empty"),
        ({"task": "flf2v-99B"}, "task", "unknown task"),
        ({"ckpt_dir": "/nowhere"}, "ckpt_dir", "does not exist"),
        ({"size": "65*32"}, "size", "16"),
        ({"frame_num": "8"}, "frame_num", "4n+1"),
        ({"sample_steps": "0"}, "sample_steps", "at least 1"),
        ({"sample_shift": "0"}, "sample_shift", "must be more than 0"),
        ({"sample_guide_scale": "-1"}, "sample_guide_scale", "must be at least 0"),
        ({"seeds": "3..1"}, "seeds", "A..B"),
        ({"gpus": "0"}, "gpus", "at least 1"),
        ({"gpus": "two"}, "gpus", "not a whole number"),
        ({"ulysses_size": "2", "gpus": "1"}, "gpus", "needs 2 ranks, not 1"),
        ({"t5_cpu": "1", "t5_fsdp": "1", "gpus": "2"}, "t5_cpu", "give one of them"),
    ],
)
def test_each_bad_value_is_reported_under_its_own_field(conn, home, frames, tmp_path, change, field, words):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    ids, errors = form.submit(conn, home, _values(frames, ckpt, **change))
    assert ids == [] and list(errors) == [field] and words in errors[field], errors
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_a_path_with_the_home_of_no_user_is_bad_input_not_a_crash(conn, home, frames, tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    ghost = "~no-such-user-flf2v/first.png"
    assert form.image_summary(ghost).startswith(ghost) and "no such user" in form.image_summary(ghost)
    assert form.complete_path("~no-such-user-flf2v/fi") is None
    ids, errors = form.submit(conn, home, _values(frames, ckpt, first_frame=ghost))
    assert ids == [] and list(errors) == ["first_frame"] and "no such user" in errors["first_frame"]


def test_messages_about_the_negative_prompt_go_under_it_not_under_the_prompt(conn, home, frames, tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    for change, field, words in [({"neg_prompt": "calm\ud800"}, "neg_prompt", "--neg_prompt is not valid UTF-8"),
                                 ({"neg_prompt": "no\x00 birds"}, "neg_prompt", "--neg_prompt contains a NUL"),
                                 ({"prompt": "a kite\ud800"}, "prompt", "--prompt is not valid UTF-8"),
                                 ({"prompt": ""}, "prompt", "the prompt is empty")]:  # fmt: skip
        ids, errors = form.submit(conn, home, _values(frames, ckpt, **change))
        assert ids == [] and list(errors) == [field] and words in errors[field], errors


def test_a_database_that_refuses_the_job_is_a_message_for_the_whole_form(conn, home, frames, tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    conn.execute("PRAGMA query_only = ON")  # as a read-only file or a full disk would refuse the insert
    ids, errors = form.submit(conn, home, _values(frames, ckpt))
    assert ids == [] and list(errors) == [form.FORM_LEVEL] and "nothing was queued" in errors[form.FORM_LEVEL]
    assert "readonly" in errors[form.FORM_LEVEL]


def test_a_job_prefills_the_form_with_its_recipe(conn, home, frames, tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    ids, errors = form.submit(conn, home, _values(frames, ckpt, seeds="7", labels="a b", priority="2"))
    assert errors == {}
    job = get_job(conn, ids[0])
    prefill = form.prefill_from_job(job)
    assert prefill["first_frame"] == str(frames[0]) and prefill["seeds"] == "7" and prefill["labels"] == "a,b"
    again, errors = form.submit(conn, home, prefill)
    copy = get_job(conn, again[0])
    same = ("prompt", "task", "size", "frame_num", "sample_steps", "sample_shift", "base_seed", "priority", "labels",
            "sample_solver", "ulysses_size", "offload_model", "dit_fsdp", "t5_fsdp", "t5_cpu")  # fmt: skip
    assert errors == {} and {k: copy[k] for k in same} == {k: job[k] for k in same}
    frames[0].unlink()  # the original is gone: the job's own copy is used
    assert form.prefill_from_job(job)["first_frame"] == job["first_frame"]


def test_the_prompt_is_kept_as_typed_and_the_negative_prompt_trimmed(conn, home, frames, tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    ids, errors = form.submit(conn, home, _values(frames, ckpt, prompt=" a bird \n", neg_prompt="  calm sea \n"))
    assert errors == {}
    job = get_job(conn, ids[0])
    assert (job["prompt"], job["neg_prompt"]) == (" a bird \n", "calm sea")


def test_the_layout_flags_go_through_the_form(conn, home, frames, tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    values = _values(frames, ckpt, gpus="2", ulysses_size="2", dit_fsdp="1", t5_fsdp="1", offload_model="True",
                     sample_solver="dpm++")  # fmt: skip
    ids, errors = form.submit(conn, home, values)
    assert errors == {}
    job = get_job(conn, ids[0])
    assert (job["ulysses_size"], job["dit_fsdp"], job["t5_fsdp"], job["t5_cpu"]) == (2, 1, 1, 0)
    assert (job["offload_model"], job["sample_solver"]) == (1, "dpm++")
    prefill = form.prefill_from_job(job)
    assert (prefill["ulysses_size"], prefill["dit_fsdp"], prefill["t5_cpu"], prefill["offload_model"]) == (
        "2", "1", "", "True")  # fmt: skip


def test_image_summary_and_path_completion(frames, tmp_path):
    assert form.image_summary(str(frames[0])) == "32×32 RGB"
    assert "does not exist" in form.image_summary(str(tmp_path / "nope.png")) and form.image_summary(" ") == ""
    (tmp_path / "shots").mkdir()
    assert form.complete_path(str(tmp_path / "sh")) == f"{tmp_path}/shots/"
    assert form.complete_path(str(tmp_path / "fi")) == str(frames[0])
    assert form.complete_path(str(tmp_path / "zz")) is None and form.complete_path("") is None


def test_telemetry_timeline_steps_and_memory(tmp_path):
    events = [
        {"kind": "stage", "t": 10.0, "rank": 0, "name": "load_vae", "phase": "begin"},
        {"kind": "stage", "t": 12.0, "rank": 0, "name": "load_vae", "phase": "end", "seconds": 2.0},
        {"kind": "stage", "t": 12.0, "rank": 0, "name": "denoise", "phase": "begin"},
        {"kind": "step", "t": 13.0, "rank": 0, "i": 1, "n": 4, "seconds": 1.0, "eta_seconds": 3.0},
        {"kind": "memory", "t": 13.0, "rank": 1, "allocated": 5, "reserved": 6, "peak": 7},
        {"kind": "memory", "t": 14.0, "rank": 1, "allocated": 9, "reserved": 9, "peak": 9},
        {"kind": "preview", "t": 14.0, "rank": 0, "step": 1, "path": "/p/1.png"},
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps({"v": 1, **e}) + "\n" for e in events))
    tel = JobTelemetry(tmp_path)
    assert tel.poll() and not tel.poll()
    info = progress_of(tel, None, now=20.0)
    assert [(s.name, s.seconds, s.state) for s in info.spans] == [
        ("load", 2.0, "done"), ("encode", None, "pending"), ("denoise", 8.0, "running"), ("decode", None, "pending"),
        ("save", None, "pending")]  # fmt: skip
    assert (info.step, info.total, info.eta) == (1, 4, 3.0) and info.memory == {1: [5, 9]} and info.peak == {1: 9}
    assert info.preview["path"] == "/p/1.png"
    from_db = progress_of(None, {"state": "failed", "stage_seconds": {"encode_text": 1.5}, "step": 2,
                                 "steps_total": 4, "sec_per_it": 1.0, "eta_seconds": None}, now=0)  # fmt: skip
    assert [s.state for s in from_db.spans] == ["pending", "done", "pending", "pending", "pending"]
    # A render that stopped: the stage it was in says how, timed up to its last event (14.0), not up to now.
    for shown in ("failed", "cancelled", "interrupted"):
        spans = progress_of(tel, None, now=20.0, shown_state=shown).spans
        assert [(s.name, s.seconds, s.state) for s in spans][2] == ("denoise", 2.0, shown)
    failed_db = progress_of(None, {"state": "failed", "stage": "decode", "stage_seconds": {"denoise": 4.0},
                                   "step": 4, "steps_total": 4, "sec_per_it": 1.0, "eta_seconds": None},
                            now=0, shown_state="failed")  # fmt: skip
    assert [s.state for s in failed_db.spans] == ["pending", "pending", "done", "failed", "pending"]


def test_machine_monitor_keeps_history_and_falls_back_to_cpu(tmp_path):
    path = tmp_path / "gpus.json"
    gpu = {"index": 0, "name": "GPU", "uuid": "u", "memory_total": 100, "memory_used": 25, "utilization": 50,
           "processes": [{"pid": 9}]}  # fmt: skip
    path.write_text(json.dumps([gpu]))
    monitor = MachineMonitor(FakeSource(path), history=3)
    for used in (25, 50, 75, 100):
        path.write_text(json.dumps([{**gpu, "memory_used": used}]))
        sample = monitor.sample({})
    row = sample.gpus[0]
    assert row.memory_history == (50.0, 75.0, 100.0) and row.other_pids == (9,) and row.job is None
    assert monitor.sample({0: 12}).gpus[0].job == 12 and monitor.sample({0: 12}).gpus[0].other_pids == ()

    class NoDriver:
        def devices(self):
            raise GpuUnavailable("NVML is not available")

    cpu = MachineMonitor(NoDriver()).sample({})
    assert cpu.gpus == [] and cpu.no_gpu_reason == "NVML is not available" and cpu.ram_total > 0


def test_sparklines_are_drawn_on_a_fixed_scale():
    assert spark_text([2, 3, 2], 100, 5) == "  ▁▁▁"  # an idle GPU: low bars, newest on the right
    assert spark_text([97, 40, 0, 100], 100, 4) == "█▄▁█"
    assert spark_text([150, -5], 100, 2) == "█▁"  # out of range: clamped
    assert spark_text(list(range(100)), 100, 4) == "▂▄▆█"  # longer than the width: each run at its highest
    assert spark_text([5], 0, 1) == "█" and spark_text([1, 2], 100, 0) == ""


def test_log_lines_are_drawn_inert():
    hostile = (
        "\x1b[2J\x1b[Hmoved \x1b]0;title\x07 \x1b]52;c;cGF5bG9hZA==\x07 "
        "\x1b]8;;http://x/\x1b\\link\x1b]8;;\x1b\\ \x9b1m"
    )
    text = styled_line(f"[r1] {hostile}", colour_ranks=True, needle="LINK")
    assert text.plain == "[r1] moved   link "  # the C1 CSI goes with its parameters
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", text.plain)
    assert any("reverse" in str(span.style) for span in text.spans)  # the search hit is marked


def test_an_empty_gpus_field_takes_the_ranks_of_the_layout(conn, home, frames, tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    values = _values(frames, ckpt, cfg_size="2", ulysses_size="2", attn="math", compile="1", other_worker="1")
    values.pop("gpus", None)
    ids, errors = form.submit(conn, home, values)
    assert errors == {}
    job = get_job(conn, ids[0])
    assert (job["gpus"], job["cfg_size"], job["ulysses_size"], job["attn"], job["compile"]) == (4, 2, 2, "math", 1)
    prefill = form.prefill_from_job(job)
    assert (prefill["gpus"], prefill["cfg_size"], prefill["attn"], prefill["compile"]) == ("4", "2", "math", "1")
    # A count that does not add up is said under the GPUs field, with the number it must be.
    ids, errors = form.submit(conn, home, {**values, "gpus": "2"})
    assert ids == [] and "needs 4 ranks, not 2: run 4" in errors["gpus"]
