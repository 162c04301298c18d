"""Playing a video inside the terminal: its frames, scaled down, at the video's own frame rate, looping."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from flf2v_tui.catalogue.media import small_frames
from flf2v_tui.tui.db import deliver
from flf2v_tui.tui.images import picture_class
from flf2v_tui.tui.text import plain

if TYPE_CHECKING:
    from textual.timer import Timer

PLAY_WIDTH = 320  # pixels across: plenty for terminal cells, and cheap to decode and draw 16 times a second


class PlayerScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "close", "Close"),
        Binding("space", "pause", "Pause/play"),
        Binding("left", "step(-1)", "Frame back"),
        Binding("right", "step(1)", "Frame on"),
    ]

    def __init__(self, video: dict[str, Any]) -> None:
        super().__init__()
        self.video = video
        self.fps = float(video.get("fps") or 16.0)  # a video catalogued without its rate plays at the engine's
        self.frames: list[Image.Image] = []
        self.index = 0
        self.playing = True
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="player"):
            yield Static(f"video {self.video['id']}: decoding…", id="player-caption")
            yield picture_class()(id="player-picture")

    def on_mount(self) -> None:
        self._decode(Path(self.video["path"]))

    @work(thread=True, exclusive=True, group="player")
    def _decode(self, path: Path) -> None:
        if not path.is_file():
            # What matters first: the caption is one line, and the path may be long.
            deliver(self.app, self._failed, f"video {self.video['id']}: its file is gone (flf2v videos verify): {path}")
            return
        try:
            frames = small_frames(path, PLAY_WIDTH)
        except (OSError, RuntimeError, ValueError) as exc:  # ValueError: a frame cut short
            deliver(self.app, self._failed, f"cannot play {path}: {exc}")
            return
        deliver(self.app, self._loaded, frames)

    def _failed(self, message: str) -> None:
        if not self.is_attached:
            return  # closed while decoding
        self.query_one("#player-caption", Static).update(plain(message, style="red"))

    def _loaded(self, frames: list[Image.Image]) -> None:
        if not self.is_attached:
            return  # closed while decoding
        if not frames:
            self._failed(f"{self.video['path']} has no frames")
            return
        self.frames = frames
        self._timer = self.set_interval(1.0 / self.fps, self._advance)
        self._draw()

    def _advance(self) -> None:
        if self.playing and self.frames:
            self.index = (self.index + 1) % len(self.frames)
            self._draw()

    def _draw(self) -> None:
        self.query_one("#player-picture").image = self.frames[self.index]  # type: ignore[attr-defined]
        state = "playing" if self.playing else "paused"
        caption = (f"video {self.video['id']} · frame {self.index + 1}/{len(self.frames)} · {self.fps:g} fps · "
                   f"{state} · space pause, ←/→ step, esc close")  # fmt: skip
        self.query_one("#player-caption", Static).update(caption)

    def action_pause(self) -> None:
        self.playing = not self.playing
        if self.frames:
            self._draw()

    def action_step(self, delta: int) -> None:
        if self.frames:
            self.playing = False
            self.index = (self.index + delta) % len(self.frames)
            self._draw()

    def action_close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.dismiss(None)
