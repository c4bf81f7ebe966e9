#!/usr/bin/python3
"""Independent PyTorch reference of Step-Audio-2-mini for the stage-by-stage comparison tests.

Written from the published semantics, not from our C++:
- audio encoder = OpenAI Whisper's AudioEncoder (conv1 k3 p1 + GELU, conv2 k3 s2 p1 + GELU, learned
  positions, pre-LN residual blocks with q/k each scaled by head_dim^-0.25 and no key bias) with the
  Step-Audio2 changes (vLLM/vox-serve ports of stepfun-ai/Step-Audio2): a key-padding bias of -1e10
  built from make_non_pad_mask(x_len, T)[(T+1)%2::2], AvgPool1d(2,2) and `after_norm` LayerNorm; the
  kept length is (x_len+1)//2//2.
- adapter: Conv1d(k, stride, padding=1) + GELU, Linear -> 2048, ReLU, Linear -> llm_dim; it runs on
  every pooled row and keeps (len-1)//2+1 rows (the upstream slice after the batch forward).
- decoder = Hugging Face Qwen2 (RMSNorm, GQA with q/k/v biases, rotate-half RoPE with
  inv_freq = 1/theta^(2i/d) in float32, causal softmax attention, SwiGLU MLP, untied lm_head).
Math runs in float64 so that the comparison measures the C++ engine's error alone. With --round-bf16
the weight matrices are first rounded to bfloat16 (the values our bf16 path multiplies with).

CLI: model.py --model DIR --mel A.npy[,B.npy] --prompt-ids IDS.npy --out DIR [--max-tokens N]
     [--round-bf16]   writes encoder_K.npy, adapter_K.npy, prompt_ids.npy, logits_prefill.npy,
     logits_step_K.npy (K=1..3), tokens.npy, like `stepaudio run --dump`.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = bytearray(data[base + a:base + b])
        dt = SAFETENSORS_DTYPES[info["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dt)
        out[name] = t.reshape(info["shape"]).float()
    return out


def load(folder, round_bf16=False):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    idx = os.path.join(folder, "model.safetensors.index.json")
    w = {}
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        for fn in files:
            w.update(read_safetensors(os.path.join(folder, fn)))
    else:
        w.update(read_safetensors(os.path.join(folder, "model.safetensors")))
    if round_bf16:
        # What --quant bf16 does to an f32 checkpoint: matrices (linear/conv weights, embeddings,
        # lm_head) are rounded to bf16; vectors (biases, norm weights) and the positional embedding
        # table stay float32.
        w = {k: (v.to(torch.bfloat16).float() if v.dim() >= 2 and "positional_embedding" not in k else v)
             for k, v in w.items()}
    return cfg, {k: v.to(DT) for k, v in w.items()}


def patch_count(t):
    enc = ((t - 2 + 1) // 2) // 2
    return (enc - 1) // 2 + 1


def encode(cfg, w, mel):
    """mel: (128, T) -> (encoder rows (enc, n_state), adapter rows (N, llm_dim))."""
    ac = cfg["audio_encoder_config"]
    n_head = ac["n_audio_head"]
    x = torch.from_numpy(mel).to(DT)[None]  # (1, n_mels, T)
    t = x.shape[-1]
    x_len = t - 2
    x = F.gelu(F.conv1d(x, w["encoder.conv1.weight"], w["encoder.conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, w["encoder.conv2.weight"], w["encoder.conv2.bias"], stride=2, padding=1))
    x = x.permute(0, 2, 1)  # (1, T', n_state)
    valid = torch.arange(t) < x_len
    valid = valid[(t + 1) % 2::2]
    bias = (1.0 - valid.to(DT)) * -1.0e10  # (T',)
    x = x + w["encoder.positional_embedding.weight"][: x.shape[1]]
    n_state = x.shape[-1]
    hd = n_state // n_head
    for i in range(ac["n_audio_layer"]):
        b = "encoder.blocks.%d." % i
        h = F.layer_norm(x, (n_state,), w[b + "attn_ln.weight"], w[b + "attn_ln.bias"], eps=1e-5)
        q = F.linear(h, w[b + "attn.query.weight"], w[b + "attn.query.bias"])
        k = F.linear(h, w[b + "attn.key.weight"])
        v = F.linear(h, w[b + "attn.value.weight"], w[b + "attn.value.bias"])
        s = hd ** -0.25
        q = q.view(1, -1, n_head, hd).permute(0, 2, 1, 3) * s
        k = k.view(1, -1, n_head, hd).permute(0, 2, 3, 1) * s
        v = v.view(1, -1, n_head, hd).permute(0, 2, 1, 3)
        att = torch.softmax(q @ k + bias, dim=-1)
        o = (att @ v).permute(0, 2, 1, 3).flatten(2)
        x = x + F.linear(o, w[b + "attn.out.weight"], w[b + "attn.out.bias"])
        h = F.layer_norm(x, (n_state,), w[b + "mlp_ln.weight"], w[b + "mlp_ln.bias"], eps=1e-5)
        h = F.linear(F.gelu(F.linear(h, w[b + "mlp.0.weight"], w[b + "mlp.0.bias"])),
                     w[b + "mlp.2.weight"], w[b + "mlp.2.bias"])
        x = x + h
    x = F.avg_pool1d(x.permute(0, 2, 1), 2, 2).permute(0, 2, 1)
    x = F.layer_norm(x, (n_state,), w["encoder.after_norm.weight"], w["encoder.after_norm.bias"], eps=1e-5)
    enc_len = (x_len + 1) // 2 // 2
    a = F.gelu(F.conv1d(x.permute(0, 2, 1), w["adapter.conv.weight"], w["adapter.conv.bias"],
                        stride=ac["adapter_stride"], padding=1)).permute(0, 2, 1)
    a = F.linear(F.relu(F.linear(a, w["adapter.linear1.weight"], w["adapter.linear1.bias"])),
                 w["adapter.linear2.weight"], w["adapter.linear2.bias"])
    n = (enc_len - 1) // 2 + 1
    return x[0, :enc_len], a[0, :n]


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def decoder_logits(cfg, w, embeds):
    """embeds: (L, hidden) -> logits of the last position (vocab,). Full recompute, no cache."""
    return decoder_logits_all(cfg, w, embeds, last_only=True)[0]


def decoder_logits_all(cfg, w, embeds, last_only=False):
    """embeds: (L, hidden) -> logits of every position (L, vocab) (or of the last one, (1, vocab))."""
    tc = cfg["text_config"]
    H, nh, kv = tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"]
    hd = H // nh
    eps = tc["rms_norm_eps"]
    L = embeds.shape[0]
    inv_freq = 1.0 / (tc["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = torch.arange(L).float()[:, None] * inv_freq[None]  # float32, as HF computes it
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos().to(DT), emb.sin().to(DT)
    causal = torch.full((L, L), float("-inf"), dtype=DT).triu(1)
    x = embeds
    for i in range(tc["num_hidden_layers"]):
        b = "model.layers.%d." % i
        h = rms_norm(x, w[b + "input_layernorm.weight"], eps)
        q = F.linear(h, w[b + "self_attn.q_proj.weight"], w[b + "self_attn.q_proj.bias"]).view(L, nh, hd)
        k = F.linear(h, w[b + "self_attn.k_proj.weight"], w[b + "self_attn.k_proj.bias"]).view(L, kv, hd)
        v = F.linear(h, w[b + "self_attn.v_proj.weight"], w[b + "self_attn.v_proj.bias"]).view(L, kv, hd)
        q = q * cos[:, None] + rotate_half(q) * sin[:, None]
        k = k * cos[:, None] + rotate_half(k) * sin[:, None]
        rep = nh // kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + causal
        o = torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1), v).reshape(L, nh * hd)
        x = x + F.linear(o, w[b + "self_attn.o_proj.weight"])
        h = rms_norm(x, w[b + "post_attention_layernorm.weight"], eps)
        g = F.linear(h, w[b + "mlp.gate_proj.weight"])
        u = F.linear(h, w[b + "mlp.up_proj.weight"])
        x = x + F.linear(F.silu(g) * u, w[b + "mlp.down_proj.weight"])
    x = rms_norm(x[-1:] if last_only else x, w["model.norm.weight"], eps)
    return F.linear(x, w["lm_head.weight"])


def token_id(folder, name):
    with open(os.path.join(folder, "added_tokens.json")) as f:
        return json.load(f)[name]


def run(folder, mels, prompt_ids, max_tokens, round_bf16=False, dump=None):
    cfg, w = load(folder, round_bf16)
    patch = token_id(folder, "<audio_patch>")
    eos = token_id(folder, "<|EOT|>")
    out = {"prompt_ids": prompt_ids.astype(np.int32)}
    rows = []
    for i, mel in enumerate(mels):
        e, a = encode(cfg, w, mel)
        assert a.shape[0] == patch_count(mel.shape[1])
        out["encoder_%d" % i] = e.numpy().astype(np.float32)
        out["adapter_%d" % i] = a.numpy().astype(np.float32)
        rows.append(a)
    emb = w["model.embed_tokens.weight"][torch.from_numpy(prompt_ids.astype(np.int64))]
    pos = np.nonzero(prompt_ids == patch)[0]
    if rows:
        audio = torch.cat(rows)
        assert audio.shape[0] == len(pos), (audio.shape, len(pos))
        emb[torch.from_numpy(pos)] = audio
    tokens = []
    for step in range(max_tokens):
        logits = decoder_logits(cfg, w, emb)
        out["logits_prefill" if step == 0 else "logits_step_%d" % step] = logits.numpy().astype(np.float32)
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        if tok == eos:
            break
        emb = torch.cat([emb, w["model.embed_tokens.weight"][tok][None]])
    out["tokens"] = np.array(tokens, dtype=np.int32)
    for k in list(out):
        if k.startswith("logits_step_") and int(k.rsplit("_", 1)[1]) > 3:
            del out[k]
    if dump:
        os.makedirs(dump, exist_ok=True)
        for k, v in out.items():
            np.save(os.path.join(dump, k + ".npy"), v)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--mel", default="")
    ap.add_argument("--prompt-ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--round-bf16", action="store_true")
    a = ap.parse_args(argv)
    mels = [np.load(p) for p in a.mel.split(",") if p]
    run(a.model, mels, np.load(a.prompt_ids), a.max_tokens, a.round_bf16, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
