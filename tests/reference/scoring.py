#!/usr/bin/python3
"""Label scoring with the PyTorch reference (model.py), for the tasks' label-probability tests.

A candidate's log-likelihood given a prompt is sum_j log softmax(logits(prompt + c[:j]))[c[j]],
computed here by a full recompute of prompt + candidate (no cache, no trie, no fork): an
independent check of the engine's forked, batched tree scoring. Probabilities are the
log-likelihoods normalized over the label set (softmax), as the engine reports them.
"""
import numpy as np
import torch

import model as ref


def prompt_embeddings(cfg, w, folder, mels, prompt_ids):
    """Embeddings of prompt_ids with the adapter rows of `mels` at the <audio_patch> positions."""
    patch = ref.token_id(folder, "<audio_patch>")
    emb = w["model.embed_tokens.weight"][torch.from_numpy(np.asarray(prompt_ids, dtype=np.int64))].clone()
    rows = [ref.encode(cfg, w, m)[1] for m in mels]
    pos = np.nonzero(np.asarray(prompt_ids) == patch)[0]
    if rows:
        audio = torch.cat(rows)
        assert audio.shape[0] == len(pos), (audio.shape, len(pos))
        emb[torch.from_numpy(pos)] = audio
    return emb


def candidate_logprobs(folder, mels, prompt_ids, candidates, round_bf16=False):
    cfg, w = ref.load(folder, round_bf16)
    emb = prompt_embeddings(cfg, w, folder, mels, prompt_ids)
    table = w["model.embed_tokens.weight"]
    out = []
    for cand in candidates:
        x = torch.cat([emb, table[torch.tensor(cand[:-1], dtype=torch.int64)]]) if len(cand) > 1 else emb
        logits = ref.decoder_logits_all(cfg, w, x)[len(prompt_ids) - 1:]  # rows predicting cand
        lp = torch.log_softmax(logits, dim=-1)
        out.append(float(sum(lp[j, t] for j, t in enumerate(cand))))
    return np.array(out)


def normalize(logprobs):
    p = np.exp(logprobs - logprobs.max())
    return p / p.sum()
