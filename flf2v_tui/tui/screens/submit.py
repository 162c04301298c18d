"""The submit form. Checked by the same code as `flf2v submit` (screen_data.form -> submission.build_specs), with each
message shown under the field it is about. Opened empty, or prefilled from a job (`SubmitScreen(prefill)`)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import Suggester
from textual.widgets import Button, Checkbox, Header, Input, Label, Select, Static, TextArea

from engine.errors import BadInputError
from engine.tasks import TASKS
from flf2v_tui.flf_guards import flf_warnings
from flf2v_tui.screen_data import form
from flf2v_tui.tui.db import Db, deliver
from flf2v_tui.tui.screens.base import AppScreen
from flf2v_tui.tui.text import notify_plain, plain
from flf2v_tui.tui.widgets.footer import FitFooter
from storage.db import STORAGE_ERRORS
from storage.jobs import require_job


class PathSuggester(Suggester):
    """Completes file names as they are typed (right arrow accepts); the folder is listed in a thread."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(form.complete_path, value)


class SubmitScreen(AppScreen[list[int] | None]):
    """Dismissed with the new job ids (or, editing, the edited job's), or None when left without submitting."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Submit", priority=True),
        Binding("escape", "leave", "Back"),
    ]

    def __init__(self, prefill: dict[str, str] | None = None, edit_job: int | None = None) -> None:
        """`edit_job`: save into that queued job (the form opens with its fields) instead of queueing a new one."""
        super().__init__()
        self.prefill = {name: "" for name in form.FIELDS} | {k: v for k, v in (prefill or {}).items() if v}
        self.edit_job = edit_job
        # What values() reads from the widgets as they open: an edit changes only the fields changed from these.
        self.original = {name: form.shown_text(name, text) for name, text in self.prefill.items()}
        self.busy = False
        self.shown_errors = False  # after a refused submit, every change is checked again at once

    def _field(self, name: str, widget: Input | Select[str] | TextArea | Checkbox) -> ComposeResult:
        with Vertical(classes="field", id=f"field-{name}"):
            line = Vertical if isinstance(widget, TextArea) else Horizontal
            with line(classes="field-line"):
                yield Label(form.LABELS[name])
                yield widget
            if name in form.FRAMES:
                yield Static("", id=f"{name}-info", classes="info")
            yield Static("", id=f"{name}-error", classes="error hidden")

    def _widget(self, name: str, hints: dict[str, str]) -> Input | Select[str] | TextArea | Checkbox:
        """The field's widget, as form.widget_of says, holding its prefilled text."""
        text, kind = self.prefill[name], form.widget_of(name)
        if kind == "area":
            area = TextArea(text, id=name, soft_wrap=True, show_line_numbers=False)
            area.placeholder = hints.get(name, "")
            return area
        if kind == "select":
            choices = [(x or "default", x) for x in form.choices_of(name)]
            return Select(choices, value=form.select_value(name, text), allow_blank=False, id=name, compact=True)
        if kind == "checkbox":
            return Checkbox(switch_label(bool(text)), bool(text), id=name, compact=True)
        suggester = PathSuggester() if kind == "path" else None
        return Input(text, placeholder=hints.get(name, ""), id=name, suggester=suggester, compact=True)

    def compose(self) -> ComposeResult:
        task = self.prefill["task"] if self.prefill["task"] in TASKS else form.DEFAULT_TASK
        hints = form.placeholders(task)
        yield Header()
        with VerticalScroll(id="form"):
            for row in form.LAYOUT:
                if len(row) == 1:  # spans the form
                    yield from self._field(row[0], self._widget(row[0], hints))
                    continue
                switches = all(form.widget_of(name) == "checkbox" for name in row)
                with Horizontal(classes="row switches" if switches else "row"):
                    for name in row:
                        yield from self._field(name, self._widget(name, hints))
            yield Static("", id="form-error", classes="error hidden")
            with Horizontal(id="form-buttons"):
                yield Button("Save (ctrl+s)" if self.edit_job else "Submit (ctrl+s)", variant="primary", id="submit")
                yield Button("Back (esc)", id="back")
        yield FitFooter()

    def on_mount(self) -> None:
        self.title = f"flf2v · edit job {self.edit_job}" if self.edit_job else "flf2v · new job"
        self.query_one("#first_frame", Input).focus()
        for name in form.FRAMES:
            if self.prefill[name]:
                self._describe(name, self.prefill[name])

    # ---- live hints ----------------------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in form.FRAMES:
            self._describe(event.input.id, event.value)
        self._changed()

    def on_text_area_changed(self, _event: TextArea.Changed) -> None:
        self._changed()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.checkbox.label = switch_label(event.value)
        self._changed()

    def _changed(self) -> None:
        """After a refused submit, check the form again as it is now: an error a change fixed goes at once."""
        if self.shown_errors and not self.busy and self.is_attached:  # not on a form already left
            self._check(self.values())

    @work(thread=True, exclusive=True, group="check")
    def _check(self, values: dict[str, str]) -> None:
        errors = form.check(self.flf2v.db.home, values)
        deliver(self.app, self._checked, values, errors)

    def _checked(self, values: dict[str, str], errors: dict[str, str]) -> None:
        if not self.busy and self.is_attached and self.values() == values:  # not about a form changed since
            self.show_errors(errors)

    @work(thread=True, exclusive=False, group="frames")
    def _describe(self, name: str, path: str) -> None:
        summary = form.image_summary(path)
        deliver(self.app, self._described, name, path, summary)

    def _described(self, name: str, path: str, summary: str) -> None:
        if self.query_one(f"#{name}", Input).value == path:  # not an answer about text typed over since
            self.query_one(f"#{name}-info", Static).update(plain(summary))

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "task" and isinstance(event.value, str):
            for name, hint in form.placeholders(event.value).items():
                widget = self.query_one(f"#{name}")
                if isinstance(widget, Input | TextArea):
                    widget.placeholder = hint
        self._changed()

    # ---- submitting ----------------------------------------------------------------------------------------

    def values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in form.FIELDS:
            widget = self.query_one(f"#{name}")
            if isinstance(widget, TextArea):
                out[name] = widget.text
            elif isinstance(widget, Checkbox):
                out[name] = "1" if widget.value else ""
            elif isinstance(widget, Select):
                out[name] = str(widget.value)
            elif isinstance(widget, Input):
                out[name] = widget.value
        return out

    def show_errors(self, errors: dict[str, str]) -> None:
        self.shown_errors = self.shown_errors or bool(errors)
        for box in self.query(".error"):
            box.update("")
            box.add_class("hidden")
        for name, message in errors.items():
            box = self.query_one(f"#{name}-error", Static)
            box.update(plain(message))
            box.remove_class("hidden")
            if name != form.FORM_LEVEL:
                self.query_one(f"#field-{name}").scroll_visible()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        elif event.button.id == "back":
            self.action_leave()

    def action_submit(self) -> None:
        if self.busy:
            return
        self.busy = True
        self.query_one("#form-error", Static).update("checking…")
        self.query_one("#form-error").remove_class("hidden")
        self._submit(self.app, self.flf2v.db, self.values())

    @work(thread=True, exclusive=True, group="submit")
    def _submit(self, app: App[object], db: Db, values: dict[str, str]) -> None:
        """`app` and `db` are taken on the UI thread: once `_submitted` dismisses this form, the screen no longer
        reaches its app (`self.app` raises NoActiveAppError from this thread), and the warnings are still to say."""
        home, job_id = db.home, self.edit_job
        try:
            if job_id is None:
                ids, errors = db.write(lambda conn: form.submit(conn, home, values))
            else:
                said, errors = db.write(lambda conn: form.edit(conn, home, job_id, self.original, values))
                ids = [] if errors else [job_id]
                if said:
                    deliver(app, notify_plain, app, said)
        except STORAGE_ERRORS as exc:  # the database would not even open
            frames = [values[name] for name in form.FRAMES]
            ids, errors = [], {form.FORM_LEVEL: form.storage_refused(home, exc, frames)}
        deliver(app, self._submitted, ids, errors)
        if ids:
            self._warn(app, db, ids[0])

    @staticmethod
    def _warn(app: App[object], db: Db, job_id: int) -> None:
        """What `flf2v submit` warns of for first-last-frame video (the same picture twice, a clip longer than
        the model was trained on), said once the job is queued: warnings, never refusals."""
        try:
            warnings = db.read(lambda conn: flf_warnings(require_job(conn, job_id)))
        except (BadInputError, *STORAGE_ERRORS):  # the job went already; nothing to warn of
            return
        for warning in warnings:
            deliver(app, notify_plain, app, f"job {job_id}: {warning.message}", "warning", 12)

    def _submitted(self, ids: list[int], errors: dict[str, str]) -> None:
        self.busy = False
        if errors:
            self.show_errors(errors)
            return
        if self.edit_job is None:
            self.notify(f"queued job {ids[0]}" if len(ids) == 1 else f"queued {len(ids)} jobs: {ids[0]}..{ids[-1]}")
        self.dismiss(ids)

    def action_leave(self) -> None:
        self.dismiss(None)


def switch_label(on: bool) -> str:
    """A switch says its state: "on" or "off"."""
    return "on" if on else "off"
