"""Why a queued job waits, as `flf2v ls` says it from the workers' pools (their heartbeat's describe())."""

from __future__ import annotations

from flf2v_tui.ls_table import waiting_text


def pool(device: str, slots: list[str], busy: list[str], blocked: list[str] = ()) -> dict:
    return {"pool": {"device": device, "slots": slots, "busy": dict.fromkeys(busy, 1),
                     "blocked": dict.fromkeys(blocked, "used by another program")}}  # fmt: skip


def test_waiting_text_names_what_the_job_waits_for():
    assert waiting_text([], paused=False) == "waiting for a worker (flf2v worker)"
    assert waiting_text([pool("cuda", ["0"], ["0"])], paused=True) == "queue paused (flf2v resume)"
    assert waiting_text([pool("cuda", ["0", "1", "2", "3"], ["0", "1", "2"], ["3"])], False) == (
        "waiting for a free GPU (4 busy)"
    )
    assert waiting_text([pool("cpu", ["cpu0"], ["cpu0"])], False) == "waiting for a CPU slot (1 busy)"
    assert waiting_text([pool("cuda", ["0", "1"], ["0"])], False) == "waiting for a worker to take it"
