"""Stage-by-stage comparison of `stepaudio run --dump` with the independent PyTorch reference
(tests/reference/model.py) on tiny random checkpoints, plus bad-folder checks.

Inputs are fixed-seed random mels (standard normal, about the range of real log-mels after the
(x+4)/4 scaling): a fixed seed makes a failure reproducible; coverage of input values comes from the
thousands of frames per chunk, not from reseeding. Chunk lengths: T=2502 (a full 25 s chunk -> 313
patches) and T=529 (a short one -> 66 patches; 529 % 4 == 1 and 2502 % 4 == 2 exercise both parities
of the (T+1)%2 mask offset), and T=531/532 for the other two residues.

Tolerances (NMSE = sum((a-b)^2) / sum(b^2)):
- f32 path vs float64 reference: < 1e-6. float32 has unit roundoff u = 2^-24 = 6e-8; each output is
  a chain of ~20 dot products of length <= 2048 accumulated in f32, whose relative error grows like
  sqrt(K) u ~ 3e-6 in the worst realistic case, i.e. NMSE ~1e-11 per stage; we measure ~1e-13. 1e-6
  leaves room for SIMD reassociation while any semantic slip (mask offset, RoPE convention, GQA
  mapping, a missing bias) shows up as NMSE >= 1e-3.
- bf16 path: the reference runs on the same bf16-rounded weights (exactly representable in f32), and
  our bf16 kernels widen each weight exactly and accumulate in f32, so the only difference is again
  f32 activation/accumulation rounding: the same 1e-6 bound applies.
- bf16 vs the unrounded f32 truth (information about quantization itself): weights carry relative
  rounding error <= 2^-9 (rms ~2^-9/sqrt(3) = 1.1e-3), i.e. NMSE ~1.3e-6 per matmul, summed over the
  ~30 matmuls on a path -> ~4e-5; we assert < 1e-3.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as ref  # noqa: E402

BIN = os.environ.get("STEPAUDIO_BIN", os.path.join(HERE, "..", "..", "build", "bin", "stepaudio"))
SHARED = os.environ.get("STEPAUDIO_SHARED_DATA", os.path.join(HERE, "..", "..", "..", "shared", "data"))
STAGES = ["logits_prefill", "logits_step_1", "logits_step_2", "logits_step_3"]


def nmse(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a - b) ** 2).sum() / (b ** 2).sum())


def make_model(out, *extra):
    subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_model.py"), str(out), "--shared", SHARED, *extra],
                   check=True)
    return str(out)


def make_inputs(folder, out, lengths, seed=7):
    rng = np.random.default_rng(seed)
    with open(os.path.join(folder, "added_tokens.json")) as f:
        tok = json.load(f)
    mels = []
    ids = [tok["<|BOT|>"], 11, 22, 198]
    for i, t in enumerate(lengths):
        p = os.path.join(out, "mel_%d.npy" % i)
        np.save(p, rng.standard_normal((128, t)).astype(np.float32))
        mels.append(p)
        ids += [tok["<audio_start>"]] + [tok["<audio_patch>"]] * ref.patch_count(t) + [tok["<audio_end>"]]
    ids += [tok["<|EOT|>"], tok["<|BOT|>"], 33, 198]
    ip = os.path.join(out, "ids.npy")
    np.save(ip, np.array(ids, dtype=np.int32))
    return mels, ip


def run_ours(folder, mels, ids, dump, *extra, max_tokens=32):
    cmd = [BIN, "run", "--model", folder, "--prompt-ids", ids, "--max-tokens", str(max_tokens), "--dump", str(dump),
           *extra]
    if mels:
        cmd += ["--mel", ",".join(mels)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {f[:-4]: np.load(os.path.join(dump, f)) for f in os.listdir(dump)}


def run_ref(folder, mels, ids, max_tokens=32, round_bf16=False):
    return ref.run(folder, [np.load(m) for m in mels], np.load(ids), max_tokens, round_bf16)


def compare(ours, theirs, n_chunks, bound, tokens=True):
    for i in range(n_chunks):
        for s in ("encoder_%d" % i, "adapter_%d" % i):
            assert ours[s].shape == theirs[s].shape, s
            assert nmse(ours[s], theirs[s]) < bound, (s, nmse(ours[s], theirs[s]))
    for s in STAGES:
        if s in theirs:
            assert nmse(ours[s], theirs[s]) < bound, (s, nmse(ours[s], theirs[s]))
    assert np.array_equal(ours["prompt_ids"], theirs["prompt_ids"])
    if tokens:
        assert ours["tokens"].tolist() == theirs["tokens"].tolist()


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("a_f32"), "--preset", "a", "--dtype", "f32", "--shards", "2")


@pytest.fixture(scope="module")
def tiny_bf16(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("b_bf16"), "--preset", "b", "--dtype", "bf16", "--shards", "3")


def test_f32_two_chunks_matches_reference(tiny_f32, tmp_path):
    mels, ids = make_inputs(tiny_f32, tmp_path, [2502, 529])
    ours = run_ours(tiny_f32, mels, ids, tmp_path / "ours", "--quant", "f32")
    theirs = run_ref(tiny_f32, mels, ids)
    assert ours["adapter_0"].shape[0] == 313 and ours["adapter_1"].shape[0] == 66
    compare(ours, theirs, 2, 1e-6)
    assert len(ours["tokens"]) == 32


@pytest.mark.parametrize("t", [531, 532])
def test_f32_other_length_residues(tiny_f32, tmp_path, t):
    mels, ids = make_inputs(tiny_f32, tmp_path, [t], seed=t)
    ours = run_ours(tiny_f32, mels, ids, tmp_path / "ours", "--quant", "f32", max_tokens=4)
    compare(ours, run_ref(tiny_f32, mels, ids, max_tokens=4), 1, 1e-6)


def test_bf16_checkpoint_both_paths(tiny_bf16, tmp_path):
    mels, ids = make_inputs(tiny_bf16, tmp_path, [529, 2502])
    theirs = run_ref(tiny_bf16, mels, ids, max_tokens=16)
    for q in ("bf16", "f32"):
        ours = run_ours(tiny_bf16, mels, ids, tmp_path / q, "--quant", q, max_tokens=16)
        compare(ours, theirs, 2, 1e-6)


def test_f32_checkpoint_quantized_to_bf16(tiny_f32, tmp_path):
    mels, ids = make_inputs(tiny_f32, tmp_path, [529])
    ours = run_ours(tiny_f32, mels, ids, tmp_path / "ours", "--quant", "bf16", max_tokens=8)
    compare(ours, run_ref(tiny_f32, mels, ids, max_tokens=8, round_bf16=True), 1, 1e-6)
    truth = run_ref(tiny_f32, mels, ids, max_tokens=1)
    for s in ("encoder_0", "adapter_0", "logits_prefill"):
        assert nmse(ours[s], truth[s]) < 1e-3, (s, nmse(ours[s], truth[s]))


def test_f16_single_file_byte_vocab(tmp_path):
    folder = make_model(tmp_path / "m", "--preset", "b", "--dtype", "f16", "--shards", "1", "--byte-vocab")
    assert os.path.exists(os.path.join(folder, "model.safetensors"))
    mels, ids = make_inputs(folder, tmp_path, [529])
    ours = run_ours(folder, mels, ids, tmp_path / "ours", "--quant", "bf16", max_tokens=8)
    compare(ours, run_ref(folder, mels, ids, max_tokens=8), 1, 1e-6)


def test_thread_count_invariance(tiny_f32, tmp_path, monkeypatch):
    monkeypatch.setenv("STEPAUDIO_MAX_THREADS", "3")  # an odd split even on a 2-core machine
    mels, ids = make_inputs(tiny_f32, tmp_path, [529])
    one = run_ours(tiny_f32, mels, ids, tmp_path / "t1", "--quant", "f32", "--threads", "1", max_tokens=4)
    two = run_ours(tiny_f32, mels, ids, tmp_path / "t2", "--quant", "f32", "--threads", "2", max_tokens=4)
    three = run_ours(tiny_f32, mels, ids, tmp_path / "t3", "--quant", "f32", "--threads", "3", max_tokens=4)
    assert sorted(one) == sorted(two)
    for k in one:
        assert one[k].tobytes() == two[k].tobytes() == three[k].tobytes(), k


def test_sampling_is_seeded(tiny_f32, tmp_path):
    mels, ids = make_inputs(tiny_f32, tmp_path, [529])
    opts = ["--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--repetition-penalty", "1.1"]
    a = run_ours(tiny_f32, mels, ids, tmp_path / "a", *opts, "--seed", "5", max_tokens=12)
    b = run_ours(tiny_f32, mels, ids, tmp_path / "b", *opts, "--seed", "5", max_tokens=12)
    c = run_ours(tiny_f32, mels, ids, tmp_path / "c", *opts, "--seed", "6", max_tokens=12)
    assert a["tokens"].tolist() == b["tokens"].tolist()
    assert a["tokens"].tolist() != c["tokens"].tolist()


def test_patch_count_mismatch_is_rejected(tiny_f32, tmp_path):
    mels, ids = make_inputs(tiny_f32, tmp_path, [529])
    a = np.load(ids)
    patch = json.load(open(os.path.join(tiny_f32, "added_tokens.json")))["<audio_patch>"]
    np.save(tmp_path / "short.npy", np.delete(a, np.nonzero(a == patch)[0][:5]))
    r = subprocess.run([BIN, "run", "--model", tiny_f32, "--mel", mels[0], "--prompt-ids", str(tmp_path / "short.npy")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "audio_patch" in r.stderr


def test_chunk_longer_than_n_audio_ctx_is_rejected(tiny_f32, tmp_path):
    # n_audio_ctx = 1500 encoder positions = 3000 mel frames after conv2's stride 2 (a 30 s chunk);
    # T = 3005 frames gives 1502 positions: a clear error, not a read past the positional table.
    mels, ids = make_inputs(tiny_f32, tmp_path, [3005])
    r = subprocess.run([BIN, "run", "--model", tiny_f32, "--mel", mels[0], "--prompt-ids", ids],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "n_audio_ctx" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- bad model folders: each a one-line error with a typed code, never a crash ----

def copy_model(src, dst):
    os.makedirs(dst)
    for f in os.listdir(src):
        os.link(os.path.join(src, f), os.path.join(dst, f))  # hard links: cheap; files we edit are rewritten
    return dst


def rewrite(path, data):
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def load_error(folder):
    r = subprocess.run([BIN, "run", "--model", folder, "--prompt-ids", "/nonexistent.npy"], capture_output=True,
                       text=True)
    assert r.returncode == 1, (r.returncode, r.stderr)  # not a signal, not success
    assert r.stderr.startswith("stepaudio: error [") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def first_shard(folder):
    return os.path.join(folder, "model-00001-of-00002.safetensors")


def edit_header(path, fn):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    h = json.loads(data[8:8 + n])
    fn(h)
    hb = json.dumps(h).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    rewrite(path, struct.pack("<Q", len(hb)) + hb + data[8 + n:])


def test_missing_shard(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")
    os.unlink(first_shard(m))
    e = load_error(m)
    assert "[io_error]" in e and "model-00001-of-00002.safetensors" in e


def test_truncated_shard(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")
    p = os.path.join(m, "model-00002-of-00002.safetensors")
    rewrite(p, open(p, "rb").read()[:-1000])
    e = load_error(m)
    assert "[model_format]" in e and "outside the data area" in e


def test_header_past_end(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")
    p = first_shard(m)
    data = open(p, "rb").read()
    rewrite(p, struct.pack("<Q", len(data)) + data[8:])
    assert "runs past the end" in load_error(m)


def test_huge_header_length(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")
    p = first_shard(m)
    rewrite(p, struct.pack("<Q", 1 << 62) + open(p, "rb").read()[8:])
    assert "exceeds the 100 MB limit" in load_error(m)


def test_wrong_shape(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")
    p = first_shard(m)

    def shrink(h):
        name = next(k for k in h if k.endswith("conv1.bias"))
        h[name]["shape"] = [h[name]["shape"][0] // 2, 2]
    edit_header(p, shrink)
    e = load_error(m)
    assert "[model_format]" in e and "encoder.conv1.bias" in e and "expected [40]" in e


def test_wrong_dtype(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")
    p = first_shard(m)

    def to_int(h):
        h["encoder.conv1.bias"]["dtype"] = "I32"
    edit_header(p, to_int)
    e = load_error(m)
    assert "[model_format]" in e and "encoder.conv1.bias" in e and "I32" in e


def test_dtype_size_mismatch(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")

    def to_bf16(h):
        h["encoder.conv1.bias"]["dtype"] = "BF16"  # 2-byte elements but 4-byte-per-element data range
    edit_header(first_shard(m), to_bf16)
    assert "bytes for" in load_error(m)


def test_config_missing_key(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")
    p = os.path.join(m, "config.json")
    cfg = json.load(open(p))
    del cfg["text_config"]["rope_theta"]
    rewrite(p, json.dumps(cfg).encode())
    e = load_error(m)
    assert "[model_format]" in e and "text_config.rope_theta" in e


def test_missing_tensor(tiny_f32, tmp_path):
    m = copy_model(tiny_f32, tmp_path / "m")

    def drop(h):
        del h["encoder.conv1.bias"]
    edit_header(first_shard(m), drop)
    e = load_error(m)
    assert "encoder.conv1.bias" in e
