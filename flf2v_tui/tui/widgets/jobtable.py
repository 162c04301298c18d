"""The dashboard's job table, updated in place: only changed cells are rewritten and the cursor stays on the
same job, so a refresh every second neither flickers nor moves the selection. Its base, KeyedTable, also
serves the catalogue's list."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from flf2v_tui.job_text import STATE_COLOURS
from flf2v_tui.screen_data.queue_view import (
    NARROW_COLUMNS,
    QueueSnapshot,
    columns_for,
    job_cells,
    prompt_room,
)
from flf2v_tui.term import one_line
from flf2v_tui.tui.text import plain

_RIGHT = {"id", "gpus", "s/it", "eta", "age"}


def _cell(column: str, value: str, state: str) -> Text:
    """Always a Text: a bare string in a DataTable is read as markup, and labels and prompts are anyone's."""
    if column == "state":
        return Text(value, style=STATE_COLOURS.get(state) or "")
    if column == "step" and value:
        bar, _, count = value.partition(" ")
        return Text.assemble((bar, "cyan" if state == "running" else "dim"), " ", count)
    text = plain(value)
    if column in _RIGHT:
        text.justify = "right"
    return text


class KeyedTable(DataTable[Any]):
    """A table whose rows are keyed by an id (a job's, a video's), selected by that id."""

    @property
    def selected_id(self) -> int | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:  # the cursor sits past rows that were just cleared
            return None
        return int(key.value) if key.value is not None else None

    def select(self, row_id: int) -> bool:
        key = str(row_id)
        if key not in self.rows:
            return False
        self.move_cursor(row=self.get_row_index(key), animate=False)
        return True


class JobTable(KeyedTable):
    """Its columns follow the width (queue_view.columns_for): fewer on a narrower terminal, where the note (why
    a job waits) comes before the prompt; the prompt gets the room the other columns leave."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self._cells: dict[str, tuple[str, ...]] = {}
        self._order: list[str] = []
        self.columns_shown: tuple[str, ...] = ()
        self.jobs: dict[int, dict[str, Any]] = {}
        self.states: dict[int, str] = {}
        self._last: tuple[QueueSnapshot, float] | None = None

    def _layout(self) -> tuple[str, ...]:
        return columns_for(self.app.size.width)

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        self.clear(columns=True)
        self._cells, self._order, self.columns_shown = {}, [], columns
        for column in columns:
            self.add_column(column.upper() if column != "s/it" else "S/IT", key=column)

    def on_resize(self) -> None:
        if self._last is not None and self._layout() != self.columns_shown:
            self.show(*self._last)

    def show(self, snap: QueueSnapshot, now: float) -> None:
        self._last = (snap, now)
        keep = self.selected_id  # before a change of layout clears the rows
        columns = self._layout()
        if columns != self.columns_shown:
            self._set_columns(columns)
        self.jobs = {j["id"]: j for j in snap.jobs}
        self.states = snap.states
        narrow = columns == NARROW_COLUMNS
        every = {str(j["id"]): job_cells(j, snap.states[j["id"]], now, snap.waiting, narrow) for j in snap.jobs}
        room = prompt_room(list(every.values()), columns, self.app.size.width)
        fresh = {
            key: tuple(one_line(cells[c], room) if c == "prompt" else cells[c] for c in columns)
            for key, cells in every.items()
        }
        for key in [k for k in self._cells if k not in fresh]:
            self.remove_row(key)
            del self._cells[key]
        new_rows = []
        for key, cells in fresh.items():
            old = self._cells.get(key)
            state = cells[1]
            if old is None:
                new_rows.append((key, [_cell(c, v, state) for c, v in zip(columns, cells, strict=True)]))
            elif old != cells:
                for column, before, after in zip(columns, old, cells, strict=True):
                    if before != after or (column == "step" and old[1] != state):
                        self.update_cell(key, column, _cell(column, after, state))
            self._cells[key] = cells
        for key, row in new_rows:
            self.add_row(*row, key=key)
        order = list(fresh)
        if order != self._order:
            position = {k: i for i, k in enumerate(order)}
            self.sort("id", key=lambda cell: position[str(cell).strip()])
            self._order = order
        if keep is not None and str(keep) in fresh:
            self.select(keep)
