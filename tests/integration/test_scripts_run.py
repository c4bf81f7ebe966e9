"""scripts/run, the README's first command: without a checkpoint it says how to get one and how to try
the tiny random checkpoint; it takes a .gguf file and paths relative to where it is called, and starts
`stepaudio serve` (checked with /healthz and one understanding request that returns the result JSON).

Needs the release build folder (scripts/run builds `stepaudio-cli` in ./build, a no-op after scripts/test's
build) and ../shared/data for the tiny checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("STEPAUDIO_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
BIN = os.environ.get("STEPAUDIO_BIN", os.path.join(ROOT, "build", "bin", "stepaudio"))
WAV = os.path.join(SHARED, "audio", "stepaudio2_assets", "multi_turn_round1.wav")
RUN = os.path.join(ROOT, "scripts", "run")

pytestmark = [
    pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "build", "CMakeCache.txt")) or not os.path.isfile(WAV),
                       reason="needs the configured ./build folder and ../shared/data"),
    # The script runs the release binary in ./build whichever binary the suite tests: once is enough.
    pytest.mark.skipif(os.environ.get("STEPAUDIO_SANITIZED") == "1", reason="tests the script, not the binary"),
]


def test_without_a_checkpoint_it_says_how_to_get_one(tmp_path):
    out = subprocess.run([RUN, "no-such-model"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "git clone https://huggingface.co/stepfun-ai/Step-Audio-2-mini" in out.stdout
    assert "scripts/run --tiny" in out.stdout
    assert "quantize" in out.stdout  # the one-file route too


def test_serves_a_relative_gguf_path(tmp_path):
    model = tmp_path / "tiny"
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reference", "make_tiny_model.py"), str(model),
                    "--shared", SHARED], check=True, capture_output=True)
    subprocess.run([BIN, "quantize", "--model", str(model), "--out", str(tmp_path / "tiny-q8.gguf"), "--type", "q8"],
                   check=True, capture_output=True)
    env = dict(os.environ, STEPAUDIO_DB=str(tmp_path / "jobs.db"))
    # Port 0: any free port; serve's first line says which.
    proc = subprocess.Popen([RUN, "tiny-q8.gguf", "0"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        url, lines, deadline = None, [], time.monotonic() + 300
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "listening on " in line:
                url = line.split("listening on ")[1].strip()
        assert url, "".join(lines) + proc.stderr.read() if proc.poll() is not None else "".join(lines)
        assert any("transcribe-and-summarize" in l for l in lines)  # it prints the request to try
        for _ in range(600):
            try:
                if urllib.request.urlopen(url + "/readyz", timeout=5).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        body = open(WAV, "rb").read()
        req = urllib.request.Request(url + "/transcribe-and-summarize", data=body, method="POST",
                                     headers={"Content-Type": "audio/wav"})
        doc = json.load(urllib.request.urlopen(req, timeout=120))
        assert doc["model"] == "tiny-q8.gguf" or doc["model"].startswith("tiny"), doc["model"]
        assert {"transcription", "summary", "emotion", "urgency", "segments"} <= set(doc)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
