"""Job dependencies of three kinds, as Slurm's afterok, afterany and afternotok: a job starts after others
succeeded (`--after`), ended whichever way (`--after-any`) or failed (`--after-fail`).

One SQL definition of "met" and "never met" here, used by the claim, `ls` and the counts, so that they agree.
`j` is the waiting job and `d`/`p` its job_deps row and the job it waits for, in every statement below.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from engine.errors import BadInputError
from storage.states import FAILED, FINISHED, SUCCEEDED, sql_list

# kind -> (its option, the verb for "met", the states that meet it)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ok": ("--after", "succeed", (SUCCEEDED,)),
    "any": ("--after-any", "end", FINISHED),
    "fail": ("--after-fail", "fail", (FAILED,)),
}

MET = "(CASE d.kind " + " ".join(f"WHEN '{k}' THEN p.state IN {sql_list(v[2])}" for k, v in KINDS.items()) + " END)"
# Finished without meeting the dependency: it never will (until that job is retried).
NEVER = f"(p.state IN {sql_list(FINISHED)} AND NOT {MET})"
_DEPS = "FROM job_deps d JOIN jobs p ON p.id = d.after_id WHERE d.job_id = j.id"
UNMET = f"SELECT 1 {_DEPS} AND NOT {MET}"
# For `ls`: the jobs a job still waits for, and those that can no longer let it start.
# Each with its kind, as its option says it: "after-fail 5, after 3".
_OPTION = "(CASE d.kind " + " ".join(f"WHEN '{k}' THEN '{v[0][2:]}'" for k, v in KINDS.items()) + " END)"
WAITING_ON = f"(SELECT group_concat({_OPTION} || ' ' || d.after_id, ', ') {_DEPS} AND NOT {MET})"
NEVER_ON = f"(SELECT group_concat(d.after_id || ' ' || p.state) {_DEPS} AND {NEVER})"


def check_deps(conn: sqlite3.Connection, deps: Iterable[tuple[int, str]]) -> None:
    """Each (job id, kind) names a job, and one that can still meet the dependency."""
    for dep, kind in deps:
        option, met, states = KINDS[kind]
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (dep,)).fetchone()
        if row is None:
            raise BadInputError(f"{option} {dep}: there is no job {dep} (see flf2v ls --all)")
        if row[0] in FINISHED and row[0] not in states:
            raise BadInputError(
                f"{option} {dep}: job {dep} {row[0]}, so it will never {met}; "
                f"retry job {dep} first, or wait for it another way (--after, --after-any, --after-fail)"
            )


def deps_of(conn: sqlite3.Connection, job_id: int) -> dict[str, list[int]]:
    """The jobs `job_id` waits for, by kind ("ok", "any", "fail"; a kind without any is left out)."""
    out: dict[str, list[int]] = {}
    for after_id, kind in conn.execute(
        "SELECT after_id, kind FROM job_deps WHERE job_id = ? ORDER BY after_id", (job_id,)
    ):
        out.setdefault(kind, []).append(after_id)
    return out


# JobSpec's fields of the dependencies, by kind.
FIELDS = {"ok": "after", "any": "after_any", "fail": "after_fail"}
