"""Hostile and broken recordings through the CLI: a typed one-line error, a non-zero exit, no hang.

Files that need a real encoder (a video-only container, a decompression bomb: a tiny file holding
hours of audio) are made with the ffmpeg CLI installed by scripts/setup."""
import os
import shutil
import subprocess
import time

import pytest

BIN = os.environ.get("STEPAUDIO_BIN", "build/bin/stepaudio")
needs_ffmpeg = pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs the ffmpeg CLI")


def mel(path, tmp_path, *extra, timeout=120):
    start = time.monotonic()
    out = subprocess.run([BIN, "mel", "--audio", str(path), "--out", str(tmp_path / "m.npy"), *extra],
                         capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - start


def expect_error(out, code):
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"[{code}]" in lines[0], lines[0]


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True, timeout=120)


@needs_ffmpeg
def test_container_without_audio(tmp_path):
    path = tmp_path / "video_only.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=32x32:d=1", "-c:v", "mpeg4", str(path))
    out, _ = mel(path, tmp_path)
    expect_error(out, "bad_audio")
    assert "no audio stream" in out.stderr


@needs_ffmpeg
def test_decompression_bomb_stops_at_the_limit(tmp_path):
    # 3 hours of silence as FLAC: ~2 MB claiming 10,800 s. With --max-seconds 60 decoding must stop
    # after ~60 s of audio (fast, small memory) with too_long.
    path = tmp_path / "bomb.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "10800", "-c:a", "flac", str(path))
    assert path.stat().st_size < 5_000_000
    out, seconds = mel(path, tmp_path, "--max-seconds", "60")
    expect_error(out, "too_long")
    assert seconds < 10, f"took {seconds:.1f} s: decoding did not stop at the limit"


def test_text_file_and_empty_file(tmp_path):
    text = tmp_path / "notes.m4a"
    text.write_text("this is not a recording\n" * 20)
    expect_error(mel(text, tmp_path)[0], "unsupported_media")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out, _ = mel(empty, tmp_path)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1


def test_missing_file(tmp_path):
    expect_error(mel(tmp_path / "nope.wav", tmp_path)[0], "io_error")


@needs_ffmpeg
def test_truncated_mp3_keeps_what_decoded(tmp_path):
    src = tmp_path / "tone.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=5", "-c:a", "libmp3lame", str(src))
    data = src.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    out, _ = mel(cut, tmp_path)
    assert out.returncode == 0, out.stderr
    assert '"frames"' in out.stdout
