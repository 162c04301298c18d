"""The events.jsonl schema, writer and incremental reader."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from engine.telemetry import SCHEMA_VERSION, EventTail, EventWriter, read_events, validate_event


def test_writer_produces_valid_events(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path, rank=0)
    w.emit("start", task="flf2v-tiny", world_size=1, device="cpu", args={}, engine_version="x")
    w.emit("stage", name="denoise", phase="begin")
    w.emit("stage", name="denoise", phase="end", seconds=1.5)
    w.emit("step", i=1, n=2, seconds=0.1, eta_seconds=0.1)
    w.emit("memory", rss=123)
    w.emit("done", output="/x.mp4", frames=9, fps=16, seconds=3.0)
    w.emit("error", type="X", message="m", traceback="", **{"class": "oom"})
    w.close()
    events = read_events(path)
    assert [e["kind"] for e in events] == ["start", "stage", "stage", "step", "memory", "done", "error"]
    assert all(e["v"] == SCHEMA_VERSION and e["rank"] == 0 for e in events)
    assert all(validate_event(e) == [] for e in events)


def test_validator_catches_problems():
    base = {"v": 1, "t": 1.0, "rank": 0}
    step = {**base, "kind": "step", "i": 1, "n": 2, "seconds": 1.0}
    assert validate_event(step) == ["step event lacks 'eta_seconds'"]
    assert validate_event({**base, "kind": "stage", "name": "nap", "phase": "begin"})
    assert validate_event({**base, "kind": "stage", "name": "decode", "phase": "end"})  # end without seconds
    assert validate_event({**base, "kind": "memory"})
    assert validate_event({**base, "kind": "error", "type": "X", "message": "", "traceback": "", "class": "meh"})
    assert validate_event({"kind": "step"})
    # Unknown kinds and fields are fine, so later versions can add them.
    assert validate_event({**base, "kind": "future", "anything": 1}) == []
    assert validate_event({**base, "kind": "memory", "rss": 1, "gpu_temp": 70}) == []


def test_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.poll() == []
    with open(path, "w") as fh:
        fh.write(json.dumps({"kind": "a"}) + "\n" + '{"kind": "b"')
    assert [e["kind"] for e in tail.poll()] == ["a"]
    with open(path, "a") as fh:
        fh.write("}\n")
    assert [e["kind"] for e in tail.poll()] == ["b"]
    assert tail.poll() == []


def _spam(path: str, rank: int) -> None:
    w = EventWriter(path, rank)
    for i in range(300):
        w.emit("memory", rss=i, note="x" * 500)
    w.close()


def test_concurrent_ranks_never_interleave_lines(tmp_path):
    path = str(tmp_path / "events.jsonl")
    procs = [multiprocessing.Process(target=_spam, args=(path, r)) for r in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = Path(path).read_text().splitlines()
    assert len(lines) == 1200
    assert all(validate_event(json.loads(line)) == [] for line in lines)
