"""The one table of engine flags (engine.flags) against what is made from it or must agree with it: the jobs
table of a freshly migrated database, JobSpec, the engine's parser and argv, the app's CLI options, the submit
form and the recipe."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

import pytest

from engine.cli_args import build_parser
from engine.flags import BOOL, CHOICE, FLAGS, JOB_FLAGS, RECIPE_FLAGS, SWITCH, TEXT, Flag
from engine.recipe import build_recipe
from flf2v_tui.catalogue.rerun import _FROM_RECIPE
from flf2v_tui.screen_data import form
from storage.spec import ENGINE_FLAGS, JobSpec, QueueSettings, engine_argv

_SQL_TYPES = {str: "TEXT", int: "INTEGER", bool: "INTEGER", float: "REAL"}


def _columns(conn: sqlite3.Connection) -> dict[str, tuple[str, bool, str | None]]:
    """The jobs table as SQLite reports it: name -> (type, NOT NULL, DEFAULT as written)."""
    return {r[1]: (r[2], bool(r[3]), r[4]) for r in conn.execute("PRAGMA table_info(jobs)")}


def _sql_literal(value: Any) -> str:
    return (
        str(int(value)) if isinstance(value, bool | int) else f"{value:g}" if isinstance(value, float) else repr(value)
    )


def test_every_job_flag_is_a_column_of_its_type_nullability_and_default(conn):
    columns = _columns(conn)
    for flag in JOB_FLAGS:
        assert flag.name in columns, f"--{flag.name} is a job flag: add its column in a migration (storage.schema)"
        kind, not_null, default = columns[flag.name]
        assert kind == _SQL_TYPES[flag.type], flag.name
        assert not_null is not flag.nullable, flag.name
        if flag.required or flag.default is None:
            assert default is None, flag.name  # a required flag always has a value; a nullable one means "default"
        else:
            assert default == _sql_literal(flag.default), flag.name
    # A column named like an engine flag is that flag's, so the table must say it is a job flag.
    assert {f.name for f in FLAGS if not f.job} & set(columns) == set()


def test_the_queue_settings_defaults_are_the_columns_defaults(conn):
    columns = _columns(conn)
    defaults = dataclasses.asdict(QueueSettings())
    for name in ("gpus", "nodes", "priority", "max_retries", "retry_backoff"):
        assert columns[name][2] == _sql_literal(defaults[name]), name
    assert (columns["held"][2], columns["retry_on"][2]) == (_sql_literal(defaults["held"]), "'comm,worker_lost'")
    assert ",".join(defaults["retry_on"]) == "comm,worker_lost"


def test_jobspec_has_a_field_per_job_flag_with_the_flags_default():
    spec_fields = {f.name: f for f in dataclasses.fields(JobSpec)}
    assert tuple(f.name for f in JOB_FLAGS) == ENGINE_FLAGS
    for flag in JOB_FLAGS:
        default = spec_fields[flag.name].default
        if flag.required:
            assert default is dataclasses.MISSING, flag.name
        else:
            assert default == flag.default and type(default) is type(flag.default), flag.name


def _sample(flag: Flag) -> Any:
    """A value of the flag that is not its default, as a job stores it."""
    if flag.kind == SWITCH:
        return True
    if flag.kind == BOOL:
        return False
    if flag.kind == CHOICE:
        return next(c for c in reversed(flag.choices) if c != flag.default)
    if flag.type is int:
        return 3 if flag.default != 3 else 5
    if flag.type is float:
        return 2.5
    return f"/data/{flag.name}.x" if flag.kind != TEXT else f"a {flag.name}, typed"


def test_the_engine_parses_back_what_engine_argv_writes():
    values = {flag.name: _sample(flag) for flag in JOB_FLAGS}
    parsed = vars(build_parser().parse_args(engine_argv(values)))
    assert {name: parsed[name] for name in values} == values
    assert list(vars(build_parser().parse_args([]))) == [f.name for f in FLAGS]


@pytest.mark.parametrize("name", ["prompt", "neg_prompt", "first_frame", "save_file", "base_seed"])
def test_a_value_that_starts_with_a_dash_reaches_the_engine_as_it_was_given(name):
    flag = next(f for f in JOB_FLAGS if f.name == name)
    value = -7 if flag.type is int else "-dark"
    parsed = vars(build_parser().parse_args(engine_argv({name: value})))
    assert parsed[name] == value


def _commands() -> dict[str, Any]:
    import typer.main

    from flf2v_tui.cli import app

    group = typer.main.get_command(app)
    return {"submit": group.commands["submit"], "retry": group.commands["retry"],  # type: ignore[attr-defined]
            "videos rerun": group.commands["videos"].commands["rerun"]}  # type: ignore[attr-defined]  # fmt: skip


@pytest.mark.parametrize(("name", "command"), list(_commands().items()))
def test_submit_retry_and_rerun_take_every_job_flag_in_both_spellings(name, command):
    params = {p.name: p for p in command.params}
    for flag in JOB_FLAGS:
        dashed = flag.name.replace("_", "-")
        expected = {f"--{flag.name}", f"--{dashed}"}
        assert expected <= set(params[flag.name].opts), (name, flag.name)
        if flag.kind == SWITCH:
            assert set(params[flag.name].secondary_opts) == {f"--no_{flag.name}", f"--no-{dashed}"}


def test_the_form_shows_each_labelled_flag_once_and_reads_back_what_it_prefills():
    flags_on_form = [f.name for f in FLAGS if f.label]
    assert sorted(form.FIELDS) == sorted([*flags_on_form, *form.QUEUE_LABELS])
    assert len(set(form.FIELDS)) == len(form.FIELDS) and set(form.LABELS) == set(form.FIELDS)
    assert all(form.FORM_FLAGS[n].job for n in flags_on_form)  # the form makes jobs
    job = {flag.name: _sample(flag) for flag in JOB_FLAGS} | {"gpus": 2, "priority": 4, "labels": ["x"]}
    sub = form.parse_form(form.prefill_from_job(job))
    assert sub.errors == {}
    assert {name: sub.given[name] for name in flags_on_form} == {name: job[name] for name in flags_on_form}
    assert (sub.given["base_seed"], sub.queue.gpus, sub.queue.priority, sub.queue.labels) == (
        job["base_seed"],
        2,
        4,
        ["x"],
    )


@pytest.mark.parametrize("flag", [f for f in FLAGS if f.label], ids=lambda f: f.name)
def test_an_error_about_a_form_flag_goes_under_its_field(flag):
    from engine.errors import BadInputError

    assert form.field_for(BadInputError("bad", field=flag.name)) == flag.name
    assert form.field_for(BadInputError("bad")) == form.FORM_LEVEL


def test_the_recipe_holds_every_recipe_flag_and_a_rerun_takes_the_job_ones():
    args = {flag.name: _sample(flag) for flag in FLAGS}
    recipe = build_recipe(args, seed=7, world_size=2, engine_version="0", fingerprint=None)
    assert set(RECIPE_FLAGS) <= set(recipe) and recipe["base_seed"] == 7
    assert set(_FROM_RECIPE) == set(RECIPE_FLAGS) & set(ENGINE_FLAGS)


def test_the_engine_key_is_what_the_design_card_names():
    # DESIGN.md, "Warm groups": checkpoint identity, task, parallel layout, FSDP, offload and T5-on-CPU switches,
    # device, dtype (world size is not a flag).
    key = {f.name for f in FLAGS if f.engine_key}
    # The fast path's flags too: CFG-parallel is layout, and the attention kernel and compilation are set on the
    # loaded DiT.
    assert key == {"ckpt_dir", "task", "ulysses_size", "ring_size", "t5_fsdp", "dit_fsdp", "offload_model", "t5_cpu",
                   "device", "cfg_size", "attn", "compile", "dtype"}  # fmt: skip


def test_every_number_has_a_bound_filed_under_its_own_name():
    for flag in FLAGS:
        if flag.type in (int, float) and flag.kind not in (BOOL, SWITCH):
            assert flag.bound is not None and flag.bound.flag == f"--{flag.name}", flag.name
    with pytest.raises(ValueError, match="filed as"):
        Flag("x", int, 0, "x", bound=FLAGS[2].bound)


def test_show_lists_every_job_flag():
    from flf2v_tui.job_text import SHOWN_ELSEWHERE, SHOWN_PARAMS

    assert {f.name for f in JOB_FLAGS} <= set(SHOWN_PARAMS) | set(SHOWN_ELSEWHERE)
