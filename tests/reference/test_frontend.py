"""The audio front end (decode, resample, log-mel, chunk token counts) against the PyTorch reference
in frontend.py, on every recording of ../shared/data/manifest.jsonl, on synthetic signals at many
rates and channel counts, and on lossy re-encodings made with the ffmpeg CLI.

Tolerances (float32 arithmetic):
- PCM: both sides run the same float32 kernel (float64-built, float32-stored); a float32 dot product
  of the ~33 non-negligible taps with |x| <= 1 and sum|w| ~ 1 rounds to within ~33 * 6e-8 = 2e-6;
  we allow 1e-5 (measured: <= 3e-7).
- log-mel: torch.stft in float32 is itself off from a float64 evaluation of the same recipe by up to
  ~3e-5 (measured on these files); our STFT runs in float64, so we require <= 1e-4 against the float32
  reference and <= 2e-5 against its float64 evaluation (the rest is the float32 window/filter tables
  and output rounding; measured <= 6e-6).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
import torchaudio

sys.path.insert(0, os.path.dirname(__file__))
import frontend as ref  # noqa: E402

BIN = os.environ.get("STEPAUDIO_BIN", "build/bin/stepaudio")
DATA = os.environ.get("STEPAUDIO_SHARED_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))
MANIFEST = os.path.join(DATA, "manifest.jsonl")
PCM_TOL = 1e-5
MEL_TOL_F32 = 1e-4
MEL_TOL_F64 = 2e-5


def manifest():
    if not os.path.exists(MANIFEST):
        return []
    with open(MANIFEST) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_mel(path, tmp, *extra):
    out = subprocess.run([BIN, "mel", "--audio", path, "--out", os.path.join(tmp, "m.npy"),
                          "--pcm-out", os.path.join(tmp, "pcm.npy"), *extra],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    chunks = [json.loads(line) for line in out.stdout.splitlines()]
    return np.load(os.path.join(tmp, "pcm.npy")), chunks


def log_mel_f64(pcm):
    """The reference recipe evaluated in float64 (to separate torch's float32 error from ours)."""
    x = torch.nn.functional.pad(torch.from_numpy(pcm).double(), (0, ref.RIGHT_PADDING))
    st = torch.stft(x, ref.N_FFT, ref.HOP, window=torch.hann_window(ref.N_FFT, dtype=torch.float64),
                    return_complex=True)
    mel = ref.mel_filters().double() @ (st[..., :-1].abs() ** 2)
    ls = torch.clamp(mel, min=1e-10).log10()
    ls = torch.maximum(ls, ls.max() - 8.0)
    return ((ls + 4.0) / 4.0).numpy()


def check_against_reference(path, channel="first"):
    with tempfile.TemporaryDirectory() as tmp:
        pcm, chunks = run_mel(path, tmp, "--channel", channel)
        expected = ref.load_16k(path, channel).numpy()
        assert pcm.shape == expected.shape, f"{path}: {pcm.shape} vs {expected.shape} samples"
        assert np.abs(pcm - expected).max() <= PCM_TOL, f"{path}: PCM off by {np.abs(pcm - expected).max()}"
        assert chunks[0]["start"] == 0 and abs(chunks[-1]["end"] - len(pcm) / 16000) < 1e-9
        for c in chunks:
            b, e = round(c["start"] * 16000), round(c["end"] * 16000)
            assert e - b <= 25 * 16000
            ours = np.load(c["path"])
            seg = torch.from_numpy(pcm[b:e].copy())
            r32 = ref.log_mel(seg).numpy()
            assert ours.shape == r32.shape == (128, (e - b + 479) // 160)
            assert c["audio_patch_tokens"] == ref.audio_patch_tokens(ours.shape[1])
            d32 = np.abs(ours - r32).max()
            d64 = np.abs(ours - log_mel_f64(pcm[b:e].copy())).max()
            assert d32 <= MEL_TOL_F32 and d64 <= MEL_TOL_F64, f"{path} chunk {c['chunk']}: {d32} {d64}"
        return pcm, chunks


ENTRIES = manifest()


@pytest.mark.skipif(not ENTRIES, reason="../shared/data is absent: real-audio checks skipped")
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["path"].split("/")[-1] for e in ENTRIES])
def test_manifest_file_matches_reference(entry):
    path = os.path.join(DATA, entry["path"])
    pcm, _ = check_against_reference(path)
    assert abs(len(pcm) / 16000 - entry["duration_s"]) < 0.01
    if "n_samples_16k" in entry:
        assert len(pcm) == entry["n_samples_16k"]
    if "expected_audio_patch_tokens_per_25s_chunk" in entry:
        # The official fixed 25 s split must give the manifest's token counts.
        with tempfile.TemporaryDirectory() as tmp:
            _, chunks = run_mel(path, tmp, "--chunking", "fixed")
        assert [c["audio_patch_tokens"] for c in chunks] == entry["expected_audio_patch_tokens_per_25s_chunk"]


@pytest.mark.skipif(not ENTRIES, reason="../shared/data is absent")
def test_stereo_mix_matches_reference():
    stereo = [e for e in ENTRIES if e["channels"] > 1]
    assert stereo, "the manifest has stereo files"
    for e in stereo[:2]:
        check_against_reference(os.path.join(DATA, e["path"]), channel="mix")


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000])
def test_synthetic_signal_at_rate(rate, tmp_path):
    # A chirp + noise + a silent gap, 3 channels that differ, written as float32 WAV.
    rng = np.random.default_rng(rate)
    n = int(rate * 2.7)
    t = np.arange(n) / rate
    base = 0.5 * np.sin(2 * np.pi * (100 + 1500 * t) * t) + 0.05 * rng.standard_normal(n)
    base[n // 3: n // 2] = 0
    wav = np.stack([base, 0.3 * rng.standard_normal(n), -base]).astype(np.float32)
    path = str(tmp_path / f"synthetic_{rate}.wav")
    torchaudio.save(path, torch.from_numpy(wav), rate, encoding="PCM_F", bits_per_sample=32)
    check_against_reference(path, "first")
    check_against_reference(path, "mix")


LOSSY = [("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]), ("m4a", ["-c:a", "aac", "-b:a", "128k"]),
         ("opus", ["-c:a", "libopus", "-b:a", "64k"]), ("webm", ["-c:a", "libopus", "-b:a", "64k"]),
         ("caf", ["-c:a", "alac"]), ("ogg", ["-c:a", "libvorbis", "-q:a", "5"]),
         ("mp4", ["-f", "lavfi", "-i", "color=c=black:s=32x32:r=5", "-shortest", "-map", "1:v", "-map", "0:a",
                  "-c:v", "mpeg4", "-c:a", "aac", "-b:a", "128k"])]  # a video with an audio track


@pytest.mark.skipif(not ENTRIES or not shutil.which("ffmpeg"), reason="needs ../shared/data and ffmpeg")
@pytest.mark.parametrize("ext,codec", LOSSY, ids=[x[0] for x in LOSSY])
def test_lossy_copies_decode_close_to_original(ext, codec, tmp_path):
    """Containers iOS/browsers produce. Lossy codecs change the waveform, so the check is loose:
    the same duration within 30 ms (encoder priming/padding is trimmed by the container's edit
    lists; what is left is at most one codec frame), and a mel whose mean absolute difference from
    the original's is < 0.05 on the (x+4)/4 scale over the common frames (measured: <= 0.028)."""
    originals = [e for e in ENTRIES if e["path"].endswith(("jfk.flac", "aishell_BAC009S0724W0121.wav",
                                                             "chuan_F22_happy_20007.wav"))]
    assert originals
    for e in originals:
        src = os.path.join(DATA, e["path"])
        dst = str(tmp_path / f"copy.{ext}")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src, *codec, dst], check=True)
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            pcm_o, chunks_o = run_mel(src, a)
            pcm_c, chunks_c = run_mel(dst, b)
            assert abs(len(pcm_c) - len(pcm_o)) / 16000 <= 0.03, f"{ext}: {len(pcm_c)} vs {len(pcm_o)}"
            mo, mc = np.load(chunks_o[0]["path"]), np.load(chunks_c[0]["path"])
            t = min(mo.shape[1], mc.shape[1])
            diff = np.abs(mo[:, :t] - mc[:, :t]).mean()
            print(f"{ext} {e['path']}: {len(pcm_c) - len(pcm_o)} samples, mel diff {diff:.4f}")
            assert diff < 0.05, f"{ext}: mean mel difference {diff}"
