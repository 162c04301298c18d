"""The warm group's files (engine.warm_protocol): written whole, read back as written, and the engine key made
from the flag table."""

from __future__ import annotations

import json

import pytest

from engine.errors import BadInputError
from engine.flags import FLAGS
from engine.warm_protocol import (
    JobEnd,
    JobFile,
    Ready,
    end_path,
    job_path,
    key_argv,
    key_differences,
    key_of_argv,
    read_json,
    serve_args,
    write_json_atomic,
)


def test_files_round_trip_and_leave_nothing_else_behind(tmp_path):
    Ready(1.5, 123, 2, {"task": "flf2v-tiny"}, 9.25).write(tmp_path)
    JobFile(1, 7, ["--prompt", "-dark"]).write(tmp_path)
    JobEnd(1, False, "cancelled", True).write(tmp_path)
    assert Ready.read(tmp_path) == Ready(1.5, 123, 2, {"task": "flf2v-tiny"}, 9.25)
    assert JobFile.read(tmp_path, 1) == JobFile(1, 7, ["--prompt", "-dark"])
    assert JobEnd.read(tmp_path, 1) == JobEnd(1, False, "cancelled", True)
    assert json.loads(end_path(tmp_path, 1).read_text()) == {"seq": 1, "ok": False, "class": "cancelled",
                                                              "healthy": True}  # fmt: skip
    assert job_path(tmp_path, 1).name == "000001.json"
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["000001.end.json", "000001.json"]
    assert JobFile.read(tmp_path, 2) is None


def test_a_torn_file_reads_as_absent(tmp_path):
    (tmp_path / "x.json").write_text('{"seq": 1, "ok"')
    assert read_json(tmp_path / "x.json") is None
    write_json_atomic(tmp_path / "x.json", {"seq": 1})
    assert read_json(tmp_path / "x.json") == {"seq": 1}


def test_the_key_is_the_tables_engine_key_flags_plus_world_size_and_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "w.safetensors").write_bytes(b"1234")
    argv = ["--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--prompt", "a", "--size", "64*64", "--device", "cpu"]
    key = key_of_argv(argv, 2)
    assert set(key) == {f.name for f in FLAGS if f.engine_key} | {"world_size", "checkpoint"}
    assert key["offload_model"] is False and key["world_size"] == 2  # resolved as the engine does on 2 ranks
    assert key_of_argv([*argv, "--size", "32*32", "--prompt", "b", "--base_seed", "3"], 2) == key
    assert key_differences(key, key_of_argv([*argv, "--dit_fsdp"], 2)) == ["dit_fsdp: False -> True"]
    assert key_differences(key, key_of_argv(argv, 1)) == ["offload_model: False -> True", "world_size: 2 -> 1"]
    (ckpt / "w.safetensors").write_bytes(b"12345")  # rewritten in place: not the loaded weights any more
    assert [d.split(":")[0] for d in key_differences(key, key_of_argv(argv, 2))] == ["checkpoint"]


def test_key_argv_gives_a_group_command_line_that_has_the_same_key(tmp_path):
    values = {"task": "flf2v-tiny", "ckpt_dir": str(tmp_path), "dit_fsdp": True, "prompt": "not a key flag"}
    flags = key_argv(values)
    assert "--prompt" not in flags and "--dit_fsdp" in flags
    args = serve_args(tmp_path / "g", flags, idle_exit_s=60)
    assert args[:2] == ["--group_dir", str(tmp_path / "g")] and args[-2:] == ["--idle_exit_s", "60"]
    assert key_of_argv(flags, 2) == key_of_argv([*flags, "--prompt", "x"], 2)


def test_arguments_that_do_not_parse_are_bad_input():
    with pytest.raises(BadInputError):
        key_of_argv(["--frame_num", "many"], 1)
