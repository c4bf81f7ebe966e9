"""The command line as a product: every failure is one line, `stepaudio: error [code]: message`, with
exit code 2 for a bad command line (the option parser's own errors included) and 1 for the rest;
options are validated instead of ignored; a truncated recording is reported, not silently shortened.

Runs the real binary (STEPAUDIO_BIN) on a tiny random checkpoint (tests/reference/make_tiny_model.py);
each case is a few hundred milliseconds, so the whole file stays well under a minute even under ASan."""
import json
import os
import re
import struct
import subprocess
import sys

import pytest

BIN = os.environ.get("STEPAUDIO_BIN", "build/bin/stepaudio")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("STEPAUDIO_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
WAV = os.path.join(SHARED, "audio", "stepaudio2_assets", "multi_turn_round1.wav")
needs_data = pytest.mark.skipif(not os.path.isfile(WAV), reason=f"{SHARED} is missing")
ERROR_LINE = re.compile(r"^stepaudio: error \[([a-z_]+)\]: (.+)$")


def cli(*args, env=None, timeout=120):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env)


def expect_error(out, code, exit_code, pattern):
    """One line on stderr in the error shape, the code and exit status given, a message matching."""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    m = ERROR_LINE.match(lines[0])
    assert m, lines[0]
    assert m.group(1) == code, lines[0]
    assert out.returncode == exit_code, (out.returncode, lines[0])
    assert re.search(pattern, m.group(2)), m.group(2)
    # Numbers are printed as people write them (CLI11 printed the limit of a double as 300 digits).
    assert not re.search(r"\d{12,}", m.group(2).replace("99999999999999999999", "")), m.group(2)
    assert out.stdout == ""
    return m.group(2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not os.path.isdir(os.path.join(SHARED, "tokenizer")):
        pytest.skip(f"{SHARED} is missing")
    out = tmp_path_factory.mktemp("tiny") / "model"
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reference", "make_tiny_model.py"), str(out),
                    "--shared", SHARED], check=True, capture_output=True)
    return str(out)


# (arguments, code, exit code, message pattern): the option parser's failures, in the one shape.
PARSE_CASES = [
    ([], "invalid_argument", 2, r"a command is needed: one of run, .*serve"),
    (["transcribe"], "invalid_argument", 2, r"unknown command 'transcribe'; the commands are run"),
    (["--bogus"], "invalid_argument", 2, r"unknown option --bogus before the command"),
    (["run", "--bogus"], "invalid_argument", 2, r"--bogus"),
    (["mel"], "invalid_argument", 2, r"--audio is required"),
    (["run", "--threads", "abc"], "invalid_argument", 2, r"--threads: 'abc' is not a whole number"),
    (["run", "--threads", "-1"], "invalid_argument", 2, r"--threads: -1 is negative"),
    (["run", "--threads", "100000"], "invalid_argument", 2,
     r"--threads: 100000 is more than this machine's \d+ hardware threads"),
    (["serve", "--threads", "100000"], "invalid_argument", 2, r"hardware threads"),
    (["bench", "--threads", "100000"], "invalid_argument", 2, r"hardware threads"),
    (["run", "--temperature", "-1"], "invalid_argument", 2, r"--temperature: -1 is outside 0\.\.100"),
    (["run", "--top-p", "2"], "invalid_argument", 2, r"--top-p: 2 is outside 0\.\.1"),
    (["run", "--repetition-penalty", "0"], "invalid_argument", 2, r"must be greater than 0"),
    (["run", "--max-tokens", "99999999999999999999"], "invalid_argument", 2, r"outside 1\.\.1048576"),
    (["run", "--max-audio-seconds", "-1"], "invalid_argument", 2, r"-1 must be greater than 0"),
    (["run", "--quant", "q5"], "invalid_argument", 2, r"--quant"),
    (["serve", "--rate-limit", "-1"], "invalid_argument", 2, r"--rate-limit: -1 is outside 0\.\.1000000"),
    (["run", "--model", "m", "--synthetic", "tiny"], "invalid_argument", 2, r"excludes"),
    (["run", "--audio", "a.wav", "--mel", "a.npy"], "invalid_argument", 2, r"excludes"),
    (["bench", "--model", "m", "--synthetic", "tiny"], "invalid_argument", 2, r"excludes"),
]


@pytest.mark.parametrize("args,code,exit_code,pattern", PARSE_CASES, ids=[" ".join(c[0]) or "(none)" for c in PARSE_CASES])
def test_parse_errors_have_the_one_shape(args, code, exit_code, pattern):
    expect_error(cli(*args), code, exit_code, pattern)


def test_help_and_version_succeed():
    out = cli("--version")
    assert out.returncode == 0 and re.fullmatch(r"stepaudio \d+\.\d+\.\d+\n", out.stdout), out
    for args in (["--help"], ["run", "--help"], ["serve", "--help"], ["bench", "--help"]):
        out = cli(*args)
        assert out.returncode == 0 and "Usage" in out.stdout and out.stderr == "", args
    # --help names no section of a design document that is not in the repository, and states defaults.
    for sub in ("run", "serve", "bench", "mel", "tokenize", "quantize"):
        assert "DESIGN" not in cli(sub, "--help").stdout, sub
    assert "default q4" in cli("bench", "--help").stdout
    assert "14400" in cli("run", "--help").stdout


def test_thread_cap_can_be_raised_for_tests(tiny):
    """STEPAUDIO_MAX_THREADS lifts the cap (the thread-invariance tests split work 3 ways on 2 cores)."""
    env = dict(os.environ, STEPAUDIO_MAX_THREADS="64")
    out = cli("run", "--model", tiny, "--threads", "64", "--bogus-after", env=env)
    expect_error(out, "invalid_argument", 2, r"--bogus-after")  # past the thread check


@needs_data
@pytest.mark.parametrize("args,pattern", [
    (["--progress", "on"], r"--progress only applies with --task or --json"),
    (["--prompts", "p.json"], r"--prompts only applies with --task"),
    (["--target-length", "5"], r"--target-length only applies with --task"),
    (["--task", "transcribe", "--temperature", "0.5"], r"--temperature has no effect with --task"),
    (["--json", "--seed", "3"], r"--seed has no effect with --task"),
    (["--task", "summarize", "--target-length", "100000"],
     r"target length 100000 is more than this model's context \(4096 positions\) can hold: at most \d+ \(words"),
])
def test_options_that_would_be_ignored_are_refused(tiny, args, pattern):
    expect_error(cli("run", "--model", tiny, "--audio", WAV, *args), "invalid_argument", 2, pattern)


def test_nothing_to_run_says_what_to_give(tiny):
    expect_error(cli("run", "--model", tiny), "invalid_argument", 2, r"nothing to run: give --audio FILE")


@needs_data
def test_quant_that_contradicts_a_gguf_is_refused(tiny, tmp_path):
    gguf = tmp_path / "tiny-q8.gguf"
    out = cli("quantize", "--model", tiny, "--out", gguf, "--type", "q8")
    assert out.returncode == 0, out.stderr
    expect_error(cli("run", "--model", gguf, "--audio", WAV, "--quant", "q4", "--max-tokens", "1"),
                 "invalid_argument", 2, r"--quant q4 contradicts .*tiny-q8\.gguf, which holds q8 weights")
    # The same type, or no --quant at all, runs as stored.
    for extra in (["--quant", "q8"], []):
        out = cli("run", "--model", gguf, "--audio", WAV, "--max-tokens", "1", *extra)
        assert out.returncode == 0, out.stderr
    expect_error(cli("serve", "--model", gguf, "--quant", "bf16", "--port", "0"),
                 "invalid_argument", 2, r"contradicts")


@needs_data
def test_bad_dump_folder_is_an_io_error(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for task in ([], ["--task", "transcribe"]):
        out = cli("run", "--model", tiny, "--audio", WAV, "--max-tokens", "1", "--dump", blocker / "sub", *task)
        expect_error(out, "io_error", 1, r"cannot create the dump folder '.*a-file/sub'")


def test_hostile_names_in_model_files_are_escaped(tiny, tmp_path):
    """A tensor name with a newline and a terminal escape sequence: the error stays one printable line."""
    folder = tmp_path / "evil"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "added_tokens.json"):
        src = os.path.join(tiny, name)
        if os.path.exists(src):
            (folder / name).write_bytes(open(src, "rb").read())
    header = json.dumps({"bad\n\x1b[2Jname\x07": {"dtype": "XX", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    out = cli("run", "--model", folder, "--audio", WAV)
    msg = expect_error(out, "model_format", 1, r"bad\\x0a\\x1b\[2Jname\\x07")
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr


@needs_data
def test_truncated_recording_is_reported(tiny, tmp_path):
    whole = open(WAV, "rb").read()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[: len(whole) * 3 // 5])
    for path, truncated in ((WAV, False), (cut, True)):
        out = cli("run", "--model", tiny, "--audio", path, "--task", "transcribe", "--json", "--max-tokens", "2")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["truncated"] is truncated and doc["flags"]["audio_truncated"] is truncated
        if truncated:
            assert re.fullmatch(r"stepaudio: warning: .*cut\.wav is truncated: 3\.\d s decoded of the 5\.3 s its "
                                r"header states; the result covers what decoded\n", out.stderr), out.stderr
            assert abs(doc["stated_duration_s"] - 5.271) < 0.01 and doc["duration_s"] < 3.3
        else:
            assert "warning" not in out.stderr
    # The raw generation warns too.
    out = cli("run", "--model", tiny, "--audio", cut, "--max-tokens", "1")
    assert out.returncode == 0 and "is truncated" in out.stderr.splitlines()[0]


def test_bench_tiny_task_says_what_works(tiny):
    expect_error(cli("bench", "--synthetic", "tiny", "--task", "transcribe"), "invalid_argument", 2,
                 r"--synthetic tiny: its vocabulary matches no tokenizer; for a quick run use --model DIR")
    expect_error(cli("bench", "--synthetic", "tiny", "--tokenizer", tiny), "invalid_argument", 2,
                 r"--tokenizer only applies with --task")
    expect_error(cli("bench", "--synthetic", "tiny", "--kl-reference", "bf16"), "invalid_argument", 2,
                 r"--kl-reference only applies with --kl")
    # What the message recommends works.
    out = cli("bench", "--model", tiny, "--task", "transcribe", "--audio-seconds", "1", "--mode", "shared",
              "--max-new-tokens", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["runs"][0]["task"] == "transcribe"
