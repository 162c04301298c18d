"""The error event of a failing rank: written once, completely, before anything else can cut it short."""

from __future__ import annotations

import threading
import time

import torch

from engine import generate
from engine.reporting import Reporter
from engine.runtime import Runtime
from engine.telemetry import read_events


def _reporter(tmp_path) -> Reporter:
    runtime = Runtime(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"))
    return Reporter(runtime, str(tmp_path / "events.jsonl"))


def test_a_second_report_returns_only_once_the_first_event_is_on_disk(tmp_path, monkeypatch):
    reporter = _reporter(tmp_path)
    emit = reporter.events.emit
    writing = threading.Event()

    def slow_emit(kind: str, **fields: object) -> dict:
        writing.set()
        time.sleep(0.5)  # the main thread is still writing its event...
        return emit(kind, **fields)

    monkeypatch.setattr(reporter.events, "emit", slow_emit)
    main = threading.Thread(target=reporter.error, args=(RuntimeError("first"), "comm", "trace"))
    main.start()
    assert writing.wait(5)
    # ...when the peer watch reports too, and would then end the process with os._exit.
    assert reporter.error(RuntimeError("second"), "comm", "") is False
    on_disk = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "error"]
    main.join()
    assert [e["message"] for e in on_disk] == ["first"]


def test_the_event_is_written_before_the_failure_is_logged(tmp_path, monkeypatch):
    reporter = _reporter(tmp_path)
    seen_at_log_time: list[list[dict]] = []

    def log(level: int, message: str) -> None:
        seen_at_log_time.append(read_events(tmp_path / "events.jsonl"))

    monkeypatch.setattr(generate.log, "log", log)
    generate._report(reporter, RuntimeError("gone"), "comm", "trace")
    (events,) = seen_at_log_time
    assert [(e["kind"], e["message"]) for e in events] == [("error", "gone")]
