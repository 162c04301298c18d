"""Both layouts of the tiny checkpoint, written to disk and loaded back through the engine's loaders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import loaders
from engine.checks import check_checkpoint
from engine.errors import BadInputError
from engine.tasks import TASKS
from engine.tiny import MARKER, write_tiny_checkpoint
from engine.tiny.layouts import _save_safetensors

TASK = TASKS["flf2v-tiny"]
COMPONENTS = ("text_encoder", "image_encoder", "vae", "transformer")
REPO = Path(__file__).resolve().parents[2]


def load(ckpt: Path, component: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    return loaders.load(loaders.COMPONENTS[component], check_checkpoint(ckpt, TASK), TASK, dtype, "cpu")


def assert_same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    assert ba.keys() == bb.keys() and all(torch.equal(ba[k], bb[k]) for k in ba)


@pytest.mark.parametrize("component", COMPONENTS)
def test_both_layouts_give_bit_identical_models(tiny_official_ckpt, tiny_diffusers_ckpt, component):
    official = load(tiny_official_ckpt, component)
    diffusers_layout = load(tiny_diffusers_ckpt, component)
    assert_same_model(official, diffusers_layout)
    assert not official.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in official.parameters())
    assert all(not p.is_meta for p in official.parameters())


def test_tied_t5_embedding_is_one_parameter(tiny_official_ckpt):
    model = load(tiny_official_ckpt, "text_encoder")
    assert model.encoder.embed_tokens.weight is model.shared.weight


@pytest.mark.parametrize(
    ("component", "dtype", "library"),
    [
        ("transformer", torch.bfloat16, "diffusers.WanTransformer3DModel"),
        ("vae", torch.float32, "diffusers.AutoencoderKLWan"),
        ("text_encoder", torch.bfloat16, "transformers.UMT5EncoderModel"),
        ("image_encoder", torch.float16, "transformers.CLIPVisionModel"),
    ],
)
def test_half_precision_matches_the_libraries_own_loading(tiny_diffusers_ckpt, component, dtype, library):
    """Our streaming loader and from_pretrained agree on every value and dtype (incl. float32-kept modules)."""
    module, name = library.split(".")
    cls = getattr(__import__(module), name)
    kwargs = {"torch_dtype": dtype} if module == "diffusers" else {"dtype": dtype}
    theirs = cls.from_pretrained(tiny_diffusers_ckpt / component, local_files_only=True, **kwargs)
    ours = load(tiny_diffusers_ckpt, component, dtype)
    assert_same_model(ours, theirs)
    if component == "transformer":
        dtypes = {k: v.dtype for k, v in ours.state_dict().items()}
        assert dtypes["blocks.0.scale_shift_table"] == dtypes["blocks.0.norm2.weight"] == torch.float32
        assert dtypes["condition_embedder.time_embedder.linear_1.weight"] == torch.float32
        assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16


def test_tokenizer_from_both_layouts(tiny_official_ckpt, tiny_diffusers_ckpt):
    texts = ["a small blue bird takes off", TASK.neg_prompt]
    batches = []
    for ckpt in (tiny_official_ckpt, tiny_diffusers_ckpt):
        tok = loaders.load_tokenizer(check_checkpoint(ckpt, TASK), TASK)
        batches.append(tok(texts, padding="max_length", max_length=512, truncation=True, add_special_tokens=True,
                           return_attention_mask=True, return_tensors="pt"))  # fmt: skip
    assert batches[0].input_ids.shape == (2, 512)
    assert torch.equal(batches[0].input_ids, batches[1].input_ids)
    vocab = load(tiny_official_ckpt, "text_encoder").config.vocab_size
    assert int(batches[0].input_ids.max()) < vocab


def test_models_run_on_the_tiny_shapes(tiny_official_ckpt):
    with torch.no_grad():
        clip = load(tiny_official_ckpt, "image_encoder")
        feats = clip(pixel_values=torch.randn(2, 3, 28, 28), output_hidden_states=True).hidden_states[-2]
        assert feats.shape == (2, 5, 32)
        dit = load(tiny_official_ckpt, "transformer")
        out = dit(torch.randn(1, 36, 3, 8, 8), torch.tensor([500.0]), torch.randn(1, 512, 32),
                  encoder_hidden_states_image=feats, return_dict=False)[0]  # fmt: skip
        assert out.shape == (1, 16, 3, 8, 8) and torch.isfinite(out).all()
        vae = load(tiny_official_ckpt, "vae")
        latent = vae.encode(torch.rand(1, 3, 9, 64, 64) * 2 - 1).latent_dist.mode()
        assert latent.shape == (1, 16, 3, 8, 8)
        assert vae.decode(latent, return_dict=False)[0].shape == (1, 3, 9, 64, 64)


def test_diffusers_layout_loads_as_a_diffusers_pipeline(tiny_diffusers_ckpt):
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(tiny_diffusers_ckpt, local_files_only=True)
    assert pipe.transformer.config.pos_embed_seq_len == 10
    assert pipe.scheduler.config.use_flow_sigmas and pipe.scheduler.config.flow_shift == TASK.sample_shift


def test_sharded_transformer_loads_through_its_index(tiny_official_ckpt, tmp_path):
    ckpt = shutil.copytree(tiny_official_ckpt, tmp_path / "ckpt")
    single = ckpt / "diffusion_pytorch_model.safetensors"
    _save_safetensors(load_file(single), ckpt, "diffusion_pytorch_model", shard_bytes=200_000)
    single.unlink()
    layout = check_checkpoint(ckpt, TASK)
    assert len(layout.files["transformer"]) > 3  # config, index, shards
    sharded = loaders.load(loaders.TRANSFORMER, layout, TASK, torch.float32, "cpu")
    assert_same_model(sharded, load(tiny_official_ckpt, "transformer"))


# ---- damaged checkpoints ------------------------------------------------------------------------------


@pytest.fixture
def official_copy(tiny_official_ckpt, tmp_path) -> Path:
    return shutil.copytree(tiny_official_ckpt, tmp_path / "official")


@pytest.fixture
def diffusers_copy(tiny_diffusers_ckpt, tmp_path) -> Path:
    return shutil.copytree(tiny_diffusers_ckpt, tmp_path / "diffusers")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("relative", "component"),
    [
        ("diffusion_pytorch_model.safetensors", "transformer"),
        ("Wan2.1_VAE.pth", "vae"),
        ("models_t5_umt5-xxl-enc-bf16.pth", "text_encoder"),
        ("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "image_encoder"),
    ],
)
def test_truncated_official_file_is_named(official_copy, relative, component):
    truncate(official_copy / relative)
    with pytest.raises(BadInputError, match=relative.replace(".", r"\.")) as info:
        load(official_copy, component)
    assert info.value.failure_class == "user_input"


def test_truncated_diffusers_file_is_named(diffusers_copy):
    truncate(diffusers_copy / "text_encoder" / "model.safetensors")
    with pytest.raises(BadInputError, match=r"text_encoder/model\.safetensors"):
        load(diffusers_copy, "text_encoder")


def test_missing_and_unexpected_keys_are_named(official_copy):
    path = official_copy / TASK.vae_checkpoint
    state = torch.load(path, weights_only=True)
    del state["decoder.head.2.weight"]
    state["decoder.surprise"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(BadInputError, match=r"missing.*decoder\.conv_out\.weight.*unexpected.*decoder\.surprise"):
        load(official_copy, "vae")


def test_keys_the_library_ignores_are_ignored(diffusers_copy, official_copy):
    # Some diffusers Wan checkpoints carry `norm_added_q`, which WanTransformer3DModel lists as ignorable.
    path = diffusers_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    save_file({**state, "blocks.0.attn2.norm_added_q.weight": torch.ones(64)}, path)
    assert_same_model(load(diffusers_copy, "transformer"), load(official_copy, "transformer"))


def test_wrong_shape_is_named(official_copy):
    path = official_copy / TASK.t5_checkpoint
    state = torch.load(path, weights_only=True)
    state["blocks.1.attn.o.weight"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(BadInputError, match=r"encoder\.block\.1\.layer\.0\.SelfAttention\.o\.weight.*\(3, 3\)"):
        load(official_copy, "text_encoder")


def test_other_wan_model_is_refused_by_its_config(official_copy):
    config = json.loads((official_copy / "config.json").read_text())
    (official_copy / "config.json").write_text(json.dumps({**config, "model_type": "i2v"}))
    with pytest.raises(BadInputError, match=r"config\.json.*model_type 'i2v'"):
        load(official_copy, "transformer")


# ---- the layout check before loading ------------------------------------------------------------------


def test_check_checkpoint_accepts_both_layouts(tiny_official_ckpt, tiny_diffusers_ckpt):
    assert check_checkpoint(tiny_official_ckpt, TASK).kind == "official"
    assert check_checkpoint(tiny_diffusers_ckpt, TASK).kind == "diffusers"


def test_check_checkpoint_names_a_deleted_file(official_copy, diffusers_copy):
    (official_copy / TASK.clip_checkpoint).unlink()
    with pytest.raises(BadInputError, match=f"{TASK.clip_checkpoint} \\(missing\\)"):
        check_checkpoint(official_copy, TASK)
    (diffusers_copy / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(BadInputError, match=r"vae/diffusion_pytorch_model\.safetensors \(missing\)"):
        check_checkpoint(diffusers_copy, TASK)


def test_check_checkpoint_names_every_bad_file(diffusers_copy):
    """Not the first few and a count: all of them, relative to the checkpoint folder, with the problem."""
    gone = [f"{component}/{name}" for component in ("transformer", "vae", "text_encoder", "image_encoder")
            for name in ("config.json", "model.safetensors" if "encoder" in component
                         else "diffusion_pytorch_model.safetensors")]  # fmt: skip
    for name in gone:
        (diffusers_copy / name).unlink()
    (diffusers_copy / "tokenizer" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(BadInputError) as info:
        check_checkpoint(diffusers_copy, TASK)
    message = info.value.message
    assert f"checkpoint {diffusers_copy} is incomplete (9 files): " in message
    for name in gone:
        assert f" {name} (missing)" in message, name
    assert "tokenizer/tokenizer_config.json (unreadable (JSONDecodeError))" in message
    assert "more" not in message and str(diffusers_copy / "vae") not in message  # relative paths


# ---- the writer ---------------------------------------------------------------------------------------


def test_writer_is_idempotent_and_seeded(tiny_official_ckpt, tmp_path):
    before = (tiny_official_ckpt / MARKER).stat().st_mtime_ns
    assert write_tiny_checkpoint(tiny_official_ckpt) == tiny_official_ckpt
    assert (tiny_official_ckpt / MARKER).stat().st_mtime_ns == before  # found, not rewritten

    other = write_tiny_checkpoint(tmp_path / "seed1", seed=1)
    assert not torch.equal(*(load_file(p / "diffusion_pytorch_model.safetensors")["blocks.0.self_attn.q.weight"]
                             for p in (tiny_official_ckpt, other)))  # fmt: skip
    # a different seed in the same folder replaces that checkpoint
    again = write_tiny_checkpoint(other, seed=0)
    assert json.loads((again / MARKER).read_text())["seed"] == 0
    assert torch.equal(*(load_file(p / "diffusion_pytorch_model.safetensors")["blocks.0.self_attn.q.weight"]
                         for p in (tiny_official_ckpt, again)))  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_writer_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_tiny_checkpoint(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_command_line_writes_a_diffusers_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "engine.tiny", str(tmp_path / "c"), "--layout", "diffusers",
                           "--seed", "3"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "c")
    assert check_checkpoint(tmp_path / "c", TASK).kind == "diffusers"
