#!/usr/bin/python3
"""Writes a tiny, seeded, random Step-Audio-2-mini checkpoint in the Hugging Face folder layout.

The layout follows the real checkpoint (DESIGN.md §4): config.json with `text_config` (Qwen2 keys) and
`audio_encoder_config` (Whisper-style keys, as read by the upstream ports: n_mels, n_audio_ctx,
n_audio_state, n_audio_head, n_audio_layer, llm_dim, kernel_size, adapter_stride), sharded
safetensors + model.safetensors.index.json, and tokenizer files. Only the sizes are tiny; the odd
shapes (GQA ratio != 7, odd FFN, head counts that do not divide evenly into powers of two) exercise
the index arithmetic that the real 3584/28/4 shapes would hide.

Usage: make_tiny_model.py OUT_DIR [--preset a|b|q] [--dtype f32|bf16|f16] [--seed N] [--shards N]
                          [--byte-vocab]

With STEPAUDIO_TINY_MODEL_CACHE=DIR (ctest sets it to ./build-tiny-models) a folder made once for
the same options, script, tokenizer files and installed torch is copied instead of made again:
the suites make ~20 of these per ctest pass, ~4 s each (half of it importing torch, which a copy
skips), from ~8 distinct option sets.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import sys


def arg_parser():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", default="a", choices=["a", "b", "q"])
    ap.add_argument("--dtype", default="f32", choices=["bf16", "f16", "f32"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--byte-vocab", action="store_true", help="small byte-level vocabulary even when the real one is there")
    ap.add_argument("--shared", default=os.environ.get("STEPAUDIO_SHARED_DATA", ""))
    return ap


def cache_entry(argv):
    """The cache folder for these options (None without STEPAUDIO_TINY_MODEL_CACHE): named by a hash
    of the options, this script's bytes, the tokenizer files it would read and the installed torch
    (whose generator makes the weights), each file by path, size and mtime; torch is located, not
    imported."""
    root = os.environ.get("STEPAUDIO_TINY_MODEL_CACHE")
    if not root:
        return None
    a = arg_parser().parse_args(argv)
    h = hashlib.sha256(open(os.path.abspath(__file__), "rb").read())
    h.update(repr((a.preset, a.dtype, a.seed, a.shards, a.byte_vocab)).encode())
    base = os.path.join(a.shared, "tokenizer", "qwen2_base") if a.shared else ""
    files = [os.path.join(base, n) for n in ("vocab.json", "merges.txt")] if base and not a.byte_vocab else []
    spec = importlib.util.find_spec("torch")
    if spec and spec.origin:
        files.append(os.path.join(os.path.dirname(spec.origin), "version.py"))
    for path in files:
        if os.path.exists(path):
            st = os.stat(path)
            h.update(repr((os.path.realpath(path), st.st_size, st.st_mtime_ns)).encode())
    return os.path.join(root, h.hexdigest()[:24])


def copy_out(entry, out):
    os.makedirs(out, exist_ok=True)
    shutil.copytree(entry, out, dirs_exist_ok=True)


# A cached folder needs no torch: copy it before the import.
if __name__ == "__main__":
    _entry = cache_entry(sys.argv[1:])
    if _entry and os.path.isdir(_entry):
        copy_out(_entry, arg_parser().parse_args(sys.argv[1:]).out)
        sys.exit(0)

import torch  # noqa: E402

PRESETS = {
    # hidden 72, 6 heads (head_dim 12), 3 KV heads (GQA ratio 2), odd FFN.
    "a": dict(hidden=72, heads=6, kv_heads=3, ffn=101, layers=2, rope_theta=1000000.0,
              n_state=40, n_head=5, n_layer=2),
    # hidden 80, 10 heads (head_dim 8), 2 KV heads (GQA ratio 5), small RoPE base so rotation matters.
    "b": dict(hidden=80, heads=10, kv_heads=2, ffn=203, layers=2, rope_theta=10000.0,
              n_state=48, n_head=4, n_layer=2),
    # every decoder row length a multiple of 32 (hidden 64, FFN 96), so --quant q8/q4 quantize every
    # decoder matrix (the other presets keep their odd ones bf16): the quantization/GGUF tests.
    "q": dict(hidden=64, heads=4, kv_heads=2, ffn=96, layers=2, rope_theta=1000000.0,
              n_state=32, n_head=4, n_layer=2),
}

QWEN25_ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]


def step_tokens():
    """Step tokens after Qwen2.5's 22 added tokens, relative to the first id after them.

    Offsets follow ../shared/data/tokenizer/step_audio2_special_tokens.json: <|EOT|> = base+0
    (151665), <audio_start> = base+23 (151688), <audio_end> +24, <audio_patch> +25, <tts_start> +28,
    <tts_end> +29, <audio_0> +31 (151696). <|BOT|>'s real id is unknown; we put it at base+1.
    Placeholders fill the unknown slots so that the known ids land where the real ones are.
    """
    toks = {0: "<|EOT|>", 1: "<|BOT|>", 23: "<audio_start>", 24: "<audio_end>", 25: "<audio_patch>",
            26: "<tts_pad>", 28: "<tts_start>", 29: "<tts_end>", 31: "<audio_0>", 32: "<audio_1>"}
    return [toks.get(i, "<|step_reserved_%d|>" % i) for i in range(33)]


def byte_level_vocab():
    """GPT-2 byte-to-unicode table: 256 byte tokens, plus a few merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = {ch: i for i, ch in enumerate(chars)}
    merges = ["Ġ t", "Ġ a", "h e", "i n", "Ġt he"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    return vocab, merges


def load_vocab(shared, byte_vocab):
    base = os.path.join(shared, "tokenizer", "qwen2_base") if shared else ""
    if not byte_vocab and base and os.path.exists(os.path.join(base, "vocab.json")):
        with open(os.path.join(base, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(os.path.join(base, "merges.txt"), encoding="utf-8") as f:
            merges = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#version")]
        return vocab, merges
    return byte_level_vocab()


def write_tokenizer(out, vocab, merges):
    first = max(vocab.values()) + 1
    names = QWEN25_ADDED + step_tokens()
    added = [{"id": first + i, "content": n, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, n in enumerate(names)]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""},
                "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                     "vocab": vocab, "merges": merges}}
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    with open(os.path.join(out, "added_tokens.json"), "w", encoding="utf-8") as f:
        json.dump({a["content"]: a["id"] for a in added}, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|EOT|>", "pad_token": "<|endoftext|>",
                   "model_max_length": 16384,
                   "added_tokens_decoder": {str(a["id"]): a for a in added}}, f, ensure_ascii=False)
    return {a["content"]: a["id"] for a in added}


def make_weights(p, vocab_size, gen):
    def rnd(*shape, scale=None):
        fan_in = shape[-1] if len(shape) > 1 else 1
        s = scale if scale is not None else fan_in ** -0.5
        return torch.randn(*shape, generator=gen) * s

    def norm_w(n):
        return 1.0 + 0.1 * torch.randn(n, generator=gen)

    H, nh, kv, F = p["hidden"], p["heads"], p["kv_heads"], p["ffn"]
    hd = H // nh
    S, M = p["n_state"], 128
    w = {}
    w["encoder.conv1.weight"] = rnd(S, M, 3, scale=(M * 3) ** -0.5)
    w["encoder.conv1.bias"] = rnd(S, scale=0.1)
    w["encoder.conv2.weight"] = rnd(S, S, 3, scale=(S * 3) ** -0.5)
    w["encoder.conv2.bias"] = rnd(S, scale=0.1)
    w["encoder.positional_embedding.weight"] = rnd(1500, S, scale=0.5)
    for i in range(p["n_layer"]):
        b = "encoder.blocks.%d." % i
        for n in ("query", "key", "value", "out"):
            w[b + "attn.%s.weight" % n] = rnd(S, S)
            if n != "key":
                w[b + "attn.%s.bias" % n] = rnd(S, scale=0.1)
        for ln in ("attn_ln", "mlp_ln"):
            w[b + ln + ".weight"] = norm_w(S)
            w[b + ln + ".bias"] = rnd(S, scale=0.1)
        w[b + "mlp.0.weight"] = rnd(4 * S, S)
        w[b + "mlp.0.bias"] = rnd(4 * S, scale=0.1)
        w[b + "mlp.2.weight"] = rnd(S, 4 * S)
        w[b + "mlp.2.bias"] = rnd(S, scale=0.1)
    w["encoder.after_norm.weight"] = norm_w(S)
    w["encoder.after_norm.bias"] = rnd(S, scale=0.1)
    w["adapter.conv.weight"] = rnd(S, S, 3, scale=(S * 3) ** -0.5)
    w["adapter.conv.bias"] = rnd(S, scale=0.1)
    w["adapter.linear1.weight"] = rnd(2048, S)
    w["adapter.linear1.bias"] = rnd(2048, scale=0.1)
    w["adapter.linear2.weight"] = rnd(H, 2048)
    w["adapter.linear2.bias"] = rnd(H, scale=0.1)
    w["model.embed_tokens.weight"] = rnd(vocab_size, H, scale=1.0)
    for i in range(p["layers"]):
        b = "model.layers.%d." % i
        w[b + "self_attn.q_proj.weight"] = rnd(nh * hd, H)
        w[b + "self_attn.q_proj.bias"] = rnd(nh * hd, scale=0.1)
        w[b + "self_attn.k_proj.weight"] = rnd(kv * hd, H)
        w[b + "self_attn.k_proj.bias"] = rnd(kv * hd, scale=0.1)
        w[b + "self_attn.v_proj.weight"] = rnd(kv * hd, H)
        w[b + "self_attn.v_proj.bias"] = rnd(kv * hd, scale=0.1)
        w[b + "self_attn.o_proj.weight"] = rnd(H, nh * hd)
        w[b + "mlp.gate_proj.weight"] = rnd(F, H)
        w[b + "mlp.up_proj.weight"] = rnd(F, H)
        w[b + "mlp.down_proj.weight"] = rnd(H, F)
        w[b + "input_layernorm.weight"] = norm_w(H)
        w[b + "post_attention_layernorm.weight"] = norm_w(H)
    w["model.norm.weight"] = norm_w(H)
    w["lm_head.weight"] = rnd(vocab_size, H, scale=2.0 * H ** -0.5)
    return w


DTYPES = {"f32": (torch.float32, "F32"), "bf16": (torch.bfloat16, "BF16"), "f16": (torch.float16, "F16")}


def tensor_bytes(t, dtype):
    t = t.to(dtype).contiguous()
    if dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, dtype):
    tdt, tag = DTYPES[dtype]
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t, tdt)
        header[name] = {"dtype": tag, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main(argv=None):
    a = arg_parser().parse_args(argv)
    p = PRESETS[a.preset]
    os.makedirs(a.out, exist_ok=True)
    vocab, merges = load_vocab(a.shared, a.byte_vocab)
    added = write_tokenizer(a.out, vocab, merges)
    vocab_size = max(added.values()) + 1
    vocab_size += (-vocab_size) % 8  # like the real 158720: rounded up, unused rows at the end
    cfg = {
        "architectures": ["StepAudio2ForCausalLM"], "model_type": "step_audio_2", "torch_dtype": "bfloat16",
        "text_config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "hidden_size": p["hidden"], "intermediate_size": p["ffn"],
            "num_attention_heads": p["heads"], "num_attention_groups": p["kv_heads"],
            "num_key_value_heads": p["kv_heads"], "num_hidden_layers": p["layers"],
            "max_seq_len": 4096, "max_position_embeddings": 4096, "vocab_size": vocab_size,
            "rms_norm_eps": 1e-6, "rope_theta": p["rope_theta"], "hidden_act": "silu",
            "eos_token_id": added["<|EOT|>"], "pad_token_id": added["<|endoftext|>"],
            "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
        "audio_encoder_config": {
            "n_mels": 128, "n_audio_ctx": 1500, "n_audio_state": p["n_state"], "n_audio_head": p["n_head"],
            "n_audio_layer": p["n_layer"], "n_codebook_size": 4096, "llm_dim": p["hidden"],
            "kernel_size": 3, "adapter_stride": 2},
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    gen = torch.Generator().manual_seed(a.seed)
    w = make_weights(p, vocab_size, gen)
    names = list(w.keys())
    if a.shards <= 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), w, a.dtype)
        return 0
    per = (len(names) + a.shards - 1) // a.shards
    weight_map, total = {}, 0
    for s in range(a.shards):
        fn = "model-%05d-of-%05d.safetensors" % (s + 1, a.shards)
        part = {n: w[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(a.out, fn), part, a.dtype)
        for n, t in part.items():
            weight_map[n] = fn
            total += t.numel() * torch.tensor([], dtype=DTYPES[a.dtype][0]).element_size()
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    return 0


def main_cached(argv):
    """Makes the folder in a temporary sibling of its cache entry, renames it into place (atomic:
    two ctest jobs may make the same one; the loser's copy is dropped) and copies it out."""
    entry = cache_entry(argv)
    if not entry:
        return main(argv)
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    tmp = "%s.tmp%d" % (entry, os.getpid())
    a = arg_parser().parse_args(argv)
    rc = main([tmp, "--preset", a.preset, "--dtype", a.dtype, "--seed", str(a.seed),
               "--shards", str(a.shards), "--shared", a.shared] + (["--byte-vocab"] if a.byte_vocab else []))
    if rc != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        return rc
    try:
        os.rename(tmp, entry)
    except OSError:  # made meanwhile by another process: the same bytes
        shutil.rmtree(tmp, ignore_errors=True)
    copy_out(entry, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main_cached(sys.argv[1:]))
