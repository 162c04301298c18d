"""Task configs and the engine's command-line validation (torch-free)."""

from __future__ import annotations

import pytest

from engine.cli_args import apply_defaults, build_parser, validate
from engine.errors import BadInputError
from engine.tasks import FLF2V_NEG_PROMPT, TASKS, frame_num_problem, latent_grid, parse_size, size_problem

SEED_COMMAND = [
    "--task", "flf2v-14B", "--size", "1280*720", "--ckpt_dir", "/ckpt",
    "--first_frame", "a.png", "--last_frame", "b.png", "--prompt", "a bird takes off",
    "--offload_model", "True", "--t5_fsdp", "--dit_fsdp",
]  # fmt: skip


def parse(argv: list[str], world_size: int = 1):
    args = build_parser().parse_args(argv)
    apply_defaults(args, world_size)
    return args


def test_seed_command_parses_with_official_defaults():
    args = parse(SEED_COMMAND, world_size=8)
    validate(args, 8)
    assert (args.sample_steps, args.sample_shift, args.sample_guide_scale) == (50, 16.0, 5.0)
    assert (args.frame_num, args.sample_solver, args.base_seed) == (81, "unipc", -1)
    assert args.offload_model is True and args.t5_fsdp and args.dit_fsdp
    assert args.neg_prompt == FLF2V_NEG_PROMPT


@pytest.mark.parametrize(("world_size", "expected"), [(1, True), (2, False), (8, False)])
def test_offload_default_follows_process_count(world_size, expected):
    argv = [a for a in SEED_COMMAND if a not in ("--offload_model", "True")]
    assert parse(argv, world_size).offload_model is expected


def test_flf2v_neg_prompt_has_both_prefixes():
    assert FLF2V_NEG_PROMPT.startswith("镜头切换，镜头晃动，色调艳丽")


@pytest.mark.parametrize("size", ["1280*720", "720*1280", "832*480", "480*832"])
def test_official_sizes_allowed(size):
    assert size_problem(TASKS["flf2v-14B"], size) is None


@pytest.mark.parametrize("size", ["1024*1024", "640*480", "1280x720x3", "wide"])
def test_other_sizes_rejected_for_14b(size):
    assert size_problem(TASKS["flf2v-14B"], size)


def test_tiny_accepts_multiples_of_16_only():
    tiny = TASKS["flf2v-tiny"]
    assert size_problem(tiny, "96*64") is None
    assert "multiples of 16" in size_problem(tiny, "100*64")


@pytest.mark.parametrize(("n", "ok"), [(81, True), (5, True), (9, True), (1, False), (4, False), (80, False)])
def test_frame_num_rule(n, ok):
    assert (frame_num_problem(n) is None) is ok


def test_parse_size_is_width_by_height():
    assert parse_size("1280*720") == (1280, 720)
    assert parse_size("96x64") == (96, 64)


@pytest.mark.parametrize("size", ["64\n*48", " 64*48", "64 *48", "64*48 ", "٦٤*48", "+64*48", "64**48"])
def test_parse_size_takes_ascii_digits_and_nothing_else(size):
    with pytest.raises(ValueError, match="WIDTH\\*HEIGHT"):
        parse_size(size)


def test_latent_grid_official_rounding():
    # 720p area with a square first frame: sqrt(921600) = 960 -> 960 // 8 // 2 * 2 = 120 latent rows.
    assert latent_grid(TASKS["flf2v-14B"], "1280*720", (1024, 1024)) == (120, 120)
    # Landscape 16:9 frame at 1280*720 keeps the exact 1280x720 (latent 90x160).
    assert latent_grid(TASKS["flf2v-14B"], "1280*720", (720, 1280)) == (90, 160)


BAD = [
    (["--task", "t2v-14B"], "unknown task"),
    (["--size", "1024*1024"], "not supported"),
    (["--frame_num", "80"], "4n+1"),
    (["--frame_num", "1"], "4n+1"),
    (["--sample_steps", "0"], "at least 1"),
    (["--sample_shift", "0"], "sample_shift"),
    (["--sample_shift", "1000"], "sample_shift"),
    (["--sample_guide_scale", "-1"], "sample_guide_scale"),
    (["--sample_guide_scale", "100"], "sample_guide_scale"),
    (["--prompt", "   "], "prompt is empty"),
    (["--sample_solver", "euler"], "sample_solver"),
    (["--ring_size", "2"], "ring attention"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_values_rejected_with_one_line(override, message):
    with pytest.raises(BadInputError) as info:
        validate(parse([*SEED_COMMAND, *override], world_size=8), 8)
    assert message in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("sizes", "world", "ok"),
    [
        (["--ulysses_size", "3"], 8, False),
        (["--ulysses_size", "4"], 8, False),  # two groups of 4 would compute the same video: half the GPUs wasted
        (["--ulysses_size", "2"], 1, False),
        (["--cfg_size", "2"], 4, False),
        (["--cfg_size", "2", "--ulysses_size", "2"], 8, False),
        (["--ulysses_size", "8"], 8, True),
        (["--cfg_size", "2", "--ulysses_size", "4"], 8, True),
        (["--cfg_size", "2"], 2, True),
        ([], 4, True),  # no layout: every rank computes the whole video, the models sharded (as officially)
    ],
)
def test_the_world_size_is_cfg_times_ulysses_times_ring(sizes, world, ok):
    args = parse([*SEED_COMMAND, *sizes], world_size=world)
    if ok:
        validate(args, world)
        return
    with pytest.raises(BadInputError) as info:
        validate(args, world)
    ranks = args.cfg_size * args.ulysses_size
    assert info.value.field == "gpus" and "\n" not in info.value.message
    assert f"needs {ranks} ranks, not {world}: run {ranks} (flf2v --gpus {ranks}" in info.value.message


def test_cfg_size_is_one_or_two():
    with pytest.raises(BadInputError, match="cfg_size"):
        validate(parse([*SEED_COMMAND, "--cfg_size", "4"], world_size=4), 4)


def test_missing_ckpt_dir_is_named():
    argv = [a for a in SEED_COMMAND if a not in ("--ckpt_dir", "/ckpt")]
    with pytest.raises(BadInputError, match="--ckpt_dir is required"):
        validate(parse(argv), 1)


def test_unknown_flag_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--no-such-flag"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
