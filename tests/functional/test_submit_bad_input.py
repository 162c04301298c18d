"""Issue 11's hostile submits and engine runs, each once: every one ends in one line on stderr and exit 2,
with nothing queued and no traceback. The CLI's cases run it in-process (quick); the engine's, and one test of
raw argv bytes, run the real binaries, with arguments as the bytes a shell passes (os.fsencode)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.cli_in_process import count_jobs, run_cli
from tests.functional.queue_helpers import REPO, env_for, job_row

BIG = str(2**70)  # beyond the 64 bits of SQLite's INTEGER and of torch's seed


def run(argv: list[str | bytes], home: Path | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    """A real process with argv as bytes: a str holding surrogate escapes becomes the raw bytes it stands for."""
    command = [sys.executable.encode(), *(a if isinstance(a, bytes) else os.fsencode(a) for a in argv)]
    environ = env_for(home) if home is not None else {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, env={**environ, **env}, cwd=REPO, timeout=120)


def assert_one_line(result: subprocess.CompletedProcess[bytes] | tuple[int, str, str], pattern: str) -> str:
    """Exit 2, one line on stderr that matches `pattern`, no traceback; for a process or a run_cli result."""
    if isinstance(result, tuple):
        code, out, err = result
    else:
        code, out, err = (
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in out + err
    assert re.search(pattern, err), err
    return err


def not_utf8(path: Path, name: bytes) -> str:
    return os.fsdecode(os.fsencode(str(path)) + b"/" + name)


def cut_safetensors(folder: Path) -> Path:
    """A checkpoint whose DiT file stops partway: its header names 256 bytes of tensors, the file holds 100."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [64], "data_offsets": [0, 256]}}).encode()
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(100))
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, stub_ckpt, qframes) -> dict[str, str]:
    """Names the cases below refer to as {name}."""
    root = tmp_path_factory.mktemp("hostile")
    frame = not_utf8(root, b"fr\xffme.png")
    shutil.copy(qframes[0], frame)  # a real image under a name that is not UTF-8
    cut = cut_safetensors(Path(shutil.copytree(stub_ckpt, root / "cut")))
    two_gpus = root / "two-gpus.json"
    two_gpus.write_text(json.dumps([
        {"index": i, "name": "FakeGPU", "uuid": f"GPU-{i}", "memory_total": 80 << 30, "memory_used": 0}
        for i in range(2)
    ]))  # fmt: skip
    (root / "out").mkdir()
    return {"frame": frame, "cut": str(cut), "two_gpus": str(two_gpus), "out": str(root / "out"), "root": str(root)}


def submit_argv(ckpt: Path, frames: tuple[Path, Path]) -> dict[str, str]:
    return {"--task": "flf2v-tiny", "--ckpt_dir": str(ckpt), "--first_frame": str(frames[0]),
            "--last_frame": str(frames[1]), "--prompt": "a bird takes off"}  # fmt: skip


# name: (flag changes, {HOME} and {hostile names} filled in; what the one line says)
SUBMIT_CASES = {
    "steps beyond 64 bits": ({"--sample_steps": BIG}, r"sample_steps.*must be at most 1000"),
    "seed beyond 64 bits": ({"--base_seed": BIG}, r"base_seed.*must be at most 9223372036854775807"),
    "priority beyond 64 bits": ({"--priority": BIG}, r"priority.*must be at most 1000000000"),
    "a seed of a sweep beyond 64 bits": ({"--seeds": f"1,{BIG}"}, r"--seeds .* must be at most 9223372036854775807"),
    "a seed range beyond 64 bits": ({"--seed-range": f"1..{BIG}"}, r"--seed-range .* must be at most"),
    "a sweep of a trillion": ({"--seed-range": "0..1000000000000"}, r"more than the 10000 allowed"),
    "NaN back-off": ({"--retry-backoff": "nan"}, r"retry-backoff.*nan must be a finite number"),
    "infinite back-off": ({"--retry-backoff": "inf"}, r"retry-backoff.*inf must be a finite number"),
    "NaN shift": ({"--sample_shift": "nan"}, r"sample_shift.*finite"),
    "retries beyond 64 bits": ({"--retries": BIG}, r"retries.*must be at most 100"),
    "a dependency beyond 64 bits": ({"--after": BIG}, r"is not a job id: ids fit in 64 bits"),
    "prompt not UTF-8": ({"--prompt": os.fsdecode(b"a \xff bird")}, r"--prompt is not valid UTF-8 \(byte 0xff"),
    "negative prompt not UTF-8": ({"--neg_prompt": os.fsdecode(b"\xfe")}, r"--neg_prompt is not valid UTF-8"),
    "frame path not UTF-8": ({"--first_frame": "{frame}"}, r"--first_frame is not valid UTF-8 .*rename"),
    "4000000001 frames": ({"--frame_num": "4000000001"}, r"frame_num.*must be at most 2001"),
    "a billion steps": ({"--sample_steps": "1000000000"}, r"sample_steps.*must be at most 1000"),
    "a thousand GPUs on a box of two": ({"--gpus": "1000"}, r"--gpus 1000: this machine has 2 GPUs.*--gpus 2 or less"),
    "truncated safetensors": ({"--ckpt_dir": "{cut}"}, r"safetensors \(truncated: .* 256 bytes .* holds 100"),
    "save_file in the jobs folder": ({"--save_file": "{HOME}/jobs/1/x.mp4"}, r"inside FLF2V_HOME's own folders"),
    "save_file beside the database": ({"--save_file": "{HOME}/x.mp4"}, r"inside FLF2V_HOME's own folders"),
    "save_file reaching home by ..": ({"--save_file": "{out}/../home/jobs/x.mp4"}, r"inside FLF2V_HOME"),
    "save_file through a link": ({"--save_file": "{root}/to-jobs/x.mp4"}, r"inside FLF2V_HOME's own folders"),
    "save_file not an mp4": ({"--save_file": "{out}/v.avi"}, r"must end in \.mp4"),
    "save_file a folder": ({"--save_file": "{out}"}, r"is a folder; give a file name in it"),
}


@pytest.mark.parametrize("case", list(SUBMIT_CASES))
def test_hostile_submit_is_one_line_and_queues_nothing(case, tmp_path, stub_ckpt, qframes, hostile):
    change, message = SUBMIT_CASES[case]
    home = Path(hostile["root"]) / "home"  # {out}/../home is this home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    link = Path(hostile["root"]) / "to-jobs"
    link.unlink(missing_ok=True)
    link.symlink_to(home / "jobs")
    values = {**submit_argv(stub_ckpt, qframes), **change}
    argv = ["submit"]
    for flag, value in values.items():
        argv += [flag, value.replace("{HOME}", str(home)).format(**hostile)]
    assert_one_line(run_cli(argv, home, FLF2V_FAKE_GPUS=hostile["two_gpus"]), message)
    assert count_jobs(home) == 0
    assert not (home / "jobs").exists() or not list((home / "jobs").iterdir())


def test_what_the_checks_allow_is_queued(qhome, stub_ckpt, qframes, tmp_path):
    """The edges themselves are fine: the largest seed, 1000 steps, 2001 frames, two GPUs of two, an mp4 in
    the home's videos/ and a relative name that resolves outside the home."""
    values = {**submit_argv(stub_ckpt, qframes), "--base_seed": str(2**63 - 1), "--sample_steps": "1000",
              "--frame_num": "2001", "--gpus": "2", "--priority": "-1000000000", "--retry-backoff": "3600",
              "--save_file": str(qhome / "videos" / "mine.MP4")}  # fmt: skip
    argv = ["-m", "flf2v_tui.cli", "submit", "-q", *(x for kv in values.items() for x in kv)]
    fake = tmp_path / "gpus.json"
    fake.write_text(json.dumps([{"index": i, "name": "G", "uuid": f"G{i}", "memory_total": 1, "memory_used": 0}
                                for i in range(2)]))  # fmt: skip
    proc = run(argv, qhome, FLF2V_FAKE_GPUS=str(fake))
    assert proc.returncode == 0, proc.stderr.decode()
    row = job_row(qhome, int(proc.stdout))
    assert (row["base_seed"], row["sample_steps"], row["frame_num"], row["gpus"]) == (2**63 - 1, 1000, 2001, 2)
    relative = run([*argv[:-2], "--save_file", "out/../v.mp4", "--other-worker", "--gpus", "64"], qhome)
    assert relative.returncode == 0, relative.stderr.decode()
    assert job_row(qhome, int(relative.stdout))["save_file"] == str(REPO / "v.mp4")


def test_retry_and_rerun_refuse_the_same(qhome, stub_ckpt, qframes, hostile):
    code, job_id, err = run_cli(
        ["submit", "-q", *(x for kv in submit_argv(stub_ckpt, qframes).items() for x in kv)], qhome
    )
    assert code == 0, err
    job_id = job_id.strip()
    assert run_cli(["cancel", job_id], qhome)[0] == 0
    retry = ["retry", job_id]
    two_gpus = {"FLF2V_FAKE_GPUS": hostile["two_gpus"]}
    assert_one_line(run_cli([*retry, "--priority", BIG], qhome), r"priority.*must be at most")
    assert_one_line(run_cli([*retry, "--gpus", "3"], qhome, **two_gpus), r"this machine has 2 GPUs")
    assert_one_line(run_cli([*retry, "--base_seed", BIG], qhome), r"base_seed.*at most")
    assert_one_line(run_cli([*retry, "--prompt", os.fsdecode(b"\xff")], qhome), r"--prompt is not valid")
    assert_one_line(run_cli([*retry, "--save_file", str(qhome / "x.mp4")], qhome), r"own folders")
    assert job_row(qhome, int(job_id))["state"] == "cancelled"  # nothing was queued again
    assert_one_line(run_cli(["videos", "rerun", "1", "--priority", BIG], qhome), r"priority.*must be at most")
    assert_one_line(run_cli(["videos", "rerun", "1", "--sample_steps", BIG], qhome), r"sample_steps.*at most")


@pytest.mark.parametrize(
    "argv",
    [["show", BIG], ["cancel", BIG], ["hold", f"1..{BIG}"], ["retry", BIG], ["logs", BIG], ["top", BIG],
     ["rm", "1..1000000000000"], ["videos", "show", BIG], ["videos", "rate", BIG, "3"], ["videos", "rerun", BIG],
     ["wait", BIG, "--timeout", "1"], ["wait", "1", "--timeout", "nan"], ["cancel", "1", "--kill-grace", "nan"]],
    ids=" ".join,
)  # fmt: skip
def test_ids_beyond_64_bits_and_nan_are_one_line_in_every_command(argv, qhome):
    pattern = r"beyond 64 bits|fit in 64 bits|more than the 1000000 allowed|nan is not a number"
    assert_one_line(run_cli(argv, qhome), pattern)


def test_real_argv_bytes_never_reach_a_traceback(qhome, stub_ckpt, qframes):
    """Raw bytes straight into argv, as a shell passes $'\\xff': each is refused in one line, naming the flag."""
    base = [b"-m", b"flf2v_tui.cli", b"submit", *(os.fsencode(x) for kv in submit_argv(stub_ckpt, qframes).items()
                                                  for x in kv)]  # fmt: skip
    for flag, value in [(b"--prompt", b"\xff\xfe"), (b"--neg_prompt", b"caf\xe9"), (b"--label", b"\x80"),
                        (b"--size", b"64\xff64"), (b"--task", b"\xc3"), (b"--last_frame", b"/tmp/\xff.png"),
                        (b"--ckpt_dir", b"/\xed\xa0\x80")]:  # fmt: skip
        err = assert_one_line(run([*base, flag, value], qhome), flag.decode().lstrip("-").replace("_", "[_-]"))
        assert "not valid UTF-8" in err or "unknown task" in err, err
    assert count_jobs(qhome) == 0


ENGINE_CASES = {
    "seed beyond 64 bits": (["--base_seed", BIG], r"--base_seed .* must be at most 9223372036854775807"),
    "save_file a folder": (["--save_file", "{out}"], r"--save_file .* is a folder"),
    "truncated safetensors": (["--ckpt_dir", "{cut}"], r"truncated: its header describes 256 bytes"),
    "prompt not UTF-8": (["--prompt", os.fsdecode(b"\xff")], r"--prompt is not valid UTF-8"),
    "NaN guide scale": (["--sample_guide_scale", "nan"], r"sample_guide_scale nan must be a finite number"),
}


@pytest.mark.parametrize("case", list(ENGINE_CASES))
def test_engine_run_by_hand_refuses_in_one_line(case, stub_ckpt, qframes, hostile):
    change, message = ENGINE_CASES[case]
    argv = ["-m", "engine.generate", "--device", "cpu", *(x for kv in submit_argv(stub_ckpt, qframes).items()
                                                         for x in kv)]  # fmt: skip
    assert_one_line(run([*argv, *(a.format(**hostile) for a in change)]), message)


def test_bad_input_found_at_load_has_no_traceback(tiny_ckpt, qframes, tmp_path):
    """A weight file whose header passes the cheap check but that safetensors refuses (an unknown dtype): the
    engine finds it while loading, says so in one line, exits 2, and records no traceback in its event."""
    ckpt = Path(shutil.copytree(tiny_ckpt, tmp_path / "ckpt"))
    weights = ckpt / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["dtype"] = "Q9"
    packed = json.dumps(header, separators=(",", ":")).encode()
    weights.write_bytes(data[:8] + packed.ljust(length) + data[8 + length :])
    events = tmp_path / "events.jsonl"
    argv = ["-m", "engine.generate", "--device", "cpu", "--frame_num", "5", "--sample_steps", "1",
            "--events", str(events), "--save_file", str(tmp_path / "v.mp4"),
            *(x for kv in submit_argv(ckpt, qframes).items() for x in kv)]  # fmt: skip
    assert_one_line(run(argv), r"diffusion_pytorch_model.safetensors is corrupt or unreadable")
    error = json.loads(events.read_text().splitlines()[-1])
    assert (error["kind"], error["class"], error["traceback"]) == ("error", "user_input", "")
    assert not (tmp_path / "v.mp4").exists()
