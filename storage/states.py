"""The job states of the design card (DESIGN.md, "Job states"), and the groups of them the code asks about.

    queued → running → succeeded | failed | cancelled, with queued → cancelled too.

A running job whose worker died is `interrupted` until a worker re-attaches or requeues it. Those six are
what `jobs.state` stores (migration 1's CHECK lists the same six; a test keeps them equal). Two more are
shown but never stored, because they are read off flags of a stored state: `held` is a queued job that the
scheduler skips (a user hold or an unmet dependency), and `cancelling` is a running or interrupted job whose
cancel has been asked for and not yet carried out.

Every tuple of states in the code is one of the groups below, so that a new state is added here once.
SQL takes a group through `sql_list`.
"""

from __future__ import annotations

QUEUED = "queued"
RUNNING = "running"
INTERRUPTED = "interrupted"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

HELD = "held"
CANCELLING = "cancelling"

# What `jobs.state` may hold, and what `attempts.state` may hold (each attempt ends on its own).
JOB_STATES = (QUEUED, RUNNING, INTERRUPTED, SUCCEEDED, FAILED, CANCELLED)
ATTEMPT_STATES = (RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)

# Stored states. FINISHED jobs never change again unless retried; UNFINISHED ones still owe work.
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
UNFINISHED = (QUEUED, RUNNING, INTERRUPTED)
# Started and not finished: an attempt holds GPUs and its render may be alive, so it must be cancelled first.
STARTED = (RUNNING, INTERRUPTED)
# Finished and never to succeed: a job waiting on one of these would wait forever.
UNSUCCESSFUL = (FAILED, CANCELLED)

# Shown states (what `display_state` returns). ACTIVE: a render is under way; WAITING: not started yet.
ACTIVE = (RUNNING, CANCELLING, INTERRUPTED)
WAITING = (QUEUED, HELD)
# The states `ls --state` and the dashboard's filter take, in the order the help lists them.
LISTED = (QUEUED, HELD, RUNNING, INTERRUPTED, SUCCEEDED, FAILED, CANCELLED)


def sql_list(group: tuple[str, ...]) -> str:
    """`group` as an SQL list, `('running', 'interrupted')`, for `IN` in constant SQL text. The states are
    the names above, never user input, so they are written inline rather than bound."""
    return "(" + ", ".join(f"'{state}'" for state in group) + ")"
