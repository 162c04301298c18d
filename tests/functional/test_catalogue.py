"""The catalogue as a user meets it: a real render through the queue becomes a row with its recipe, thumbnails,
sidecar and embedded metadata; then search, rate, tag, verify and re-run through the real CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.recipe import read_recipe
from engine.tasks import FLF2V_NEG_PROMPT
from engine.telemetry import read_events
from storage.catalogue import get_video
from storage.db import connect
from storage.spec import ENGINE_FLAGS
from tests.functional.queue_helpers import SCRIPTED, flf2v, job_row, start_worker, stop, wait_for

PROMPT = "a small blue bird takes off over the sea"
IN_MP4_ONLY = ("first_frame", "last_frame", "first_frame_src", "last_frame_src")

pytestmark = pytest.mark.slow


def submit(home: Path, *args: str, engine: str | None = None) -> list[int]:
    proc = flf2v(home, "submit", *args, "-q", engine=engine)
    assert proc.returncode == 0, proc.stderr
    return [int(x) for x in proc.stdout.split()]


def video_of(home: Path, job_id: int) -> dict:
    conn = connect(home / "flf2v.db")
    try:
        row = conn.execute("SELECT id FROM videos WHERE job_id = ?", (job_id,)).fetchone()
        assert row is not None, f"job {job_id} has no catalogue row"
        return get_video(conn, row[0]) or {}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, tiny_official_ckpt, qframes) -> dict:
    """One real 2-rank render of the tiny model through the queue, catalogued by the worker."""
    home = tmp_path_factory.mktemp("catalogue-home")
    (job,) = submit(home, "--task", "flf2v-tiny", "--ckpt_dir", str(tiny_official_ckpt), "--first_frame",
                    str(qframes[0]), "--last_frame", str(qframes[1]), "--prompt", PROMPT, "--gpus", "2",
                    "--base_seed", "42", "--size", "64*64", "--frame_num", "9", "--sample_steps", "4",
                    "--preview_every", "2", "--label", "bird")  # fmt: skip
    run = flf2v(home, "worker", "--once", timeout=300)
    assert run.returncode == 0 and job_row(home, job)["state"] == "succeeded", run.stdout + run.stderr
    assert "catalogued as video" in run.stdout
    return {"home": home, "job": job, "video": video_of(home, job), "ckpt": tiny_official_ckpt}


def test_a_finished_job_is_catalogued_with_its_full_recipe(rendered):
    video, job = rendered["video"], job_row(rendered["home"], rendered["job"])
    path = Path(video["path"])
    assert path == Path(job["output_path"]) and path.is_file()
    assert video["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert video["size_bytes"] == path.stat().st_size
    assert (video["frames"], video["fps"], video["width"], video["height"]) == (9, 16.0, 64, 64)
    assert video["duration"] == pytest.approx(9 / 16)
    recipe = video["recipe"]
    expected = {
        "prompt": PROMPT, "neg_prompt": FLF2V_NEG_PROMPT, "base_seed": 42, "sample_steps": 4,
        "sample_shift": job["sample_shift"], "sample_guide_scale": job["sample_guide_scale"],
        "sample_solver": "unipc", "task": "flf2v-tiny", "size": "64*64", "frame_num": 9,
        "ckpt_dir": str(Path(rendered["ckpt"]).resolve()), "world_size": 2, "ulysses_size": 1,
        "t5_fsdp": False, "dit_fsdp": False,
    }  # fmt: skip
    assert {k: recipe[k] for k in expected} == expected
    assert len(recipe["ckpt_fingerprint"]) == 16 and recipe["engine_version"]
    assert (video["seed"], video["prompt"], video["world_size"]) == (42, PROMPT, 2)
    assert {"load_transformer", "denoise", "decode", "save"} <= set(video["stage_seconds"])
    assert video["total_seconds"] > 0 and set(video["peak_memory"]) == {"0", "1"}
    assert video["job_id"] == rendered["job"] and video["attempt_id"] == job["current_attempt_id"]
    assert video["tags"] == ["bird"] and video["rating"] is None and video["favourite"] is False


def test_thumbnails_inputs_sidecar_and_embedded_metadata(rendered):
    video, job = rendered["video"], job_row(rendered["home"], rendered["job"])
    files = video["files"]
    for name in ("first", "middle", "last", "sheet"):
        with Image.open(files[name]) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            sizes = image.size
    assert sizes == (4 * 240, 2 * 240)  # 8 frames of a square video, 4 to a row
    for role in ("first_frame", "last_frame"):
        assert Path(files[role]).read_bytes() == Path(job[role]).read_bytes()
        assert video["recipe"][role] == files[role]
    sidecar = json.loads(Path(files["sidecar"]).read_text())
    assert sidecar == video
    embedded = read_recipe(video["path"])
    assert embedded == {k: v for k, v in video["recipe"].items() if k not in IN_MP4_ONLY}


def test_queued_jobs_write_latent_previews(rendered):
    (folder,) = (Path(rendered["home"]) / "jobs" / str(rendered["job"])).glob("attempt-*")
    previews = [e for e in read_events(folder / "events.jsonl") if e["kind"] == "preview"]
    # The first due preview is always made; later ones only within the 2 % budget (tests/unit/test_preview.py),
    # which a tiny model's millisecond steps leave little room in.
    assert previews[0]["step"] == 2 and {e["step"] for e in previews} <= {2, 4}
    assert all(Path(e["path"]).is_file() and Path(e["path"]).parent == folder / "previews" for e in previews)


def test_rerun_with_a_new_seed_keeps_the_rest_of_the_recipe(rendered):
    home, video = rendered["home"], rendered["video"]
    proc = flf2v(home, "videos", "rerun", str(video["id"]), "--base_seed", "7", "--hold")
    assert proc.returncode == 0, proc.stderr
    new = job_row(home, int(proc.stdout.split("queued job ")[1].split()[0]))
    recipe = video["recipe"]
    assert new["base_seed"] == 7 and new["gpus"] == recipe["world_size"]
    same = [f for f in ENGINE_FLAGS if f in recipe and f not in ("base_seed", "first_frame", "last_frame")]
    assert len(same) > 12
    differ = {f: (new[f], recipe[f]) for f in same if f != "neg_prompt" and new[f] != recipe[f]}
    assert differ == {}
    assert new["neg_prompt"] is None  # the official default, as for any submitted job
    for role in ("first_frame", "last_frame"):
        assert Path(new[role]).read_bytes() == Path(recipe[role]).read_bytes()
    assert flf2v(home, "rm", str(new["id"])).returncode == 0


def test_search_rate_tag_fav_and_notes_through_the_cli(rendered):
    home, vid = rendered["home"], str(rendered["video"]["id"])

    def found(*args: str) -> list[int]:
        proc = flf2v(home, "videos", "ls", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [v["id"] for v in json.loads(proc.stdout)]

    assert found("blue") == [int(vid)] and found("blu") == [int(vid)]  # words and prefixes
    assert found("giraffe") == []
    assert flf2v(home, "videos", "tag", vid, "keeper", "sunrise").returncode == 0
    assert found("keeper") == [int(vid)] and found("--tag", "sunrise") == [int(vid)]
    assert flf2v(home, "videos", "tag", vid, "sunrise", "--remove").returncode == 0
    assert found("sunrise") == []
    assert flf2v(home, "videos", "rate", vid, "4").returncode == 0
    assert found("--rating", "4") == [int(vid)] and found("--rating", "5") == []
    assert flf2v(home, "videos", "rate", vid, "6").returncode == 2
    assert flf2v(home, "videos", "fav", vid).returncode == 0 and found("--fav") == [int(vid)]
    assert flf2v(home, "videos", "note", vid, "wings look best midway").returncode == 0
    assert found("midway") == [int(vid)]
    assert found("--since", "1d", "--task", "flf2v-tiny") == [int(vid)] and found("--until", "2000-01-01") == []
    shown = flf2v(home, "videos", "show", vid)
    assert "★★★★☆" in shown.stdout and "keeper" in shown.stdout and "wings look best" in shown.stdout
    assert flf2v(home, "videos", "open", vid, "--print").stdout.strip() == rendered["video"]["path"]
    current = video_of(home, rendered["job"])
    assert json.loads(Path(current["files"]["sidecar"]).read_text()) == current  # the sidecar follows edits


def test_verify_finds_missing_changed_and_unknown_files(qhome, stub_ckpt, qframes):
    ids = submit(qhome, "--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--first_frame", str(qframes[0]),
                 "--last_frame", str(qframes[1]), "--prompt", "script: steps=1 step_s=0.01", "--seeds", "1,2,3",
                 engine=SCRIPTED)  # fmt: skip
    run = flf2v(qhome, "worker", "--once", engine=SCRIPTED, timeout=180)
    assert run.returncode == 0, run.stdout
    gone, changed, fine = (video_of(qhome, i) for i in ids)
    assert flf2v(qhome, "videos", "verify").returncode == 0
    Path(gone["path"]).unlink()
    with open(changed["path"], "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02\x03")  # same size, other bytes: only the hash can tell
    stray = qhome / "videos" / "someone-elses.mp4"
    shutil.copyfile(fine["path"], stray)
    proc = flf2v(qhome, "videos", "verify", "--json")
    assert proc.returncode == 1
    findings = {(f["kind"], f["video_id"], Path(f["path"]).name) for f in json.loads(proc.stdout)}
    assert findings == {
        ("missing", gone["id"], Path(gone["path"]).name),
        ("changed", changed["id"], Path(changed["path"]).name),
        ("unknown", None, stray.name),
    }
    text = flf2v(qhome, "videos", "verify").stdout
    assert "3 video(s) checked, 3 problem(s)" in text
    removed = flf2v(qhome, "videos", "rm", str(changed["id"]))
    assert removed.returncode == 0 and not Path(changed["path"]).exists()
    assert not Path(changed["files"]["sidecar"]).exists() and not Path(changed["files"]["sheet"]).exists()


def test_ratings_and_tags_survive_a_worker_restart(qhome, stub_ckpt, qframes):
    common = ("--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--first_frame", str(qframes[0]),
              "--last_frame", str(qframes[1]))  # fmt: skip
    (first,) = submit(qhome, *common, "--prompt", "script: steps=1 step_s=0.01", engine=SCRIPTED)
    assert flf2v(qhome, "worker", "--once", engine=SCRIPTED, timeout=120).returncode == 0
    vid = str(video_of(qhome, first)["id"])
    for args in (("rate", vid, "5"), ("tag", vid, "keeper"), ("fav", vid), ("note", vid, "the good one")):
        assert flf2v(qhome, "videos", *args).returncode == 0
    (second,) = submit(qhome, *common, "--prompt", "script: steps=40 step_s=0.1", engine=SCRIPTED)
    worker = start_worker(qhome, "--cpu-slots", "1", engine=SCRIPTED)
    wait_for(lambda: job_row(qhome, second)["state"] == "running", what="the second job to start")
    time.sleep(0.5)
    stop(worker, signal.SIGKILL)
    again = flf2v(qhome, "worker", "--once", engine=SCRIPTED, timeout=120)
    assert again.returncode == 0 and "re-attached" in again.stdout, again.stdout
    assert job_row(qhome, second)["state"] == "succeeded"
    video_of(qhome, second)  # the re-attached render is catalogued too
    kept = video_of(qhome, first)
    assert (kept["rating"], kept["tags"], kept["favourite"], kept["notes"]) == (5, ["keeper"], True, "the good one")
    listed = json.loads(flf2v(qhome, "videos", "ls", "keeper", "--json").stdout)
    assert [v["id"] for v in listed] == [int(vid)]
