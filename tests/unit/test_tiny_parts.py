"""Pieces of the tiny checkpoint writer and of the loaders that need no checkpoint on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

from engine.loaders.assign import diffusers_keep_fp32, keep_fp32_by_name, transformers_keep_fp32
from engine.tasks import TASKS
from engine.tiny.tokenizers import t5_tokenizer, write_tokenizer, xlm_roberta_tokenizer
from engine.tiny.weights import seeded_tensor

REPO = Path(__file__).resolve().parents[2]


def _encode(tokenizer, texts):
    return tokenizer(texts, padding="max_length", max_length=512, truncation=True, add_special_tokens=True,
                     return_attention_mask=True, return_tensors="pt")  # fmt: skip


def test_tiny_package_top_level_is_torch_free():
    code = "import sys, engine.tiny; assert 'torch' not in sys.modules; print(engine.tiny.MARKER, engine.tiny.FORMAT)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_t5_tokenizer_saved_and_reloaded_pads_to_512_with_t5_ids(tmp_path):
    write_tokenizer(t5_tokenizer(), tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"), local_files_only=True)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    batch = _encode(tok, ["a small blue bird takes off", TASKS["flf2v-14B"].neg_prompt, "🐦 ünïcödé ½", "x" * 2000])
    assert batch.input_ids.shape == batch.attention_mask.shape == (4, 512)
    lengths = batch.attention_mask.sum(1).tolist()
    assert 1 < lengths[0] < 20 and lengths[1] > 50 and lengths[3] == 512
    for row, n in zip(batch.input_ids, lengths, strict=True):
        assert row[n - 1] == 1 and (row[n:] == 0).all()  # </s> closes every text, then padding
    assert 2 in batch.input_ids[2].tolist()  # characters it does not know become <unk>
    # whole words are single pieces, so the ids depend on the words
    assert _encode(tok, ["a bird"]).input_ids[0, :3].tolist() != _encode(tok, ["a dog"]).input_ids[0, :3].tolist()


def test_xlm_roberta_tokenizer_uses_its_own_special_ids(tmp_path):
    write_tokenizer(xlm_roberta_tokenizer(), tmp_path / "xlm")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "xlm"), local_files_only=True)
    ids = tok("a bird")["input_ids"]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert ids[0] == 0 and ids[-1] == 2


def test_seeded_tensors_depend_on_seed_and_name_only():
    a = seeded_tensor(0, "transformer", "blocks.0.attn1.to_q.weight", (8, 8))
    assert torch.equal(a, seeded_tensor(0, "transformer", "blocks.0.attn1.to_q.weight", (8, 8)))
    assert not torch.equal(a, seeded_tensor(1, "transformer", "blocks.0.attn1.to_q.weight", (8, 8)))
    assert not torch.equal(a, seeded_tensor(0, "transformer", "blocks.0.attn1.to_k.weight", (8, 8)))
    norm = seeded_tensor(0, "transformer", "blocks.0.norm2.weight", (64,))
    assert (norm - 1).abs().max() < 0.6 and not torch.equal(norm, torch.ones(64))


def test_keep_fp32_rules_follow_the_libraries():
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel

    rule = keep_fp32_by_name(["norm2", "scale_shift_table"])
    assert rule("blocks.0.norm2.weight") and rule("scale_shift_table") and not rule("blocks.0.norm2x.weight")
    dit_rule = diffusers_keep_fp32(WanTransformer3DModel)
    assert dit_rule("condition_embedder.time_embedder.linear_1.weight") and dit_rule("blocks.3.scale_shift_table")
    assert not dit_rule("blocks.3.attn1.to_q.weight")
    # transformers keeps UMT5's `wo` in float32 under float16 only
    assert transformers_keep_fp32(UMT5EncoderModel, torch.float16)("encoder.block.0.layer.1.DenseReluDense.wo.weight")
    assert not transformers_keep_fp32(UMT5EncoderModel, torch.bfloat16)(
        "encoder.block.0.layer.1.DenseReluDense.wo.weight"
    )
