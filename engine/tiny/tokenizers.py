"""Small Unigram tokenizers built offline, saved as transformers tokenizers (tokenizer.json + config).

The T5 one follows umt5's conventions: `<pad>`=0, `</s>`=1 appended to every text, `<unk>`=2, a Metaspace
('▁') pre-tokenizer. The pieces are ASCII characters, some English words and the characters of the default
negative prompt; any other character (most of Chinese, emoji) becomes `<unk>`.
"""

from __future__ import annotations

import string
from pathlib import Path

from transformers import T5Tokenizer, XLMRobertaTokenizer

from engine.tasks import FLF2V_NEG_PROMPT

# fmt: off
_WORDS = [
    "a", "an", "the", "of", "and", "in", "on", "at", "to", "with", "from", "over", "under", "into", "is", "are",
    "was", "be", "it", "its", "this", "that", "by", "for", "as",
    "bird", "small", "blue", "red", "green", "white", "black", "sky", "cloud", "sun", "light", "dark", "tree",
    "water", "sea", "river", "city", "street", "road", "car",
    "man", "woman", "girl", "boy", "dog", "cat", "face", "hand", "eye", "hair", "smile", "walk", "run", "fly",
    "flies", "takes", "off", "up", "down", "slowly", "fast",
    "camera", "zoom", "pan", "close", "wide", "shot", "view", "scene", "video", "frame", "first", "last", "motion",
    "moves", "turns", "looks",
]
# fmt: on


def _pieces() -> list[tuple[str, float]]:
    """Unigram pieces with log-probabilities: whole words beat spelling them out."""
    pieces: list[tuple[str, float]] = [("▁", -2.0)]
    pieces += [(f"▁{w}", -4.0) for w in _WORDS]
    pieces += [(c, -8.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [(f"▁{c}", -7.0) for c in string.ascii_lowercase]
    seen: set[str] = set()
    for c in FLF2V_NEG_PROMPT:
        if c not in seen and not c.isascii():
            seen.add(c)
            pieces.append((c, -9.0))
    return pieces


def t5_tokenizer() -> T5Tokenizer:
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *_pieces()]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def xlm_roberta_tokenizer() -> XLMRobertaTokenizer:
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *_pieces(), ("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=vocab)


def write_tokenizer(tokenizer: T5Tokenizer | XLMRobertaTokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
