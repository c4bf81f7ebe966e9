"""Independent PyTorch reference of the audio front end (the official Step-Audio 2 recipe).

Loads with torchaudio, resamples with torchaudio.transforms.Resample (default parameters, the
official pipeline's resampler), and computes the official log-mel with torch.stft and
torchaudio.functional.melscale_fbanks(norm="slaney", mel_scale="slaney"). Written from the
upstream semantics (stepaudio2 utils.log_mel_spectrogram / load_audio), not from our C++.

Run with Debian's python: /usr/bin/python3 tests/reference/frontend.py FILE [--out DIR]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 128
RIGHT_PADDING = 479


def load_16k(path, channel="first"):
    """Returns 16 kHz mono float32 PCM as the official load_audio does (resample, then channel 0)."""
    wav, sr = torchaudio.load(path)  # (channels, samples), float32 scaled to [-1, 1]
    if sr != SAMPLE_RATE:
        wav = torchaudio.transforms.Resample(orig_freq=sr, new_freq=SAMPLE_RATE)(wav)
    return wav[0] if channel == "first" else wav.mean(dim=0)


def resample_array(x, sr):
    t = torch.from_numpy(np.asarray(x, dtype=np.float32))[None]
    if sr != SAMPLE_RATE:
        t = torchaudio.transforms.Resample(orig_freq=sr, new_freq=SAMPLE_RATE)(t)
    return t[0]


def mel_filters():
    """(128, 201) Slaney filters. The official code ships librosa's table (computed in float64,
    stored as float32). torchaudio evaluates the same formula in the default dtype; in float32 its
    weights near the triangle edges are off by up to 1% (measured), so evaluate it in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        fb = torchaudio.functional.melscale_fbanks(
            n_freqs=N_FFT // 2 + 1, f_min=0.0, f_max=SAMPLE_RATE / 2, n_mels=N_MELS,
            sample_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    finally:
        torch.set_default_dtype(previous)
    return fb.T.to(torch.float32)  # (n_mels, n_freqs)


def log_mel(audio):
    """audio: 1-D float32 tensor at 16 kHz -> (128, T) log-mel, T = (n + 479) // 160."""
    audio = torch.nn.functional.pad(audio, (0, RIGHT_PADDING))
    window = torch.hann_window(N_FFT)
    stft = torch.stft(audio, N_FFT, HOP, window=window, return_complex=True)  # center, reflect
    magnitudes = stft[..., :-1].abs() ** 2
    mel_spec = mel_filters() @ magnitudes
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def audio_patch_tokens(frames):
    """The official compute_token_num for a chunk of `frames` mel frames."""
    length = frames - 2
    enc = ((length + 1) // 2) // 2
    return (enc + 2 * 1 - 3) // 2 + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("audio")
    ap.add_argument("--channel", default="first", choices=["first", "mix"])
    ap.add_argument("--out", help="directory for pcm.npy and mel_<i>.npy")
    ap.add_argument("--chunks", help="JSON list of [begin, end) sample ranges (default: 25 s)")
    args = ap.parse_args()
    pcm = load_16k(args.audio, args.channel)
    if args.chunks:
        ranges = json.loads(args.chunks)
    else:
        step = 25 * SAMPLE_RATE
        ranges = [[i, min(i + step, len(pcm))] for i in range(0, len(pcm), step)]
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        np.save(os.path.join(args.out, "pcm.npy"), pcm.numpy())
    for i, (b, e) in enumerate(ranges):
        mel = log_mel(pcm[b:e])
        if args.out:
            np.save(os.path.join(args.out, f"mel_{i}.npy"), mel.numpy())
        print(json.dumps({"chunk": i, "frames": mel.shape[1],
                          "audio_patch_tokens": audio_patch_tokens(mel.shape[1])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
