"""Independent reference for the tokenizer: a plain-Python byte-level BPE (the classic GPT-2 loop,
the `regex` module for the split, unicodedata for NFC) against `stepaudio tokenize` on random
Unicode text, the manifest transcripts and odd whitespace (U+0085, U+FEFF, information separators).
Needs ../shared/data and python3-regex; skips otherwise."""
import json
import os
import pathlib
import random
import subprocess
import unicodedata

import pytest

regex = pytest.importorskip("regex")

BIN = os.environ.get("STEPAUDIO_BIN", "build/bin/stepaudio")
DATA = pathlib.Path(os.environ.get("STEPAUDIO_SHARED_DATA", "../shared/data"))
QWEN = DATA / "tokenizer" / "qwen2_base"
pytestmark = pytest.mark.skipif(not QWEN.exists(), reason=f"shared test data absent: {QWEN}")

SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
         r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceBpe:
    def __init__(self):
        self.vocab = json.loads((QWEN / "vocab.json").read_text(encoding="utf-8"))
        lines = (QWEN / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(l.split(" ")) for l in lines if l and not l.startswith("#version")]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()
        self.pattern = regex.compile(SPLIT)
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, _ = min(pairs)
            if rank == 1 << 30:
                break
            first, second = parts[[i for r, i in pairs if r == rank][0]], None
            second = parts[[i for r, i in pairs if r == rank][0] + 1]
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        self.cache[word] = parts
        return parts

    def encode(self, text):
        ids = []
        for piece in self.pattern.findall(unicodedata.normalize("NFC", text)):
            mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self.bpe(mapped))
        return ids


def random_text(rng, n):
    ranges = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x20, 0x20), (0x0A, 0x0A), (0x09, 0x0D),
              (0x00, 0x1F), (0x21, 0x2F), (0x85, 0x85), (0xA0, 0xFF), (0x300, 0x36F), (0x4E00, 0x9FFF),
              (0x3000, 0x303F), (0xFF01, 0xFF5E), (0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x1F300, 0x1F64F),
              (0x1F3FB, 0x1F3FF), (0x200B, 0x200D), (0xFEFF, 0xFEFF), (0x2000, 0x200A), (0x2028, 0x2029),
              (0x0400, 0x04FF), (0x0600, 0x06FF), (0x0E00, 0x0E7F), (0x27, 0x27)]
    out = []
    for _ in range(n):
        a, b = rng.choice(ranges)
        out.extend(chr(rng.randint(a, b)) for _ in range(rng.randint(1, 5)))
    return "".join(out)


def cli_encode(tmp_path, text):
    f = tmp_path / "in.txt"
    f.write_bytes(text.encode("utf-8"))
    out = subprocess.run([BIN, "tokenize", "--tokenizer", str(QWEN), "--file", str(f)],
                         capture_output=True, check=True).stdout.decode().strip()
    return [int(x) for x in out.split(",")] if out else []


@pytest.fixture(scope="module")
def ref():
    return ReferenceBpe()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_unicode_matches_reference(tmp_path, ref, seed):
    text = random_text(random.Random(seed), 3000)
    assert cli_encode(tmp_path, text) == ref.encode(text)


def test_transcripts_and_whitespace_match_reference(tmp_path, ref):
    lines = [json.loads(l) for l in (DATA / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if l]
    text = "\n".join(l["reference"] for l in lines if isinstance(l.get("reference"), str))
    text += "\n  \x85 a  \x85\n\ufeff x\x1c\x1d y \u3000\u3000z\r\n\r\n  \t"
    assert cli_encode(tmp_path, text) == ref.encode(text)
