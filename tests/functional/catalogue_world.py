"""Catalogued videos for the TUI's tests: real mp4s with embedded recipes, catalogued by the worker's own code
(check, thumbnails, input copies, row, sidecar), at fixed times."""

from __future__ import annotations

import numpy as np

from engine.mp4 import write_mp4
from engine.recipe import build_recipe, recipe_comment
from flf2v_tui.catalogue.record import catalogue, prepare_row
from storage.db import connect
from tests.functional.tui_world import NOW, World

VIDEOS = (
    # prompt, seed, labels, rating, favourite
    ("a heron lands on a misty lake at dawn", 11, ["lake"], 5, True),
    ("a small blue bird takes off from a branch", 42, ["bird", "keeper"], 3, False),
    ("a paper boat drifts down a gutter in rain", 7, [], None, False),
)


def gradient_frames(count: int, height: int, width: int, hue: int) -> np.ndarray:
    """Frames that visibly change: a bar moving left to right over a coloured ground."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = hue, 90, 200 - hue
    for i in range(count):
        x = i * (width - 8) // max(1, count - 1)
        frames[i, :, x : x + 8] = 255
    return frames


def add_videos(world: World) -> list[int]:
    """Three catalogued videos, the newest last; returns their ids in that order."""
    conn = connect(world.home.db)
    ids = []
    for n, (prompt, seed, labels, rating, favourite) in enumerate(VIDEOS):
        args = {"task": "flf2v-tiny", "size": "64*48", "frame_num": 9, "prompt": prompt, "neg_prompt": "blurry",
                "sample_solver": "unipc", "sample_steps": 20, "sample_shift": 16.0, "sample_guide_scale": 5.0,
                "ckpt_dir": str(world.ckpt), "offload_model": False, "t5_fsdp": True, "dit_fsdp": True,
                "t5_cpu": False, "ulysses_size": 2, "ring_size": 1, "cfg_batch": True}  # fmt: skip
        recipe = build_recipe(args, seed, 2, "test", "0123456789abcdef")
        path = world.home.videos / f"video-{n}.mp4"
        write_mp4(gradient_frames(9, 48, 64, 60 * n), path, 16, metadata={"comment": recipe_comment(recipe)})
        first, last = (str(p) for p in world.frames)
        job = {"id": world.ids["succeeded"], "first_frame": first, "last_frame": last, "first_frame_src": first,
               "last_frame_src": last, "labels": labels}  # fmt: skip
        done = {"output": str(path), "frames": 9, "fps": 16, "width": 64, "height": 48, "seconds": 95.5 + n,
                "recipe": recipe}  # fmt: skip
        row = prepare_row(job, None, done, {"denoise": 80.0, "decode": 5.0}, {"0": 3 << 30, "1": 3 << 30}, 2)
        row.update(created_at=NOW - 3000 + n * 600, rating=rating, favourite=int(favourite))
        ids.append(catalogue(conn, row)["id"])
    conn.close()
    return ids


def add_psnr(world: World, ids: list[int]) -> None:
    """The PSNR the engine measured for the two newer videos (the middle one's last frame drifted: low)."""
    conn = connect(world.home.db)
    for video_id, first, last in ((ids[1], 31.46, 17.94), (ids[2], 29.03, 27.5)):
        conn.execute("UPDATE videos SET psnr_first = ?, psnr_last = ? WHERE id = ?", (first, last, video_id))
    conn.commit()
    conn.close()
