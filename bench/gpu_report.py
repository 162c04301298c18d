"""bench/gpu_proof.py's results as Markdown (gpu_proof.md) and as a compact summary for a terminal tail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.gpu_models import WAN22_SECONDS_PER_STEP


def _dit_rows(dit: dict[str, Any]) -> list[str]:
    rows = [
        "| attention | compile | s/step | TFLOP/s | 50 steps (s) | vs Wan2.2 s/step | peak GiB | steps (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in dit.get("runs", []):
        if run.get("status") != "ok":
            rows.append(f"| {run['attention']} | {run['compile']} | {run.get('status')} | | | | | |")
            continue
        rows.append(
            f"| {run['attention']} | {run['compile']} | {run['seconds_per_step']} | {run['tflops']} | "
            f"{run['projected_50_steps_s']} | {run['vs_wan22_per_step']} | "
            f"{run.get('step_peak_allocated_gib', run.get('step_rss_gib', '-'))} | "
            f"{', '.join(map(str, run['step_seconds']))} |"
        )
    return rows


def write_markdown(results: dict[str, Any], path: Path) -> None:
    sections = results["sections"]
    env = sections.get("env", {})
    lines = [
        "# GPU proof" + (" (dry run: tiny geometry on the CPU)" if results["dry_run"] else ""),
        "",
        f"Device: {env.get('device', 'cpu')} (capability {env.get('capability', '-')}), torch {env.get('torch')}, "
        f"diffusers {env.get('diffusers')}, transformers {env.get('transformers')}; "
        f"total {results['total_seconds']} s.",
        "",
        "| section | status | seconds | memory |",
        "| --- | --- | --- | --- |",
    ]
    for name, record in sections.items():
        memory = ", ".join(f"{k} {v}" for k, v in (record.get("memory") or {}).items())
        lines.append(f"| {name} | {record['status']} | {record.get('seconds', '-')} | {memory} |")
    dit = sections.get("dit", {})
    dit = {**dit, "runs": dit.get("runs", []) + sections.get("dit_kernels", {}).get("runs", [])}
    if dit.get("runs"):
        lines += [
            "",
            f"## DiT: {dit.get('parameters_b')} B parameters, {dit.get('tokens')} tokens, "
            f"{dit.get('cfg_step_pflop')} PFLOP per CFG step (Wan2.2 on one H100: {WAN22_SECONDS_PER_STEP:.1f} s/step)",
            "",
            *_dit_rows(dit),
            "",
            f"dtypes at the official fp32 points (issue 17, item 1): {dit.get('dtypes')}",
        ]
    for name in ("t5", "vae", "engine", "tests"):
        record = {k: v for k, v in sections.get(name, {}).items() if k not in ("traceback", "memory", "status")}
        if record:
            lines += ["", f"## {name}", "", "    " + "; ".join(f"{k}: {v}" for k, v in record.items())]
    failures = [(n, r["traceback"]) for n, r in sections.items() if r.get("traceback")]
    for name, trace in failures:
        lines += ["", f"## {name} failed", "", "```", trace, "```"]
    path.write_text("\n".join(lines) + "\n")


def summary_lines(results: dict[str, Any]) -> list[str]:
    """A few lines that fit the end of a command's output."""
    out = [f"=== gpu_proof ({'dry run' if results['dry_run'] else 'GPU'}), {results['total_seconds']} s ==="]
    for name, record in results["sections"].items():
        extra = ""
        if name == "env":
            extra = f" {record.get('device', 'cpu')} auto={record.get('auto')}"
        elif name == "tests":
            extra = f" {record.get('summary', '')}"
        elif name in ("t5", "vae"):
            extra = " " + ", ".join(f"{k}={v}" for k, v in record.items() if k.endswith("_s"))
        out.append(f"{name:<7} {record['status'][:160]} ({record.get('seconds', '-')} s){extra}")
        if name == "dit":
            out.append(f"  dtypes {record.get('dtypes')}")
        if name in ("dit", "dit_kernels"):
            for run in record.get("runs", []):
                out.append(
                    f"  {run['attention']:<34} compile={run['compile']!s:<5} "
                    + (
                        f"{run['seconds_per_step']} s/step {run['tflops']} TFLOP/s "
                        f"50 steps {run['projected_50_steps_s']} s peak {run.get('step_peak_allocated_gib', '-')} GiB"
                        if run.get("status") == "ok"
                        else str(run.get("status"))
                    )
                )
    return out
