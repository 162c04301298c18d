"""The GPU proof: one script, one call on one GPU (at most 8 minutes on an H100), writing gpu_proof.json and
gpu_proof.md into OUT_DIR and a compact summary to stdout.

    python bench/gpu_proof.py OUT_DIR             # on a CUDA machine: the real FLF2V-14B geometry
    python bench/gpu_proof.py OUT_DIR --dry-run   # the same code at the tiny geometry on the CPU

Sections, each timed and recorded even when it fails (a failure never stops the rest):
  env        torch, the card, which attention kernels import and run
  engine     the engine's distributed path on one rank: NCCL process group, FSDP2 wrap of T5 and the DiT,
             the peer watch, a 2-step render of the tiny model, clean shutdown
  tests      the `cuda`-marked tests (pytest -m cuda over the files that have them; issue 17's included)
  dit        the FLF2V-14B DiT with random bf16 weights, 3 CFG steps at 1280x720x81 (75,600 tokens) with
             `--attn auto`'s kernel, eager and with --compile: s/step, TFLOP/s against 13.1 PFLOP per CFG
             step, peak memory, the 50-step projection beside Wan2.2's 26.4 s/step; and the dtypes at the
             points where the official code keeps fp32 (issue 17, item 1)
  t5         umT5-XXL with random weights on a 512-token prompt and its negative
  vae        the VAE encoding and decoding 720p x 81 frames (fp32)
  dit_kernels  the same DiT runs with every other attention kernel that runs on the card
Memory per section: the allocator's peak, reset per section, beside what NVML sees for the process
(CUDA context and NCCL buffers too; issue 17, item 4).

The GPU machine has torch, transformers, accelerate and triton; diffusers and imageio-ffmpeg travel as wheels:
run `bench/gpu_wheels.sh` here once, then in the device call:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site;
    PYTHONUNBUFFERED=1 python3 bench/gpu_proof.py $OUT/proof
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gpu_models import (  # noqa: E402
    WAN22_SECONDS_PER_STEP,
    Geometry,
    build_dit,
    build_t5,
    build_vae,
    cfg_step_flops,
    dit_inputs,
    dry_geometry,
    real_geometry,
)
from bench.gpu_precision import fp32_points, install_recipe  # noqa: E402
from bench.gpu_report import summary_lines, write_markdown  # noqa: E402
from engine.attention import DIFFUSERS_BACKENDS, Kernel, apply_attention, auto_candidates, resolve_attention  # noqa: E402
from engine.memory_stats import NvmlProcessMemory  # noqa: E402
from engine.regional_compile import compile_blocks  # noqa: E402
from engine.sampler import denoise  # noqa: E402
from engine.schedulers import make_scheduler  # noqa: E402

SECTIONS = ("env", "engine", "tests", "dit", "t5", "vae", "dit_kernels")


class Proof:
    def __init__(self, out: Path, dry_run: bool, steps: int, budget_s: float, skip: set[str], compiled: bool) -> None:
        self.out, self.dry_run, self.steps, self.skip, self.compiled = out, dry_run, steps, skip, compiled
        self.device = torch.device("cpu") if dry_run else torch.device("cuda", 0)
        # The engine's own NVML reading (the GPU found by UUID, NVML started once): context, NCCL buffers,
        # allocator, as NVML charges them to this process.
        self.nvml = NvmlProcessMemory(self.device)
        self.geometry: Geometry = dry_geometry() if dry_run else real_geometry()
        self.started = time.monotonic()
        self.deadline = self.started + budget_s
        self.results: dict[str, Any] = {"dry_run": dry_run, "sections": {}}

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def section(self, name: str, work: Callable[[], dict[str, Any]]) -> None:
        record: dict[str, Any] = {}
        if name in self.skip:
            record["status"] = "skipped (--skip)"
        elif self.left_s() <= 0:
            record["status"] = "skipped (time budget spent)"
        else:
            self._reset_memory()
            started = time.monotonic()
            try:
                record.update(work())
                record["status"] = "ok"
            except Exception as exc:  # recorded; the next section still runs
                record["status"] = f"failed: {type(exc).__name__}: {exc}"[:500]
                record["traceback"] = traceback.format_exc()[-4000:]
            record["seconds"] = round(time.monotonic() - started, 2)
            record["memory"] = self._memory()
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
        self.results["sections"][name] = record
        print(f"[gpu_proof] {name}: {record['status']} ({record.get('seconds', 0)} s)", flush=True)

    def _reset_memory(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def _memory(self) -> dict[str, Any]:
        if not self.cuda:
            import psutil

            return {"rss_gib": round(psutil.Process().memory_info().rss / 2**30, 3)}
        return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2),
                "peak_reserved_gib": round(torch.cuda.max_memory_reserved(self.device) / 2**30, 2),
                "nvml_process_gib": gib(self.nvml.used_bytes())}  # fmt: skip

    # ---- sections ----------------------------------------------------------------------------------
    def env(self) -> dict[str, Any]:
        import diffusers
        import transformers

        info: dict[str, Any] = {"torch": torch.__version__, "diffusers": diffusers.__version__,
                                "transformers": transformers.__version__, "python": sys.version.split()[0]}  # fmt: skip
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            info.update(device=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                        memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                        cudnn=torch.backends.cudnn.version())  # fmt: skip
        info["kernels"] = [k.describe() for k in self.kernels()]
        info["auto"] = resolve_attention("auto", self.device).describe()
        return info

    def kernels(self) -> list[Kernel]:
        """The attention kernels to time: `auto`'s candidates that run here, and sage when it does."""
        if not self.cuda:
            return [resolve_attention("auto", self.device), Kernel("math", DIFFUSERS_BACKENDS["math"])]
        from engine.attention import card_features, runs_here

        found = [*auto_candidates(card_features(self.device)), Kernel("sage", DIFFUSERS_BACKENDS["sage"])]
        return [k for k in dict.fromkeys(found) if k.name == "sdpa" or runs_here(k, self.device)]

    def tests(self) -> dict[str, Any]:
        files = sorted(
            str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py") if "mark.cuda" in p.read_text()
        )
        timeout = max(30, int(min(150, self.left_s() - 280)))
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-x", *files],
            capture_output=True, text=True, cwd=REPO, timeout=timeout,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
        )  # fmt: skip
        tail = (proc.stdout + proc.stderr).strip().splitlines()
        if proc.returncode not in (0, 5):  # 5: nothing collected (no cuda test left)
            raise RuntimeError(f"pytest exited {proc.returncode}: {' | '.join(tail[-6:])}")
        return {"files": files, "summary": tail[-1] if tail else "", "returncode": proc.returncode}

    def engine(self) -> dict[str, Any]:
        from bench.gpu_engine import one_rank_render

        return one_rank_render(self.device, Path(tempfile.mkdtemp(prefix="gpu-proof-engine-")))

    def dit(self) -> dict[str, Any]:
        """`auto`'s kernel, eager and compiled: the figures that matter most come first."""
        auto = resolve_attention("auto", self.device)
        return self._dit_runs([(auto, False)] + ([(auto, True)] if self.compiled else []), dtypes=True)

    def dit_kernels(self) -> dict[str, Any]:
        """Every other kernel that runs here (PyTorch's own pick left out on CUDA: it is one of them), after
        T5 and the VAE, so that a spent budget cuts these first."""
        auto = resolve_attention("auto", self.device)
        others = [k for k in self.kernels() if k != auto and not (self.cuda and k.name == "sdpa")]
        return self._dit_runs([(k, False) for k in others], dtypes=False)

    def _dit_runs(self, runs: list[tuple[Kernel, bool]], dtypes: bool) -> dict[str, Any]:
        g, dev = self.geometry, self.device
        built = time.monotonic()
        model = build_dit(g, dev)
        install_recipe(model)
        params = sum(p.numel() for p in model.parameters())
        out: dict[str, Any] = {"parameters_b": round(params / 1e9, 3), "tokens": g.tokens,
                               "build_s": round(time.monotonic() - built, 1),
                               "cfg_step_pflop": round(cfg_step_flops(g) / 1e15, 4), "runs": []}  # fmt: skip
        noise, cond = dit_inputs(g, dev)
        if dtypes:
            out["dtypes"] = fp32_points(model, noise, cond, g)
        for kernel, compiled in runs:
            if self.left_s() < (75 if self.cuda else 0):
                out["runs"].append({"attention": kernel.describe(), "compile": compiled, "status": "skipped (time)"})
                continue
            apply_attention(model, kernel)
            if compiled:
                compile_blocks(model)
            try:
                out["runs"].append(self._time_dit(model, noise, cond, kernel, compiled))
            finally:
                for block in model.blocks:  # back to eager: a compiled block keeps the kernel it was traced with
                    block._compiled_call_impl = None
                torch._dynamo.reset()  # and its graphs no longer hold the weights
        return out

    def _time_dit(self, model: Any, noise: torch.Tensor, cond: Any, kernel: Kernel, compiled: bool) -> dict[str, Any]:
        g = self.geometry
        self._reset_memory()
        times: list[float] = []
        scheduler, timesteps = make_scheduler("unipc", self.steps, g.task.sample_shift, g.task.num_train_timesteps)
        denoise(model, noise, cond, scheduler, timesteps, g.task.sample_guide_scale, cfg_batch=False,
                autocast_dtype=g.dit_dtype if g.dit_dtype != torch.float32 else None,
                on_step=lambda i, n, s, lat: times.append(s))  # fmt: skip
        steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
        return {
            "attention": kernel.describe(), "compile": compiled, "status": "ok",
            "step_seconds": [round(t, 3) for t in times], "seconds_per_step": round(steady, 3),
            "tflops": round(cfg_step_flops(g) / steady / 1e12, 1 if self.cuda else 6),
            "projected_50_steps_s": round(50 * steady, 1),
            "vs_wan22_per_step": round(steady / WAN22_SECONDS_PER_STEP, 3),
            **{f"step_{k}": v for k, v in self._memory().items()},
        }  # fmt: skip

    def t5(self) -> dict[str, Any]:
        g = self.geometry
        model = build_t5(g, self.device)
        ids = torch.randint(0, model.config.vocab_size, (2, g.task.text_len), device=self.device)
        mask = torch.ones_like(ids)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask).last_hidden_state.float().sum().item()
            times.append(time.perf_counter() - started)
        params = sum(p.numel() for p in model.parameters())
        return {"parameters_b": round(params / 1e9, 3), "first_s": round(times[0], 3),
                "encode_s": round(min(times[1:]), 3), "tokens": 2 * g.task.text_len}  # fmt: skip

    def vae(self) -> dict[str, Any]:
        g = self.geometry
        model = build_vae(g, self.device)
        video = torch.rand(1, 3, g.frames, g.height, g.width, device=self.device, dtype=g.vae_dtype) * 2 - 1
        with torch.no_grad():
            started = time.perf_counter()
            latent = model.encode(video).latent_dist.mode()
            latent.sum().item()
            encoded = time.perf_counter() - started
            started = time.perf_counter()
            model.decode(latent, return_dict=False)[0].sum().item()
            decoded = time.perf_counter() - started
        return {"frames": g.frames, "size": f"{g.width}x{g.height}", "latent": list(latent.shape),
                "encode_s": round(encoded, 2), "decode_s": round(decoded, 2)}  # fmt: skip

    def run(self) -> dict[str, Any]:
        for name in SECTIONS:
            self.section(name, getattr(self, name))
        self.results["total_seconds"] = round(time.monotonic() - self.started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_proof.json").write_text(json.dumps(self.results, indent=2, default=str))
        write_markdown(self.results, self.out / "gpu_proof.md")
        print("\n".join(summary_lines(self.results)), flush=True)
        return self.results


def gib(count: int | None) -> float | None:
    return round(count / 2**30, 2) if count else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_proof.json and gpu_proof.md")
    parser.add_argument("--dry-run", action="store_true", help="the same code at the tiny geometry on the CPU")
    parser.add_argument("--steps", type=int, default=3, help="sampling steps per DiT run (default 3)")
    parser.add_argument("--budget-s", type=float, default=440, help="sections starting later are skipped")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out")
    parser.add_argument("--no-compile", action="store_true", help="no --compile run of the DiT")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_proof: no CUDA device here; use --dry-run on the CPU", file=sys.stderr)
        return 2
    results = Proof(args.out, args.dry_run, args.steps, args.budget_s, set(args.skip), not args.no_compile).run()
    failed = [n for n, s in results["sections"].items() if s["status"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
