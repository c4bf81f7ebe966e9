#!/usr/bin/python3
"""PyTorch baseline for `stepaudio bench --synthetic step-audio-2-mini-1layer`: the same computation
timed the same way, so "how many times faster than PyTorch" is measured, not guessed.

What runs: one Qwen2 decoder layer of Step-Audio-2-mini's exact shapes (hidden 3584, 28 query / 4
KV heads of 128, FFN 18944, q/k/v biases, rotate-half RoPE with theta 1e6, SwiGLU), then the final
RMSNorm and a 1024-row lm_head on the last position -- exactly what our 1-layer preset computes.
The math is tests/reference/model.py's decoder_logits() with a KV cache for decode, in the weights'
dtype (bf16 or f32; RMSNorm in float32 as HF's Qwen2RMSNorm, softmax in float32), under
torch.inference_mode(). The whole 28-layer model would be ~16 GB next to other processes; one layer
is 0.47 GB (bf16) / 0.93 GB (f32), and a model's prefill/decode time is ~28x a layer's.

Timing, as `stepaudio bench`: 1 warm-up then --reps repetitions, median and min..max.
  prefill: P tokens (default 155 = the 125 adapter rows of 10 s of audio + 30 text tokens) from an
           empty cache;
  decode:  --decode-tokens single-token steps after the P-token prefix.

  /usr/bin/python3 tests/reference/bench_torch.py --dtype bf16 --threads 2
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

H, NH, NKV, HD, FFN, VOCAB, THETA, EPS = 3584, 28, 4, 128, 18944, 1024, 1e6, 1e-6


def make_weights(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def mat(out, inp):  # uniform +-sqrt(3/fan_in): unit-variance activations, as our synthetic model
        a = math.sqrt(3.0 / inp)
        return ((torch.rand(out, inp, generator=g) * 2 - 1) * a).to(dtype)

    def vec(n, base):
        return (base + 0.1 * (torch.rand(n, generator=g) * 2 - 1)).to(dtype)

    return {
        "in_norm": vec(H, 1.0), "post_norm": vec(H, 1.0), "final_norm": vec(H, 1.0),
        "wq": mat(NH * HD, H), "bq": vec(NH * HD, 0.0), "wk": mat(NKV * HD, H), "bk": vec(NKV * HD, 0.0),
        "wv": mat(NKV * HD, H), "bv": vec(NKV * HD, 0.0), "wo": mat(H, NH * HD),
        "wg": mat(FFN, H), "wu": mat(FFN, H), "wd": mat(H, FFN), "head": mat(VOCAB, H),
    }


def rms_norm(x, w):  # HF Qwen2RMSNorm: float32 math, back to the input dtype, times the weight
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Cache:
    def __init__(self, cap, dtype):
        self.k = torch.empty(cap, NKV, HD, dtype=dtype)
        self.v = torch.empty(cap, NKV, HD, dtype=dtype)
        self.n = 0


INV_FREQ = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.int64).float() / HD))


def forward(w, cache, x):
    """x: (L, H) embeddings at positions cache.n .. cache.n+L-1 -> logits of the last one (VOCAB,)."""
    L, p0, dt = x.shape[0], cache.n, x.dtype
    ang = torch.arange(p0, p0 + L).float()[:, None] * INV_FREQ[None]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos().to(dt)[:, None], emb.sin().to(dt)[:, None]
    h = rms_norm(x, w["in_norm"])
    q = F.linear(h, w["wq"], w["bq"]).view(L, NH, HD)
    k = F.linear(h, w["wk"], w["bk"]).view(L, NKV, HD)
    v = F.linear(h, w["wv"], w["bv"]).view(L, NKV, HD)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    cache.k[p0:p0 + L], cache.v[p0:p0 + L] = k, v
    cache.n += L
    T = cache.n
    rep = NH // NKV
    kk = cache.k[:T].repeat_interleave(rep, dim=1)  # (T, NH, HD), as HF repeat_kv
    vv = cache.v[:T].repeat_interleave(rep, dim=1)
    s = torch.einsum("qhd,khd->hqk", q, kk).float() / math.sqrt(HD)
    if L > 1:  # query i (position p0+i) sees keys j <= p0+i
        s = s + torch.full((L, T), float("-inf")).triu(p0 + 1)
    o = torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1).to(dt), vv).reshape(L, NH * HD)
    x = x + F.linear(o, w["wo"])
    h = rms_norm(x, w["post_norm"])
    x = x + F.linear(F.silu(F.linear(h, w["wg"])) * F.linear(h, w["wu"]), w["wd"])
    return F.linear(rms_norm(x[-1:], w["final_norm"]), w["head"])[0]


def repeat(reps, fn):
    fn()
    v = sorted(fn() for _ in range(reps))
    return statistics.median(v), v[0], v[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=155)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    w = make_weights(dt)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(a.prefill, H, generator=g).to(dt)
    with torch.inference_mode():
        def prefill():
            c = Cache(a.prefill, dt)
            t = time.perf_counter()
            forward(w, c, x)
            return a.prefill / (time.perf_counter() - t)

        base = Cache(a.prefill + a.decode_tokens * (a.reps + 2), dt)
        forward(w, base, x)
        e = x[:1].clone()

        def decode():
            t = time.perf_counter()
            for _ in range(a.decode_tokens):
                forward(w, base, e)
            return a.decode_tokens / (time.perf_counter() - t)

        pre = repeat(a.reps, prefill)
        dec = repeat(a.reps, decode)
    print("torch %s %s, %d threads, 1 layer: prefill %d tokens %.1f tokens/s (min %.1f, max %.1f); "
          "decode %.1f tokens/s (min %.1f, max %.1f)" % (torch.__version__, a.dtype, a.threads, a.prefill,
                                                           *pre, *dec))


if __name__ == "__main__":
    main()
