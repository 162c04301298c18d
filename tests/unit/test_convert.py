"""The official <-> library key maps and config inference, on models built without weights."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers, convert_wan_vae_to_diffusers
from transformers import CLIPVisionModel, UMT5EncoderModel

from engine.convert import clip, dit, t5, vae
from engine.loaders.assign import build_empty
from engine.tasks import TASKS
from engine.tiny import presets as P

TASK = TASKS["flf2v-tiny"]
PRESET = P.PRESETS["tiny"]


def library_shapes(component: str) -> dict[str, tuple[int, ...]]:
    builders = {
        "t5": lambda: UMT5EncoderModel(P.t5_config(PRESET, vocab_size=320)),
        "clip": lambda: CLIPVisionModel(P.clip_config(PRESET, TASK)),
        "dit": lambda: WanTransformer3DModel.from_config(P.transformer_config(PRESET, TASK)),
        "vae": lambda: AutoencoderKLWan.from_config(P.vae_config(PRESET)),
    }
    model = build_empty(builders[component])
    return {k: tuple(t.shape) for k, t in model.state_dict(keep_vars=True).items()}


MAPS = {"t5": t5, "clip": clip, "dit": dit, "vae": vae}


@pytest.mark.parametrize("component", sorted(MAPS))
def test_library_to_official_to_library_round_trip(component):
    maps, shapes = MAPS[component], library_shapes(component)
    state = {k: torch.arange(torch.Size(s).numel(), dtype=torch.float32).reshape(s) + i for i, (k, s) in
             enumerate(shapes.items())}  # fmt: skip
    official = maps.to_official(state)
    back = dict(pair for key, tensor in official.items() for pair in maps.to_library(key, tensor))
    aliases = set(getattr(maps, "TIED", {}))
    assert set(back) == set(state) - aliases
    for key, tensor in back.items():
        assert torch.equal(tensor, state[key]), key
    # names alone agree with the tensor maps
    for key in back:
        name = maps.official_key(key)
        assert name in official and key in maps.library_keys(name)


def test_dit_inverse_agrees_with_diffusers_converter():
    for key in library_shapes("dit"):
        name = dit.official_key(key)
        if name == "img_emb.emb_pos":  # the FLF2V table that diffusers' converter leaves alone
            assert key == "condition_embedder.image_embedder.pos_embed"
            continue
        assert list(convert_wan_transformer_to_diffusers({name: None})) == [key]


def test_vae_inverse_agrees_with_diffusers_converter():
    for key in library_shapes("vae"):
        assert list(convert_wan_vae_to_diffusers({vae.official_key(key): None})) == [key]


def test_official_names_follow_the_official_modules():
    t5_names = set(t5.to_official({k: torch.zeros(1) for k in library_shapes("t5")}))
    assert {"token_embedding.weight", "norm.weight", "blocks.1.pos_embedding.embedding.weight",
            "blocks.0.ffn.gate.0.weight", "blocks.0.ffn.fc1.weight", "blocks.0.attn.o.weight"} <= t5_names  # fmt: skip
    assert not any("embed_tokens" in k for k in t5_names)
    clip_names = set(clip.to_official({k: torch.zeros(3, 1) for k in library_shapes("clip")}))
    assert {"visual.cls_embedding", "visual.pos_embedding", "visual.pre_norm.weight", "visual.post_norm.bias",
            "visual.transformer.2.attn.to_qkv.weight", "visual.transformer.0.mlp.2.bias"} <= clip_names  # fmt: skip
    dit_names = set(dit.to_official({k: torch.zeros(1) for k in library_shapes("dit")}))
    assert {
        "img_emb.emb_pos",
        "img_emb.proj.4.weight",
        "head.modulation",
        "blocks.1.modulation",
        "blocks.0.norm3.weight",
        "blocks.0.cross_attn.norm_k_img.weight",
        "time_projection.1.bias",
    } <= dit_names
    assert not any(".norm2." in k for k in dit_names)  # WanModel's norm2 has no weights
    vae_names = set(vae.to_official({k: torch.zeros(1) for k in library_shapes("vae")}))
    assert {"conv1.weight", "conv2.bias", "encoder.downsamples.5.time_conv.weight", "decoder.middle.1.to_qkv.weight",
            "decoder.upsamples.4.shortcut.weight", "decoder.upsamples.11.resample.1.weight"} <= vae_names  # fmt: skip


def test_clip_splits_the_fused_projection_in_q_k_v_order():
    fused = torch.arange(6 * 2, dtype=torch.float32).reshape(6, 2)
    pairs = dict(clip.to_library("visual.transformer.3.attn.to_qkv.weight", fused))
    assert list(pairs) == [f"encoder.layers.3.self_attn.{p}_proj.weight" for p in "qkv"]
    assert torch.equal(pairs["encoder.layers.3.self_attn.k_proj.weight"], fused[2:4])
    assert clip.library_keys("textual.blocks.0.attn.q.weight") == ()
    assert clip.library_keys("visual.head") == clip.library_keys("log_scale") == ()


def test_unknown_official_keys_pass_through_for_strict_loading_to_report():
    assert t5.library_keys("blocks.0.surprise") == ("blocks.0.surprise",)
    assert clip.library_keys("visual.surprise") == ("visual.surprise",)


# ---- config inference, from the real 14B model's shapes (no weights needed) ---------------------------


def test_t5_config_of_umt5_xxl():
    shapes = {"token_embedding.weight": (256384, 4096), "norm.weight": (4096,)}
    for i in range(24):
        shapes |= {f"blocks.{i}.attn.q.weight": (4096, 4096), f"blocks.{i}.ffn.fc1.weight": (10240, 4096),
                   f"blocks.{i}.pos_embedding.embedding.weight": (32, 64)}  # fmt: skip
    cfg = t5.config_from_shapes(shapes)
    assert (cfg.vocab_size, cfg.d_model, cfg.d_kv, cfg.d_ff, cfg.num_heads, cfg.num_layers) == (
        256384, 4096, 64, 10240, 64, 24)  # fmt: skip
    assert cfg.relative_attention_num_buckets == 32 and cfg.relative_attention_max_distance == 128
    assert cfg.dense_act_fn == "gelu_new" and cfg.is_gated_act  # tanh GELU, as Wan's T5 GELU


def test_clip_config_of_vit_h_14():
    shapes = {"visual.patch_embedding.weight": (1280, 3, 14, 14), "visual.pos_embedding": (1, 257, 1280),
              "visual.head": (1280, 1024)}  # fmt: skip
    shapes |= {f"visual.transformer.{i}.mlp.0.weight": (5120, 1280) for i in range(32)}
    cfg = clip.config_from_shapes(shapes, TASKS["flf2v-14B"].clip_vision.num_heads)
    assert (cfg.hidden_size, cfg.image_size, cfg.patch_size, cfg.num_hidden_layers) == (1280, 224, 14, 32)
    assert (cfg.intermediate_size, cfg.num_attention_heads, cfg.projection_dim) == (5120, 16, 1024)
    assert cfg.hidden_act == "gelu" and cfg.layer_norm_eps == 1e-5


def test_dit_config_of_flf2v_14b():
    official = {"_class_name": "WanModel", "dim": 5120, "eps": 1e-06, "ffn_dim": 13824, "freq_dim": 256,
                "in_dim": 36, "model_type": "flf2v", "num_heads": 40, "num_layers": 40, "out_dim": 16,
                "text_len": 512}  # fmt: skip
    shapes = {"patch_embedding.weight": (5120, 36, 1, 2, 2), "text_embedding.0.weight": (5120, 4096),
              "img_emb.proj.0.weight": (1280,), "img_emb.emb_pos": (1, 514, 1280)}  # fmt: skip
    cfg = dit.config_from_official(official, shapes)
    assert cfg == {
        "patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 36,
        "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-06, "image_dim": 1280,
        "added_kv_proj_dim": 5120, "rope_max_seq_len": 1024, "pos_embed_seq_len": 514,
    }  # fmt: skip
    assert dit.official_config(cfg) == official


@pytest.mark.parametrize(
    ("change", "message"),
    [({"model_type": "i2v"}, "model_type"), ({"text_len": 256}, "text_len"), ({"dim": None}, "dim")],
)
def test_dit_config_rejects_other_models(change, message):
    official = {"dim": 64, "eps": 1e-6, "ffn_dim": 128, "freq_dim": 256, "in_dim": 36, "model_type": "flf2v",
                "num_heads": 4, "num_layers": 2, "out_dim": 16, **change}  # fmt: skip
    official = {k: v for k, v in official.items() if v is not None}
    shapes = {"patch_embedding.weight": (64, 36, 1, 2, 2), "text_embedding.0.weight": (64, 32),
              "img_emb.proj.0.weight": (32,), "img_emb.emb_pos": (1, 10, 32)}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        dit.config_from_official(official, shapes)


def test_vae_config_of_wan21_vae():
    cfg = vae.config_from_shapes({"encoder.conv1.weight": (96, 3, 3, 3, 3), "conv2.weight": (16, 16, 1, 1, 1)})
    model = build_empty(lambda: AutoencoderKLWan.from_config(cfg))
    assert model.config.base_dim == 96 and model.config.z_dim == 16
    assert list(model.config.dim_mult) == [1, 2, 4, 4] and list(model.config.temperal_downsample) == [False, True, True]
    official_mean = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]  # fmt: skip
    official_std = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]  # fmt: skip
    assert list(model.config.latents_mean) == official_mean and list(model.config.latents_std) == official_std
