"""`stepaudio tokenize` end to end: the golden vectors through the CLI, decode, --special, errors."""
import json
import os
import pathlib
import subprocess

import pytest

BIN = os.environ.get("STEPAUDIO_BIN", "build/bin/stepaudio")
DATA = pathlib.Path(os.environ.get("STEPAUDIO_SHARED_DATA", "../shared/data"))
QWEN = DATA / "tokenizer" / "qwen2_base"
# Every CLI start loads the 151k-entry vocabulary (~0.5 s, ~1 s under the sanitizers) and each case
# takes two, so a quarter of the golden cases go through the CLI: this file tests the command (exact
# bytes in and out, both directions); the unit test QwenTokenizer.GoldenEncodings runs all of them
# in process in both ctest passes.

needs_data = pytest.mark.skipif(not QWEN.exists(), reason=f"shared test data absent: {QWEN}")


def run(*args, check=True):
    return subprocess.run([BIN, "tokenize", *args], capture_output=True, check=check)


@needs_data
def test_golden_vectors_through_cli(tmp_path):
    cases = json.loads((QWEN / "golden_encodings.json").read_text(encoding="utf-8"))["cases"]
    assert len(cases) >= 20
    for case in cases[::4]:
        # --file keeps the exact bytes (trailing newlines, control characters).
        f = tmp_path / "in.txt"
        f.write_bytes(case["text"].encode("utf-8"))
        out = run("--tokenizer", str(QWEN), "--file", str(f)).stdout.decode()
        assert out == ",".join(map(str, case["ids"])) + "\n", case["text"]
        dec = run("--tokenizer", str(QWEN), "--decode", ",".join(map(str, case["ids"]))).stdout
        assert dec.decode("utf-8") == case["decoded"] + "\n"


@needs_data
def test_text_option_and_special_flag(tmp_path):
    out = run("--tokenizer", str(QWEN), "--text", "Hello world").stdout.decode()
    assert out == "9707,1879\n"
    # A tokenizer with Step-style added tokens: <|EOT|> matches only with --special.
    d = tmp_path / "tok"
    d.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (d / name).symlink_to((QWEN / name).resolve())
    (d / "added_tokens.json").write_text(json.dumps({"<|EOT|>": 151665, "<|BOT|>": 151666}))
    plain = run("--tokenizer", str(d), "--text", "hi<|EOT|>").stdout.decode().strip().split(",")
    special = run("--tokenizer", str(d), "--text", "hi<|EOT|>", "--special").stdout.decode()
    assert "151665" not in plain
    assert special.strip().split(",")[-1] == "151665"


@needs_data
def test_errors_are_one_line_and_nonzero(tmp_path):
    r = run("--tokenizer", str(QWEN), "--decode", "1,x", check=False)
    assert r.returncode == 2 and b"not a token id" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run("--tokenizer", str(bad), "--text", "a", check=False)
    assert r.returncode == 1 and b"bad.json" in r.stderr and b"tokenizer_format" in r.stderr
    r = run("--tokenizer", str(QWEN), check=False)
    assert r.returncode != 0
