"""The two ways out to a terminal: JSON that escapes every control character and reads back exactly, and inert
text for a person (messages, errors, tracebacks)."""

from __future__ import annotations

import json
import re

from flf2v_tui.cli import _inert_traceback
from flf2v_tui.term import echo, json_text

# What a terminal acts on (C0 but newline and tab, DEL, C1), and lone surrogates (no UTF-8 stream writes them).
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
HOSTILE = "a\x1b[2Jb\x1b]0;title\x07c\x9b31md\x9d8;;x\x9ce\x85f\x7fg\x08\rh\ti\nj"


def test_json_escapes_every_control_and_reads_back_every_code_point():
    # Low surrogates included: they stand for a file name's undecodable bytes. A high one is left out, as no
    # decoding makes one, and followed by a low one it would read back (from any JSON) as one character.
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xDC00)
    value = {every: [every, {"k": every}], "n": 1.5, "none": None}
    for indent in (None, 2):
        text = json_text(value, indent=indent)
        assert not UNSAFE.search(text)
        assert json.loads(text) == value


def test_json_keeps_readable_text_readable():
    text = json_text({"prompt": f"héron 鳥 {HOSTILE}"})
    assert "héron 鳥 a\\u001b[2Jb" in text and "\\u009b31md" in text and "\\u0085f\\u007fg" in text
    assert json.loads(text) == {"prompt": f"héron 鳥 {HOSTILE}"}


def test_echo_is_inert_and_keeps_lines_and_tabs(capsys):
    echo(f"job 3: {HOSTILE} \udcff", err=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "job 3: abcdefgh\ti\nj \ufffd\n"


def test_a_traceback_is_inert(capsys):
    try:
        raise RuntimeError(f"bad path {HOSTILE}")
    except RuntimeError as exc:
        _inert_traceback(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "RuntimeError: bad path abcdefgh\ti\nj" in err
    assert not UNSAFE.search(err)
