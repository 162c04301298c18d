"""The catalogue screen through Pilot on a real queue with real catalogued mp4s: the list, search, the recipe
of the selection, rating and tags from the keyboard, playing in the terminal, and re-run as a prefilled form."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from textual.widgets import Checkbox, DataTable, Input, TextArea

from flf2v_tui.tui.screens import videos as videos_screen
from flf2v_tui.tui.screens.dashboard import DashboardScreen
from flf2v_tui.tui.screens.player import PlayerScreen
from flf2v_tui.tui.screens.submit import SubmitScreen
from flf2v_tui.tui.screens.videos import VideosScreen
from flf2v_tui.tui.widgets.jobtable import JobTable
from flf2v_tui.tui.widgets.videogrid import VideoGrid, VideoTile
from storage.catalogue import get_video
from storage.db import connect
from tests.functional.catalogue_world import add_psnr, add_videos
from tests.functional.tui_world import STATES, screen_text, settle

SIZE = (150, 45)


def _listed(app) -> list[int]:
    table = app.screen.query_one("#videos", DataTable)
    return [int(table.coordinate_to_cell_key((r, 0)).row_key.value) for r in range(table.row_count)]


def _video(world, video_id: int) -> dict:
    conn = connect(world.home.db)
    try:
        return get_video(conn, video_id) or {}
    finally:
        conn.close()


async def _open_videos(app, pilot, count: int) -> VideosScreen:
    await settle(pilot, lambda: app.screen.query_one(JobTable).row_count == len(STATES), what="the jobs")
    await pilot.press("v")
    await settle(pilot, lambda: isinstance(app.screen, VideosScreen) and len(_listed(app)) == count,
                 what="the videos")  # fmt: skip
    return app.screen


def test_list_search_selection_rating_and_tags(world, make_app):
    ids = add_videos(world)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_videos(app, pilot, 3)
            assert _listed(app) == ids[::-1]  # newest first
            text = screen_text(app)
            assert "3 video(s) · newest first" in text and "a paper boat drifts" in text
            # The selection's recipe is beside the list.
            await pilot.press("down")
            await settle(pilot, lambda: "seed        42" in screen_text(app), what="the selected recipe")
            text = screen_text(app)
            assert "a small blue bird takes off" in text and "2 rank(s), ulysses 2, dit_fsdp, t5_fsdp" in text
            # Search by a prompt word, then by a tag; esc clears.
            await pilot.press("slash", *"heron", "enter")
            await settle(pilot, lambda: _listed(app) == [ids[0]], what="the search by word")
            await pilot.press("escape")
            await settle(pilot, lambda: len(_listed(app)) == 3, what="the search cleared")
            await pilot.press("slash", *"keep", "enter")
            await settle(pilot, lambda: _listed(app) == [ids[1]], what="the search by tag")
            # Rate, favourite and tag the selection from the keyboard; the sidecar follows.
            await pilot.press("4", "f", "t")
            tags = screen.query_one("#video-tags", Input)
            await settle(pilot, lambda: tags.has_focus, what="the tag box")
            tags.value = "bird, sunrise"
            await pilot.press("enter")
            await settle(pilot, lambda: _video(world, ids[1])["tags"] == ["bird", "sunrise"], what="the tags saved")
            saved = _video(world, ids[1])
            assert (saved["rating"], saved["favourite"]) == (4, True)
            assert json.loads(Path(saved["files"]["sidecar"]).read_text()) == saved
            await pilot.press("escape", "s")  # clear the search, then sort by rating
            await settle(pilot, lambda: _listed(app) == [ids[0], ids[1], ids[2]], what="the sort by rating")
            assert "best rated first" in screen_text(app)
            await pilot.press("escape")
            await settle(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back to the dashboard")

    asyncio.run(scenario())


def test_a_rating_given_just_before_leaving_the_list_is_kept(world, make_app):
    """The save runs in a thread that may start after the screen is left: it must not need the screen then."""
    ids = add_videos(world)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await _open_videos(app, pilot, 3)
            await pilot.press("down")
            await settle(pilot, lambda: "seed        42" in screen_text(app), what="the selected recipe")
            await pilot.press("5", "escape")
            await settle(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back to the dashboard")
            await settle(pilot, lambda: _video(world, ids[1])["rating"] == 5, what="the rating saved")

    asyncio.run(scenario())


def test_play_in_the_terminal_and_rerun_as_a_prefilled_form(world, make_app, monkeypatch):
    ids = add_videos(world)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await _open_videos(app, pilot, 3)
            await pilot.press("enter")  # the newest: the paper boat
            await settle(pilot, lambda: isinstance(app.screen, PlayerScreen) and len(app.screen.frames) == 9,
                         what="the frames decoded")  # fmt: skip
            player = app.screen
            await settle(pilot, lambda: player.index >= 3, what="playback at 16 fps")
            await pilot.press("space")
            paused_at = player.index
            await pilot.pause(0.3)
            assert player.index == paused_at and "paused" in screen_text(app)
            await pilot.press("right")
            assert player.index == (paused_at + 1) % 9
            await pilot.press("escape")
            await settle(pilot, lambda: isinstance(app.screen, VideosScreen), what="the player closed")
            await pilot.press("o")  # no display here: the path is shown instead of a player
            await settle(pilot, lambda: any("no display here" in n.message for n in app.notes_seen),
                         what="the no-display note")  # fmt: skip
            await pilot.press("down", "r")
            await settle(pilot, lambda: isinstance(app.screen, SubmitScreen) and app.screen.query("#form-buttons"),
                         what="the re-run form")  # fmt: skip
            form = app.screen
            bird = _video(world, ids[1])
            assert form.query_one("#prompt", TextArea).text == bird["prompt"]
            assert form.query_one("#seeds", Input).value == "42"
            assert form.query_one("#ulysses_size", Input).value == "2" and form.query_one("#gpus", Input).value == "2"
            assert form.query_one("#dit_fsdp", Checkbox).value and form.query_one("#t5_fsdp", Checkbox).value
            assert form.query_one("#first_frame", Input).value == str(world.frames[0])
            assert form.query_one("#labels", Input).value == "bird,keeper"
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the re-run queued")
            conn = connect(world.home.db)
            job = dict(conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT 1").fetchone())
            conn.close()
            assert (job["prompt"], job["base_seed"], job["ulysses_size"], job["dit_fsdp"], job["gpus"]) == (
                bird["prompt"], 42, 2, 1, 2)  # fmt: skip
            assert job["neg_prompt"] == "blurry" and job["sample_steps"] == 20

    asyncio.run(scenario())


def test_open_in_player_hands_the_terminal_to_the_player_when_there_is_a_display(world, make_app, monkeypatch):
    ids = add_videos(world)
    calls: list[tuple] = []
    monkeypatch.setattr(videos_screen, "player_command", lambda path: ["/usr/bin/mpv", path])
    # The screen's own reference to subprocess, so that nothing else in this process sees the fake.
    monkeypatch.setattr(videos_screen, "subprocess", SimpleNamespace(run=lambda *a, **kw: calls.append(("run", a, kw))))

    @contextlib.contextmanager
    def suspend() -> Iterator[None]:  # Pilot's headless driver cannot suspend; record that the app asked to
        calls.append(("suspend",))
        yield
        calls.append(("resume",))

    def unrunnable(*args: object, **kwargs: object) -> None:
        raise OSError(8, "Exec format error")

    async def scenario():
        app = make_app(world)
        monkeypatch.setattr(app, "suspend", suspend)
        async with app.run_test(size=SIZE) as pilot:
            await _open_videos(app, pilot, 3)
            await pilot.press("down", "o")  # the second newest: the bird
            await settle(pilot, lambda: len(calls) == 3, what="the player run")
            path = _video(world, ids[1])["path"]
            assert calls == [("suspend",), ("run", (["/usr/bin/mpv", path],), {"check": False}), ("resume",)]
            assert isinstance(app.screen, VideosScreen)
            # A player that cannot be run: the app comes back and says so, with the path.
            monkeypatch.setattr(videos_screen.subprocess, "run", unrunnable)
            await pilot.press("o")
            await settle(pilot, lambda: any("could not run /usr/bin/mpv" in n.message and path in n.message
                                            for n in app.notes_seen), what="the failure note")  # fmt: skip
            assert calls[3:] == [("suspend",), ("resume",)]
            # A terminal that cannot be given away (Pilot's own driver, Textual web): the path, no crash.
            monkeypatch.delattr(app, "suspend")
            await pilot.press("o")
            await settle(pilot, lambda: any("cannot be handed to a player" in n.message for n in app.notes_seen),
                         what="the no-suspend note")  # fmt: skip
            assert len(calls) == 5 and isinstance(app.screen, VideosScreen)

    asyncio.run(scenario())


def test_an_empty_catalogue_says_where_videos_come_from(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await _open_videos(app, pilot, 0)
            await settle(pilot, lambda: "finished jobs land here" in screen_text(app), what="the empty note")

    asyncio.run(scenario())


def test_videos_are_in_the_palette(world, make_app):
    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: app.screen.query_one(JobTable).row_count == len(STATES), what="the jobs")
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert "Videos (v)" in titles

    asyncio.run(scenario())


def test_playing_a_video_whose_file_went_says_so(world, make_app):
    ids = add_videos(world)
    Path(_video(world, ids[-1])["path"]).unlink()

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await _open_videos(app, pilot, 3)
            await pilot.press("enter")  # the newest, whose mp4 is gone
            await settle(pilot, lambda: "its file is gone" in screen_text(app), what="the player says so")
            await pilot.press("escape")
            await settle(pilot, lambda: isinstance(app.screen, VideosScreen), what="the player closed")

    asyncio.run(scenario())


def test_the_grid_of_thumbnails_shares_the_selection_with_the_list(world, make_app):
    ids = add_videos(world)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_videos(app, pilot, 3)
            await pilot.press("g")
            grid = screen.query_one(VideoGrid)
            await settle(pilot, lambda: len(grid.query(VideoTile)) == 3, what="the tiles")
            pictures = [tile.query_one(".tile-picture") for tile in grid.query(VideoTile)]
            await settle(pilot, lambda: all(p.image is not None for p in pictures), what="the thumbnails")
            assert grid.has_focus and screen.selected_id == ids[2]
            await pilot.press("right")
            await settle(pilot, lambda: "seed        42" in screen_text(app), what="the second video's recipe")
            assert screen.selected_id == ids[1]
            assert [t.has_class("-selected") for t in grid.query(VideoTile)] == [False, True, False]
            # Rated and loved in the grid: its tile says so (the order, and so the tiles, stay as they were).
            await pilot.press("5", "f")
            heads = lambda: [str(t.query_one(".tile-head").render()) for t in grid.query(VideoTile)]  # noqa: E731
            await settle(pilot, lambda: heads()[1] == f"#{ids[1]} ★★★★★ ♥", what="the tile's new marks")
            # Another order rebuilds the tiles; the highlight is on the same video at once, on one tile.
            await pilot.press("s")
            await settle(pilot, lambda: grid.ids != ids[::-1] and len(grid.query(VideoTile)) == 3,
                         what="the tiles in another order, the old ones gone")  # fmt: skip
            assert [t.video["id"] for t in grid.query(VideoTile) if t.has_class("-selected")] == [ids[1]]
            while screen.sort != "new":
                await pilot.press("s")
            await settle(pilot, lambda: grid.ids == ids[::-1], what="the tiles newest first again")
            await pilot.press("enter")
            await settle(pilot, lambda: isinstance(app.screen, PlayerScreen), what="the player")
            assert app.screen.video["id"] == ids[1]
            await pilot.press("escape", "g")
            table = screen.query_one("#videos", DataTable)
            await settle(pilot, lambda: table.has_focus, what="the list again")
            assert screen.selected_id == ids[1] and grid.has_class("hidden")

    asyncio.run(scenario())


def test_the_psnr_of_each_video_is_listed_and_beside_the_selection(world, make_app):
    """How close the end frames came to the inputs (the engine's figures, as the worker stores them): in the
    list as first/last dB, and said in words beside the selection, a low one marked."""
    ids = add_videos(world)
    add_psnr(world, ids)

    async def scenario():
        app = make_app(world)
        async with app.run_test(size=SIZE) as pilot:
            await _open_videos(app, pilot, 3)
            await settle(pilot, lambda: "PSNR" in screen_text(app), what="the PSNR column")
            rows = {line.split()[0]: line for line in screen_text(app).splitlines() if line.split()[:1] in
                    ([str(i)] for i in ids)}  # fmt: skip
            assert "31.5/17.9" in rows[str(ids[1])] and "29.0/27.5" in rows[str(ids[2])]
            table = app.screen.query_one("#videos", DataTable)
            low, fine = (table.get_cell(str(ids[n]), "PSNR") for n in (1, 2))  # 17.9 dB: its last frame drifted
            assert any("yellow" in str(span.style) for span in low.spans) and not fine.spans
            await pilot.press("down")
            await settle(pilot, lambda: "seed        42" in screen_text(app), what="the selected recipe")
            recipe = " ".join(str(app.screen.query_one("#video-recipe").render()).split())
            assert "psnr first 31.5 dB, last 17.9 dB (low) (end frames vs inputs)" in recipe

    asyncio.run(scenario())
