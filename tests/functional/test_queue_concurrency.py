"""8 processes × 200 submits while workers claim: every job present, each claimed exactly once, never
"database is locked"."""

from __future__ import annotations

import json
import subprocess
import sys

from storage.db import connect
from storage.paths import Home
from tests.functional.queue_helpers import REPO, env_for

SUBMITTERS, PER_SUBMITTER, CLAIMERS = 8, 200, 3


def test_concurrent_submits_and_claims(qhome, qframes):
    Home(qhome).ensure()
    connect(qhome / "flf2v.db").close()
    env = env_for(qhome)
    total = SUBMITTERS * PER_SUBMITTER
    run = [sys.executable, "-m", "tests.functional.queue_load"]
    claimers = [
        subprocess.Popen(
            [*run, "claim", str(qhome), str(total), "4"], stdout=subprocess.PIPE, env=env, cwd=REPO, text=True
        )
        for _ in range(CLAIMERS)
    ]
    submitters = [
        subprocess.Popen(
            [*run, "submit", str(qhome), str(qframes[0]), str(qframes[1]), str(PER_SUBMITTER), f"p{n}"],
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
            text=True,
        )
        for n in range(SUBMITTERS)
    ]
    submitted = [json.loads(p.communicate(timeout=300)[0]) for p in submitters]
    claims = [json.loads(p.communicate(timeout=300)[0]) for p in claimers]

    assert all(r["errors"] == [] for r in submitted), [r["errors"][:3] for r in submitted]
    assert all(r["errors"] == [] for r in claims), [r["errors"][:3] for r in claims]
    ids = sorted(i for r in submitted for i in r["ids"])
    assert len(ids) == total == len(set(ids))
    claimed = sorted(i for r in claims for i in r["claimed"])
    assert claimed == ids, "a job was claimed twice or never"
    assert all(r["claimed"] for r in claims), "every worker should have claimed some jobs"

    conn = connect(qhome / "flf2v.db")
    assert conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0] == total
    assert tuple(conn.execute("SELECT COUNT(*), COUNT(DISTINCT job_id) FROM attempts").fetchone()) == (total, total)
    for n in range(SUBMITTERS):  # each submitter's jobs kept their order
        mine = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE prompt LIKE ? ORDER BY id", (f"p{n} %",))]
        seeds = [r[0] for r in conn.execute("SELECT base_seed FROM jobs WHERE prompt LIKE ? ORDER BY id", (f"p{n} %",))]
        assert len(mine) == PER_SUBMITTER and seeds == list(range(PER_SUBMITTER))
    assert len(list((qhome / "jobs").iterdir())) == total
