"""--collective_timeout: a job's own limit on any wait for the other ranks, short by default (600 s)."""

from __future__ import annotations

import pytest

from engine.cli_args import build_parser
from engine.errors import BadInputError
from engine.flags import check_engine_args
from engine.runtime import DEFAULT_TIMEOUT_S, init_runtime

REQUIRED = ["--prompt", "p", "--first_frame", "a.png", "--last_frame", "b.png"]


def test_the_flag_sets_the_runtime_timeout_and_the_environment_only_its_default(monkeypatch, tmp_path):
    monkeypatch.delenv("FLF2V_DIST_TIMEOUT", raising=False)
    args = build_parser().parse_args([*REQUIRED, "--collective_timeout", "45"])
    assert args.collective_timeout == 45.0
    runtime = init_runtime("cpu", str(tmp_path), args.collective_timeout)
    try:
        assert runtime.timeout_s == 45.0
    finally:
        runtime.close()
    assert "rank 0 of 1 on node " in (tmp_path / "rank0.log").read_text()  # every rank's log names its node
    monkeypatch.setenv("FLF2V_DIST_TIMEOUT", "30")
    for given, expected in ((None, 30.0), (12.5, 12.5)):
        runtime = init_runtime("cpu", None, given)
        assert runtime.timeout_s == expected
        runtime.close()
    assert DEFAULT_TIMEOUT_S == 600.0  # ten minutes, not torch's thirty


@pytest.mark.parametrize("value", ["0", "-5", "nan", "1e9"])
def test_a_timeout_out_of_range_is_bad_input(value):
    args = build_parser().parse_args([*REQUIRED, f"--collective_timeout={value}"])
    with pytest.raises(BadInputError, match="--collective_timeout"):
        check_engine_args(args)
