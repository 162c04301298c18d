"""The catalogue screen: every finished video, searchable and sortable, its contact sheet and recipe beside
the selection; rate, tag and favourite from the keyboard, play it here, open it in a player, or re-run it."""

from __future__ import annotations

import subprocess
from typing import Any, ClassVar

from PIL.Image import Image
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import DataTable, Header, Input, Static

from engine.errors import BadInputError
from flf2v_tui.catalogue.player import player_command
from flf2v_tui.catalogue.record import save_user_fields
from flf2v_tui.job_text import LOW_PSNR_DB
from flf2v_tui.screen_data.catalogue_view import (
    SORT_NAMES,
    next_sort,
    prefill_from_video,
    read_videos,
    recipe_rows,
    row_cells,
)
from flf2v_tui.tui.db import Db, deliver
from flf2v_tui.tui.images import load_picture, picture_class
from flf2v_tui.tui.messages import OpenSubmit
from flf2v_tui.tui.screens.base import AppScreen
from flf2v_tui.tui.screens.player import PlayerScreen
from flf2v_tui.tui.text import notify_plain, plain
from flf2v_tui.tui.widgets.footer import FitFooter
from flf2v_tui.tui.widgets.jobtable import KeyedTable
from flf2v_tui.tui.widgets.videogrid import VideoGrid
from storage.db import STORAGE_ERRORS

# The prompt first after the marks: it is what people know a video by; the rest scrolls in from the right.
# PSNR beside the prompt: the first/last frames against the inputs, in dB (a bad render shows without playing it).
COLUMNS = (("ID", 4), ("RATING", 6), ("♥", 1), ("PROMPT", 36), ("PSNR", 9), ("CREATED", 16), ("TAGS", 14),
           ("SIZE", 9), ("SEED", 20))  # fmt: skip


def _cells(video: dict[str, Any]) -> list[Text]:
    """A video's row; its PSNR in the warning colour where an end frame drifted from its input (a low PSNR)."""
    cells = [plain(value) for value in row_cells(video)]
    figures = [video.get(k) for k in ("psnr_first", "psnr_last")]
    if any(isinstance(x, int | float) and x < LOW_PSNR_DB for x in figures):
        cells[[name for name, _ in COLUMNS].index("PSNR")].stylize("bold yellow")
    return cells


class VideosScreen(AppScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "play", "Play", show=True),
        Binding("o", "open_player", "Open in player"),
        Binding("r", "rerun", "Re-run"),
        Binding("slash", "search", "Search"),
        Binding("s", "sort", "Sort"),
        Binding("f", "favourite", "Favourite"),
        Binding("t", "tags", "Tags"),
        Binding("g", "toggle_grid", "Grid/list"),
        *[Binding(str(n), f"rate({n})", f"Rate {n}", show=False) for n in range(1, 6)],
        Binding("0", "rate(0)", "Clear rating", show=False),
        Binding("escape", "back", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.sort = "new"
        self.videos: dict[int, dict[str, Any]] = {}
        self._shown_sheet: str | None = None
        self._want_selected: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the catalogue…", id="videos-status")
        yield Input(placeholder="words in prompts, tags or notes (enter searches, esc clears)", id="video-search",
                    classes="hidden")  # fmt: skip
        yield Input(placeholder="tags, comma-separated (enter saves, esc leaves them)", id="video-tags",
                    classes="hidden")  # fmt: skip
        with Horizontal(id="videos-body"):
            yield KeyedTable(id="videos", cursor_type="row", zebra_stripes=True)
            yield VideoGrid(id="video-grid", classes="hidden")
            with Vertical(id="video-side"):
                yield picture_class()(id="video-sheet")
                with VerticalScroll(id="video-recipe-box"):
                    yield Static("", id="video-recipe")
        yield FitFooter()

    def on_mount(self) -> None:
        self.title = "flf2v · videos"
        table = self.query_one("#videos", DataTable)
        for name, width in COLUMNS:
            table.add_column(name, width=width, key=name)
        self._timer = self.set_interval(max(self.flf2v.poll_s, 1.0), self.poll)
        self.poll()
        table.focus()

    def on_screen_suspend(self) -> None:
        self._timer.pause()

    def on_screen_resume(self) -> None:
        self._timer.resume()
        self.poll()

    # ---- data ----------------------------------------------------------------------------------------------

    def poll(self) -> None:
        if self.is_attached:  # an edit's answer can land after the screen was closed
            self._read(self.text, self.sort)

    @work(thread=True, exclusive=True, group="videos")
    def _read(self, text: str, sort: str) -> None:
        try:
            videos = self.flf2v.db.read(lambda conn: read_videos(conn, text, sort))
        except STORAGE_ERRORS as exc:  # said on the status line; the next poll tries again
            deliver(self.app, self._unreadable, f"cannot read the catalogue in {self.flf2v.db.home.db}: {exc}")
            return
        deliver(self.app, self.show, text, sort, videos)

    def _unreadable(self, message: str) -> None:
        if self.is_attached:
            self.query_one("#videos-status", Static).update(plain(message, style="red"))

    def show(self, text: str, sort: str, videos: list[dict[str, Any]]) -> None:
        if (text, sort) != (self.text, self.sort):
            return  # the search changed since this reading started; a newer one is on its way
        try:
            self._fill(videos)
        except NoMatches:
            return  # a reading that lands while the screen is being closed

    def _fill(self, videos: list[dict[str, Any]]) -> None:
        table = self.query_one("#videos", KeyedTable)
        selected = self.selected_id
        order = [v["id"] for v in videos]
        if list(self.videos) != order:
            table.clear()
            for video in videos:
                table.add_row(*_cells(video), key=str(video["id"]))
        else:
            for video in videos:
                if video != self.videos.get(video["id"]):
                    for (name, _), value in zip(COLUMNS, _cells(video), strict=True):
                        table.update_cell(str(video["id"]), name, value)
        self.videos = {v["id"]: v for v in videos}
        wanted = self._want_selected if self._want_selected in self.videos else selected
        if wanted is not None and table.select(wanted):
            self._want_selected = None
        if self.grid_shown:
            self.query_one(VideoGrid).show(videos, wanted)
        status = f"{len(videos)} video(s) · {SORT_NAMES[self.sort]}"
        if self.text:
            status += f" · search: {self.text}"
        if not videos:
            status += " · nothing yet: finished jobs land here" if not self.text else " · no match (esc clears)"
        self.query_one("#videos-status", Static).update(plain(status))
        self._show_selected()

    @property
    def grid_shown(self) -> bool:
        return not self.query_one(VideoGrid).has_class("hidden")

    @property
    def selected_id(self) -> int | None:
        grid = self.query_one(VideoGrid)
        if self.grid_shown:
            return grid.ids[grid.index] if grid.ids else None
        return self.query_one("#videos", KeyedTable).selected_id

    @property
    def selected(self) -> dict[str, Any] | None:
        vid = self.selected_id
        return self.videos.get(vid) if vid is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_play()

    def on_video_grid_highlighted(self, event: VideoGrid.Highlighted) -> None:
        event.stop()
        self._show_selected()

    def on_video_grid_chosen(self, event: VideoGrid.Chosen) -> None:
        event.stop()
        self.action_play()

    def action_toggle_grid(self) -> None:
        """Thumbnails in a grid, or the dense list; the selection stays on its video either way."""
        selected = self.selected_id
        grid, table = self.query_one(VideoGrid), self.query_one("#videos", KeyedTable)
        grid.set_class(self.grid_shown, "hidden")
        table.set_class(self.grid_shown, "hidden")
        if self.grid_shown:
            grid.show(list(self.videos.values()), selected)
        elif selected is not None:
            table.select(selected)
        self._active_view().focus()
        self._show_selected()

    def _active_view(self) -> VideoGrid | DataTable[Any]:
        return self.query_one(VideoGrid) if self.grid_shown else self.query_one("#videos", DataTable)

    def _show_selected(self) -> None:
        video = self.selected
        recipe = self.query_one("#video-recipe", Static)
        if video is None:
            recipe.update(Text("no video selected", style="dim"))
            return
        text = Text()
        for label, value in recipe_rows(video):
            text.append(f"{label:<12}", style="bold" if label == "prompt" else "dim").append(value + "\n")
        recipe.update(text)
        path = (video.get("files") or {}).get("sheet")
        if path != self._shown_sheet:
            self._shown_sheet = path
            self._load_sheet(path)

    @work(thread=True, exclusive=True, group="sheet")
    def _load_sheet(self, path: str | None) -> None:
        """The contact sheet decoded here, not by the picture widget on the UI thread."""
        deliver(self.app, self._sheet_loaded, path, load_picture(path))

    def _sheet_loaded(self, path: str | None, image: Image | None) -> None:
        if path == self._shown_sheet and self.is_attached:  # still the selection's sheet
            self.query_one("#video-sheet").image = image  # type: ignore[attr-defined]

    # ---- keys ----------------------------------------------------------------------------------------------

    def _need_selected(self) -> dict[str, Any] | None:
        video = self.selected
        if video is None:
            self.notify("no video selected", severity="warning")
        return video

    def action_play(self) -> None:
        video = self._need_selected()
        if video is not None:
            self.app.push_screen(PlayerScreen(video))  # which says so, from its thread, if the file is gone

    def action_open_player(self) -> None:
        video = self._need_selected()
        if video is None:
            return
        command = player_command(video["path"])
        if command is None:
            notify_plain(self, f"no display here to play it on; the file is {video['path']}", timeout=8)
            return
        failed = ""
        try:
            with self.app.suspend():
                try:
                    subprocess.run(command, check=False)
                except OSError as exc:  # caught inside, so the app is resumed (suspend() has no finally)
                    failed = f"could not run {command[0]} ({exc})"
        except SuspendNotSupported:  # Textual web, or a driver that cannot give the terminal away
            failed = "this terminal cannot be handed to a player"
        if failed:
            notify_plain(self, f"{failed}; the file is {video['path']}", severity="warning", timeout=8)

    def action_rerun(self) -> None:
        video = self._need_selected()
        if video is not None:
            self.post_message(OpenSubmit(prefill_from_video(video)))

    def action_sort(self) -> None:
        self.sort = next_sort(self.sort)
        self.poll()

    def action_search(self) -> None:
        box = self.query_one("#video-search", Input)
        box.remove_class("hidden")
        box.focus()

    def action_tags(self) -> None:
        video = self._need_selected()
        if video is None:
            return
        box = self.query_one("#video-tags", Input)
        box.value = ", ".join(video.get("tags") or [])
        box.remove_class("hidden")
        box.focus()

    def action_back(self) -> None:
        for box in self.query("#video-search, #video-tags").results(Input):
            if not box.has_class("hidden"):
                self._close(box, clear=box.id == "video-search")
                return
        if self.text:
            self.text = ""
            self.poll()
            return
        self.app.pop_screen()

    def _close(self, box: Input, clear: bool) -> None:
        box.add_class("hidden")
        if clear:
            box.value = ""
            self.text = ""
            self.poll()
        self._active_view().focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "video-search":
            self.text = event.value.strip()
            self._close(event.input, clear=False)
            self.poll()
        elif event.input.id == "video-tags" and self.selected is not None:
            tags = list(dict.fromkeys(t.strip() for t in event.value.split(",") if t.strip()))
            self._close(event.input, clear=False)
            self._save(self.selected["id"], tags=tags)

    def action_rate(self, stars: int) -> None:
        video = self._need_selected()
        if video is not None:
            self._save(video["id"], rating=stars or None)

    def action_favourite(self) -> None:
        video = self._need_selected()
        if video is not None:
            self._save(video["id"], favourite=not video.get("favourite"))

    def _save(self, video_id: int, **changes: Any) -> None:
        # The app and its database are taken here, on the UI thread: a screen left before the thread runs no
        # longer reaches its app from there, and the rating or tag would be lost without a word.
        self._write(self.app, self.flf2v.db, video_id, changes)

    @work(thread=True, group="video-edit")
    def _write(self, app: App[object], db: Db, video_id: int, changes: dict[str, Any]) -> None:
        try:
            db.write(lambda conn: save_user_fields(conn, video_id, **changes))
        except (BadInputError, *STORAGE_ERRORS) as exc:
            message = str(getattr(exc, "message", exc))
            deliver(app, lambda: notify_plain(app, message, severity="error"))
            return
        deliver(app, self._saved, video_id)

    def _saved(self, video_id: int) -> None:
        """On the UI thread, which alone reads and clears the wanted selection."""
        self._want_selected = video_id
        self.poll()
