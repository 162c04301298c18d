"""The catalogue's pieces: search over a real SQLite file, the video check, thumbnails and the re-run values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.errors import BadInputError
from engine.mp4 import write_mp4
from engine.tasks import FLF2V_NEG_PROMPT
from flf2v_tui.catalogue.media import VideoCheckError, check_video, make_thumbnails, sheet_indices
from flf2v_tui.catalogue.rerun import recipe_values
from flf2v_tui.commands.videos import parse_when
from flf2v_tui.screen_data.catalogue_view import next_sort, prefill_from_video, read_videos, recipe_rows, row_cells
from storage.catalogue import VideoFilter, add_video, fts_query, get_video, search, update_user_fields


def row(n: int, **extra: object) -> dict:
    values = {
        "path": f"/videos/{n}.mp4", "size_bytes": 10, "sha256": "ab", "width": 64, "height": 48, "frames": 9,
        "fps": 16.0, "duration": 0.5625, "task": "flf2v-tiny", "size": "64*64", "prompt": f"prompt {n}",
        "seed": n, "sample_steps": 4, "sample_shift": 16.0, "sample_guide_scale": 5.0, "sample_solver": "unipc",
        "ckpt_dir": "/c", "recipe": {"base_seed": n}, "created_at": 1000.0 + n,
    }  # fmt: skip
    values.update(extra)
    return values


def ids(videos: list[dict]) -> list[int]:
    return [v["id"] for v in videos]


def test_search_by_words_tags_notes_and_filters(conn):
    a = add_video(conn, row(1, prompt="a blue bird over the sea", tags=["keeper"], rating=5))
    b = add_video(conn, row(2, prompt="a red fox in the snow", task="flf2v-14B", favourite=1))
    c = add_video(conn, row(3, prompt="the blue hour", notes="too dark"))
    assert ids(search(conn, VideoFilter())) == [c, b, a]  # newest first
    assert ids(search(conn, VideoFilter(text="blue"))) == [c, a]
    assert ids(search(conn, VideoFilter(text="blue bird"))) == [a]  # every word must match
    assert ids(search(conn, VideoFilter(text="kee"))) == [a]  # tags, by prefix
    assert ids(search(conn, VideoFilter(text="dark"))) == [c]  # notes
    assert ids(search(conn, VideoFilter(tag="keeper"))) == [a] and search(conn, VideoFilter(tag="kee")) == []
    assert ids(search(conn, VideoFilter(min_rating=4))) == [a]
    assert ids(search(conn, VideoFilter(favourite=True))) == [b]
    assert ids(search(conn, VideoFilter(task="flf2v-14B"))) == [b]
    assert ids(search(conn, VideoFilter(since=1001.5, until=1002.5))) == [b]
    assert ids(search(conn, VideoFilter(sort="rating"))) == [a, c, b]
    assert ids(search(conn, VideoFilter(sort="old", limit=2))) == [a, b]
    with pytest.raises(BadInputError, match="unknown sort"):
        search(conn, VideoFilter(sort="size"))


def test_search_text_cannot_inject_fts_syntax(conn):
    add_video(conn, row(1, prompt='a "quoted" bird NEAR the sea'))
    for text in ("bird OR", '"unbalanced', "NEAR(", "prompt:sea", "*", "-bird", "a AND NOT"):
        search(conn, VideoFilter(text=text))  # never an FTS syntax error
    assert fts_query('blue "bird') == '"blue"* "bird"*'


def test_user_fields_are_checked_and_edits_reindex(conn):
    vid = add_video(conn, row(1, prompt="a bird"))
    update_user_fields(conn, vid, tags=["sunrise"], notes="keep", rating=3, favourite=True)
    video = get_video(conn, vid)
    assert (video["tags"], video["notes"], video["rating"], video["favourite"]) == (["sunrise"], "keep", 3, True)
    assert ids(search(conn, VideoFilter(text="sunrise"))) == [vid]
    update_user_fields(conn, vid, tags=[])
    assert search(conn, VideoFilter(text="sunrise")) == []
    with pytest.raises(BadInputError, match="from 1 to 5"):
        update_user_fields(conn, vid, rating=6)
    with pytest.raises(BadInputError, match="no video 99"):
        update_user_fields(conn, 99, rating=2)


def test_cataloguing_the_same_file_again_keeps_the_user_fields(conn):
    vid = add_video(conn, row(1))
    update_user_fields(conn, vid, rating=5, tags=["keeper"])
    assert add_video(conn, row(1, prompt="re-catalogued")) == vid
    video = get_video(conn, vid)
    assert (video["rating"], video["tags"], video["prompt"]) == (5, ["keeper"], "prompt 1")


def test_check_video_compares_with_what_the_engine_reported(tmp_path):
    path = write_mp4(np.zeros((9, 32, 48, 3), np.uint8), tmp_path / "v.mp4", fps=16)
    info = check_video(path, {"frames": 9, "fps": 16, "width": 48, "height": 32})
    assert (info.frames, info.width, info.height, info.fps) == (9, 48, 32, 16.0)
    with pytest.raises(VideoCheckError, match="8 frames, not 9"):
        check_video(write_mp4(np.zeros((8, 32, 48, 3), np.uint8), tmp_path / "w.mp4", fps=16), {"frames": 9})
    with pytest.raises(VideoCheckError, match="width 48, not 64"):
        check_video(path, {"width": 64})
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoCheckError, match="does not open"):
        check_video(tmp_path / "junk.mp4", {})
    with pytest.raises(VideoCheckError, match="does not exist"):
        check_video(tmp_path / "none.mp4", {})


def test_thumbnails_pick_first_middle_last_and_an_even_sheet(tmp_path):
    frames = np.stack([np.full((32, 48, 3), 20 * i, np.uint8) for i in range(9)])
    path = write_mp4(frames, tmp_path / "v.mp4", fps=16)
    files = make_thumbnails(path, check_video(path, {}), tmp_path / "thumbs")
    assert set(files) == {"first", "middle", "last", "sheet"}
    means = [np.asarray(Image.open(files[k])).mean() for k in ("first", "middle", "last")]
    assert means[0] < 10 and 70 < means[1] < 90 and means[2] > 150  # frames 0, 4 and 8
    assert Image.open(files["sheet"]).size == (4 * 240, 2 * 160)
    assert sheet_indices(81) == [0, 11, 23, 34, 46, 57, 69, 80] and sheet_indices(3) == [0, 1, 2]
    one = write_mp4(frames[:1], tmp_path / "one.mp4", fps=16)
    assert set(make_thumbnails(one, check_video(one, {}), tmp_path / "one")) == {"first", "middle", "last", "sheet"}


def test_recipe_values_use_the_kept_frames_and_the_default_negative_prompt(tmp_path):
    first, last = tmp_path / "f.png", tmp_path / "l.png"
    first.write_bytes(b"x")
    last.write_bytes(b"y")
    recipe = {
        "task": "flf2v-tiny",
        "prompt": "p",
        "neg_prompt": FLF2V_NEG_PROMPT,
        "base_seed": 3,
        "first_frame": str(first),
        "last_frame": str(tmp_path / "gone.png"),
        "last_frame_src": str(last),
    }
    values = recipe_values({"id": 1, "recipe": recipe})
    assert values["neg_prompt"] is None and values["base_seed"] == 3
    assert (values["first_frame"], values["last_frame"]) == (str(first), str(last))
    last.unlink()
    with pytest.raises(BadInputError, match="--last_frame PATH"):
        recipe_values({"id": 1, "recipe": recipe})


def test_dates_for_since_and_until():
    assert parse_when("2026-11-24", "--since") < parse_when("2026-11-24 18:00", "--since")
    assert parse_when("yesterday", "--since") < parse_when("today", "--since")
    assert parse_when(None, "--since") is None
    with pytest.raises(BadInputError, match="12h"):
        parse_when("last tuesday", "--since")


def test_the_catalogue_screen_data(conn, tmp_path):
    first = tmp_path / "first.png"
    Image.new("RGB", (8, 8)).save(first)
    recipe = {"task": "flf2v-tiny", "prompt": "a bird", "neg_prompt": "blurry", "base_seed": 9, "size": "64*48",
              "frame_num": 9, "sample_steps": 20, "sample_shift": 16.0, "sample_guide_scale": 5.0,
              "sample_solver": "dpm++", "ckpt_dir": "/c", "world_size": 4, "ulysses_size": 4, "dit_fsdp": True,
              "t5_fsdp": False, "t5_cpu": False, "offload_model": False, "first_frame": "/gone/first.png",
              "first_frame_src": str(first), "last_frame": "/gone/last.png",
              "last_frame_src": "/gone/too.png"}  # fmt: skip
    vid = add_video(conn, row(1, prompt="a bird", recipe=recipe, tags=["keeper"], rating=4, favourite=1))
    (video,) = read_videos(conn, "bird", "rating")
    assert video["id"] == vid and read_videos(conn, "fish", "new") == []
    cells = row_cells(video)
    assert cells[:4] == (str(vid), "★★★★☆", "♥", "a bird") and cells[-1] == "1"
    rows = dict(recipe_rows(video))
    assert rows["layout"] == "4 rank(s), ulysses 4, dit_fsdp" and rows["negative"] == "blurry"
    fast = {**recipe, "world_size": 8, "cfg_size": 2, "attn": "cudnn", "compile": True}
    assert dict(recipe_rows({**video, "recipe": fast}))["layout"] == (
        "8 rank(s), ulysses 4, cfg 2, attention cudnn, dit_fsdp, compile")  # fmt: skip
    assert rows["tags"] == "keeper" and rows["seed"] == "1"
    prefill = prefill_from_video(video)
    assert (prefill["seeds"], prefill["gpus"], prefill["ulysses_size"], prefill["dit_fsdp"]) == ("9", "4", "4", "1")
    assert (prefill["sample_solver"], prefill["offload_model"], prefill["labels"]) == ("dpm++", "False", "keeper")
    # The original first frame still exists and is used; the last frame is gone from both places and stays
    # visible in its field, for the form to flag.
    assert prefill["first_frame"] == str(first) and prefill["last_frame"] == "/gone/last.png"
    assert [next_sort(s) for s in ("new", "rating", "old", "prompt", "bogus")] == ["rating", "old", "prompt", "new",
                                                                                  "new"]  # fmt: skip
