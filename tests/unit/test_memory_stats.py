"""Memory events: each stage reports its own peak (the peak starts again when a stage begins), and the fields
stay those of schema version 1, with the CUDA additions optional."""

from __future__ import annotations

import pytest
import torch

from engine.reporting import Reporter
from engine.runtime import Runtime
from engine.telemetry import read_events, validate_event

MB = 1 << 20


def test_each_stage_reports_its_own_peak_on_cpu(tmp_path):
    runtime = Runtime(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    reporter = Reporter(runtime, str(tmp_path / "events.jsonl"))
    with reporter.stage("load_transformer"):
        big = torch.ones(300 * MB // 4)  # 300 MB, touched, then freed within the stage
        del big
    with reporter.stage("denoise"):
        small = torch.ones(MB // 4)
        del small
    reporter.close()
    events = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "memory"]
    assert all(validate_event(e) == [] for e in events)
    end = {e["stage"]: e for e in events if e.get("phase") == "end"}
    begin = {e["stage"]: e for e in events if e.get("phase") == "begin"}
    assert end["load_transformer"]["peak_rss"] - begin["load_transformer"]["rss"] > 250 * MB
    # Without the reset, denoise's peak would still hold load_transformer's 300 MB.
    assert end["denoise"]["peak_rss"] < end["load_transformer"]["peak_rss"] - 250 * MB
    assert "nvml_used" not in end["denoise"] and "host_rss" not in end["denoise"]  # CUDA-only fields


@pytest.mark.cuda
def test_cuda_figures_reset_per_stage_and_show_what_nvml_sees(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    device = torch.device("cuda", 0)
    runtime = Runtime(rank=0, local_rank=0, world_size=1, device=device)
    reporter = Reporter(runtime, str(tmp_path / "events.jsonl"))
    with reporter.stage("load_transformer"):
        big = torch.ones(512 * MB // 4, device=device)
        del big
    with reporter.stage("denoise"):
        torch.ones(MB // 4, device=device)
    reporter.close()
    events = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "memory"]
    assert all(validate_event(e) == [] for e in events)
    end = {e["stage"]: e for e in events if e.get("phase") == "end"}
    assert end["load_transformer"]["peak"] >= 512 * MB > end["denoise"]["peak"]
    # NVML sees the CUDA context beside the allocator's reserve (in a container it may not list the pid).
    if "nvml_used" in end["denoise"]:
        assert end["denoise"]["nvml_used"] > end["denoise"]["reserved"]
    assert end["denoise"]["host_rss"] > 0
