"""Which player `flf2v videos open` and the catalogue's `o` key use: none without a display (over plain SSH the
path is printed instead), the first known player on PATH with one."""

from __future__ import annotations

import sys

import pytest

from flf2v_tui.catalogue.player import player_command

pytestmark = pytest.mark.skipif(sys.platform == "darwin", reason="macOS always has `open`")


@pytest.fixture
def fake_mpv(tmp_path, monkeypatch):
    """A PATH holding only an executable `mpv` (so no xdg-open or vlc of the machine is found first)."""
    mpv = tmp_path / "mpv"
    mpv.write_text("#!/bin/sh\nexit 0\n")
    mpv.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    return mpv


def test_no_display_means_no_player_even_when_one_is_installed(fake_mpv, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert player_command("/videos/a.mp4") is None


@pytest.mark.parametrize("variable", ["DISPLAY", "WAYLAND_DISPLAY"])
def test_a_display_and_a_player_on_path_give_its_command(fake_mpv, monkeypatch, variable):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv(variable, ":0" if variable == "DISPLAY" else "wayland-0")
    assert player_command("/videos/a b.mp4") == [str(fake_mpv), "/videos/a b.mp4"]  # one argument, no shell


def test_a_display_without_any_player_gives_none(tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert player_command("/videos/a.mp4") is None
