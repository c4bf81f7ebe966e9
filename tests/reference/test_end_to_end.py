"""Real recordings end to end: `stepaudio run --audio` (our front end, tokenizer, prompt, engine)
against the PyTorch references (frontend.py for decode/resample/log-mel, model.py for the model),
stage by stage, on a tiny random checkpoint with the real Qwen2 vocabulary.

Recordings: a short 16 kHz mono file, a 27 s 24 kHz file (two 25 s chunks), and a 48 kHz stereo
FLAC made from jfk.flac with the ffmpeg CLI (lossless, so the reference reads the same samples).
`--chunking fixed` gives the official 25 s split so the reference can chunk on its own.

Tolerances: mel as in test_frontend.py (<= 1e-4 absolute against torch's float32 STFT). Model stages
by NMSE < 1e-6, as test_model.py derives for the f32 path; here the reference runs on its own mel,
which differs from ours by <= 1e-4 absolute on values of order 1 (relative ~1e-4, NMSE ~1e-8 at
the input), well inside the bound. Greedy tokens must be identical for all 32 steps.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import frontend  # noqa: E402
import model as ref  # noqa: E402

BIN = os.environ.get("STEPAUDIO_BIN", os.path.join(HERE, "..", "..", "build", "bin", "stepaudio"))
SHARED = os.environ.get("STEPAUDIO_SHARED_DATA", os.path.join(HERE, "..", "..", "..", "shared", "data"))
pytestmark = pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "audio")),
                                reason="../shared/data is absent: real-audio end-to-end checks skipped")
MAX_TOKENS = 32


def nmse(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a - b) ** 2).sum() / (b ** 2).sum())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_e2e")
    subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_model.py"), str(out), "--shared", SHARED,
                    "--dtype", "f32"], check=True)
    return str(out)


def recordings(tmp_dir):
    files = [os.path.join(SHARED, "audio/zh/aishell_BAC009S0724W0121.wav"),
             os.path.join(SHARED, "audio/stepaudio2_assets/paralinguistic_information_understanding.wav")]
    if shutil.which("ffmpeg"):
        stereo48 = os.path.join(tmp_dir, "jfk_48k_stereo.flac")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i",
                        os.path.join(SHARED, "audio/en/jfk.flac"), "-ar", "48000", "-ac", "2", stereo48], check=True)
        files.append(stereo48)
    return files


def test_real_audio_matches_reference_stage_by_stage(tiny, tmp_path):
    with open(os.path.join(tiny, "added_tokens.json")) as f:
        added = json.load(f)
    for path in recordings(str(tmp_path)):
        dump = tmp_path / ("dump_" + os.path.basename(path))
        out = subprocess.run([BIN, "run", "--model", tiny, "--audio", path, "--quant", "f32", "--chunking", "fixed",
                              "--max-tokens", str(MAX_TOKENS), "--dump", str(dump)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr

        pcm = frontend.load_16k(path)
        step = 25 * 16000
        ref_mels = [frontend.log_mel(pcm[b:b + step]).numpy() for b in range(0, len(pcm), step)]
        if path.endswith("paralinguistic_information_understanding.wav"):
            assert len(ref_mels) == 2
        for i, m in enumerate(ref_mels):
            ours = np.load(dump / f"mel_{i}.npy")
            assert ours.shape == m.shape
            assert np.abs(ours - m).max() <= 1e-4, f"{path} mel {i}"

        # The prompt: official layout, one <audio_start> N x <audio_patch> <audio_end> per chunk.
        ids = np.load(dump / "prompt_ids.npy")
        assert ids[0] == added["<|BOT|>"]
        starts = np.nonzero(ids == added["<audio_start>"])[0]
        ends = np.nonzero(ids == added["<audio_end>"])[0]
        assert len(starts) == len(ends) == len(ref_mels)
        for s, e, m in zip(starts, ends, ref_mels):
            n = frontend.audio_patch_tokens(m.shape[1])
            assert e - s - 1 == n and (ids[s + 1:e] == added["<audio_patch>"]).all()
        # Known Qwen2 ids (../shared/data/README.md): system 8948, human 25312, assistant 77091, \n 198.
        bot, eot = added["<|BOT|>"], added["<|EOT|>"]
        assert list(ids[:3]) == [bot, 8948, 198]
        first_eot = int(np.nonzero(ids == eot)[0][0])
        assert list(ids[first_eot + 1:first_eot + 4]) == [bot, 25312, 198]
        assert starts[0] == first_eot + 4
        assert ends[-1] == len(ids) - 5 and list(ids[-4:]) == [eot, bot, 77091, 198]

        expected = ref.run(tiny, ref_mels, ids, MAX_TOKENS)
        for name, want in expected.items():
            if name == "prompt_ids":
                continue
            got = np.load(dump / f"{name}.npy")
            if name == "tokens":
                assert got.tolist() == want.tolist(), f"{path}: greedy tokens differ"
            else:
                assert got.shape == want.shape, name
                assert nmse(got, want) < 1e-6, f"{path} {name}: NMSE {nmse(got, want)}"
