"""bench/gpu_proof.py cannot rot: its --dry-run runs the same sections at the tiny geometry on the CPU and
writes both reports; and its FLOP model gives the issue's 13.1 PFLOP per CFG step at the real 14B geometry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_models import cfg_step_flops, dry_geometry, real_geometry

REPO = Path(__file__).resolve().parents[2]


def test_the_flop_model_at_the_real_geometry():
    real = real_geometry()
    assert (real.tokens, real.image_tokens, real.latent_shape) == (75600, 514, (16, 21, 90, 160))
    assert abs(cfg_step_flops(real) / 1e15 - 13.1) < 0.05
    assert dry_geometry().tokens == 48


@pytest.mark.slow
def test_the_dry_run_runs_every_section_and_writes_both_reports(tmp_path):
    # The cuda tests' section runs pytest, which this test is already inside of; --compile has its own test.
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_proof.py"), str(tmp_path / "proof"), "--dry-run", "--steps", "2",
         "--skip", "tests", "--no-compile"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "proof" / "gpu_proof.json").read_text())
    sections = results["sections"]
    assert {name: s["status"] for name, s in sections.items()} == {
        "env": "ok", "tests": "skipped (--skip)", "engine": "ok", "dit": "ok", "t5": "ok", "vae": "ok",
        "dit_kernels": "ok",
    }  # fmt: skip
    assert sections["engine"]["backend"] == "gloo" and sections["engine"]["watch"]
    assert sections["engine"]["dit_class"].startswith("FSDP") and "denoise" in sections["engine"]["stages"]
    runs = sections["dit"]["runs"] + sections["dit_kernels"]["runs"]
    assert [r["attention"] for r in runs] == ["sdpa (native)", "math (_native_math)"]
    assert all(r["status"] == "ok" and len(r["step_seconds"]) == 2 and r["tflops"] > 0 for r in runs)
    # The dtypes at the official float32 points, by issue 17's probe where the tree has it, else the bench's.
    dtypes = sections["dit"]["dtypes"]
    assert dtypes["probe"] == "engine.precision" and len(dtypes) >= 5
    assert sections["vae"]["latent"] == [1, 16, 3, 8, 8]
    report = (tmp_path / "proof" / "gpu_proof.md").read_text()
    assert "| attention | compile | s/step | TFLOP/s |" in report and "dry run" in report
    assert "=== gpu_proof (dry run)" in proc.stdout
