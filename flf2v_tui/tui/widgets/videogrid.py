"""The catalogue as a grid of thumbnails: each video's middle frame with its id, rating and prompt; arrows move,
enter plays. The thumbnails are decoded in a worker thread, never on the UI thread."""

from __future__ import annotations

from typing import Any, ClassVar

from PIL import Image
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from flf2v_tui.catalogue.views import stars
from flf2v_tui.term import one_line
from flf2v_tui.tui.db import deliver
from flf2v_tui.tui.images import load_picture, picture_class
from flf2v_tui.tui.text import plain

TILE_WIDTH = 29  # cells: a 28-cell tile and the gutter
MAX_TILES = 120  # more is a search away; each tile is a picture to draw


class VideoTile(Vertical):
    def __init__(self, video: dict[str, Any]) -> None:
        super().__init__(classes="video-tile")
        self.video = video
        self._head = Static(classes="tile-head")
        self._prompt = Static(classes="tile-prompt")
        self.show(video)

    def compose(self) -> ComposeResult:
        yield picture_class()(classes="tile-picture")
        yield self._head
        yield self._prompt

    def show(self, video: dict[str, Any]) -> None:
        """The video's id, rating, ♥ and prompt (again after a rating or a tag changed them)."""
        self.video = video
        head = f"#{video['id']} {stars(video.get('rating'))}{' ♥' if video.get('favourite') else ''}"
        self._head.update(plain(head, style="bold"))
        self._prompt.update(plain(one_line(video["prompt"])))


class VideoGrid(VerticalScroll, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1)", "Left", show=False),
        Binding("right", "move(1)", "Right", show=False),
        Binding("up", "move_rows(-1)", "Up", show=False),
        Binding("down", "move_rows(1)", "Down", show=False),
        Binding("enter", "choose", "Play", show=False),
    ]

    class Highlighted(Message):
        def __init__(self, video_id: int) -> None:
            super().__init__()
            self.video_id = video_id

    class Chosen(Message):
        def __init__(self, video_id: int) -> None:
            super().__init__()
            self.video_id = video_id

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ids: list[int] = []
        self.index = 0
        # The tiles of the last rebuild: the grid's children still hold the old ones until their removal
        # completes, so a query right after a rebuild would find both.
        self._tiles: list[VideoTile] = []

    def compose(self) -> ComposeResult:
        yield Grid(id="video-tiles")

    @property
    def columns(self) -> int:
        return max(1, (self.size.width - 2) // TILE_WIDTH)

    def on_resize(self) -> None:
        self.query_one("#video-tiles", Grid).styles.grid_size_columns = self.columns

    def show(self, videos: list[dict[str, Any]], selected: int | None) -> None:
        """Rebuild the tiles when the list changed; otherwise only redraw the tiles whose video changed (a
        rating, a ♥) and move the highlight."""
        shown = videos[:MAX_TILES]
        ids = [v["id"] for v in shown]
        if ids != self.ids:
            self.ids = ids
            grid = self.query_one("#video-tiles", Grid)
            grid.remove_children()
            grid.styles.grid_size_columns = self.columns
            self._tiles = [VideoTile(v) for v in shown]
            grid.mount_all(self._tiles)
            self._load(shown)
        else:
            for tile, video in zip(self._tiles, shown, strict=True):
                if tile.video != video:
                    tile.show(video)
        self.index = ids.index(selected) if selected in ids else min(self.index, max(0, len(ids) - 1))
        self._mark()

    @work(thread=True, exclusive=True, group="tiles")
    def _load(self, videos: list[dict[str, Any]]) -> None:
        pictures = {v["id"]: load_picture((v.get("files") or {}).get("middle")) for v in videos}
        deliver(self.app, self._loaded, pictures)

    def _loaded(self, pictures: dict[int, Image.Image | None]) -> None:
        for tile in self._tiles:
            picture = pictures.get(tile.video["id"])
            if picture is not None:
                tile.query_one(".tile-picture").image = picture  # type: ignore[attr-defined]

    def _mark(self) -> None:
        for n, tile in enumerate(self._tiles):
            tile.set_class(n == self.index, "-selected")
            if n == self.index:
                self.scroll_to_widget(tile, animate=False)

    def _moved(self) -> None:
        self._mark()
        if self.ids:
            self.post_message(self.Highlighted(self.ids[self.index]))

    def action_move(self, delta: int) -> None:
        if self.ids:
            self.index = max(0, min(len(self.ids) - 1, self.index + delta))
            self._moved()

    def action_move_rows(self, delta: int) -> None:
        self.action_move(delta * self.columns)

    def action_choose(self) -> None:
        if self.ids:
            self.post_message(self.Chosen(self.ids[self.index]))
