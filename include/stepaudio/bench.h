// `stepaudio bench`: speed and memory of every stage, each as a ratio to this machine's own limits
// measured in the same run (read bandwidth, f32 FMA / bf16 dot / int8 dot peaks).
//
//   stage     measured                                  bound
//   encoder   ms for S seconds of audio (random mel)     encoder FLOPs / peak of its arithmetic
//   prefill   tokens/s for the prompt S seconds make     FLOPs per token / peak of its arithmetic
//   decode    tokens/s, one token at a time              read GB/s / bytes of decoder weights per
//   token e2e       generate(): encode + prefill + N tokens     (sum of the above)
// "Its arithmetic": --quant q8/q4 run the encoder on the bf16-dot GEMM (bf16 peak) and prefill on
// the int8 VNNI GEMM (int8 peak; with int8_prefill false, the bf16 GEMM); f32/bf16 keep float32
// activations (f32 FMA peak). decode_batch: one step of B sessions vs one (the weights are read
// once per step, so a step of B should cost little more than a step of one). Every stage: 1 warm-up, `reps` timed
// repetitions, median and min..max reported.
// Thread-safety: runs alone (it measures the machine).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "stepaudio/model.h"

namespace stepaudio {

struct BenchOptions {
  std::string model;      // checkpoint folder, or
  std::string synthetic;  // synthetic preset ("step-audio-2-mini", "tiny")
  Quant quant = Quant::q4;
  double audio_seconds = 10;
  int threads = 0;  // 0: physical cores
  int reps = 3;
  size_t decode_tokens = 32;
  bool int8_prefill = true;  // LoadOptions::int8_prefill
  bool int8_encoder = true;  // LoadOptions::int8_encoder
  // Batched decode steps (decode_batch) for these numbers of sessions; empty: none.
  std::vector<size_t> decode_batch = {1, 4, 8};
};

struct BenchStat {
  double median = 0, min = 0, max = 0;
};

// One decoder step of B sessions together (model::Session::forward_batch), each session at the
// prompt's length plus the steps so far: the time per step (all B tokens).
struct DecodeBatchStat {
  size_t sessions = 0;
  BenchStat step_ms;
};

struct BenchReport {
  // machine
  int threads = 0;
  std::string isa;
  double read_gbps = 0, read_gbps_1thread = 0, peak_fp32_gflops = 0, peak_bf16_gflops = 0,
         peak_int8_gops = 0;
  // The decoder's own weight matrices read with the decode's pattern and no arithmetic, median of
  // one pass per decode repetition (ops::read_pass_gbps): the bandwidth of the decode bound.
  double read_gbps_weights = 0;
  // model
  std::string quant;
  size_t weight_bytes = 0;  // decoder weights read per decoded token
  size_t model_bytes = 0;   // all weights held
  double load_s = 0;
  // stages
  double audio_seconds = 0;
  BenchStat encoder_ms;
  double encoder_gflop = 0, encoder_bound_ms = 0;
  size_t prefill_tokens = 0;
  BenchStat prefill_tps;
  // q8/q4 with the int8 prefill: the same prefill with bf16 activations (the other path of
  // LoadOptions::int8_prefill), same run, for the ratio; 0 otherwise.
  BenchStat prefill_bf16_tps;
  double prefill_gflop_per_token = 0, prefill_bound_tps = 0;
  std::string compute_peak;  // the encoder's arithmetic: "bf16", "fp32", or "int8+bf16" (int8 linears)
  std::string prefill_peak;  // "int8", "bf16" or "fp32": the arithmetic prefill uses
  size_t decode_tokens = 0;
  BenchStat decode_tps;
  double decode_bound_tps = 0;
  std::vector<DecodeBatchStat> decode_batch;
  BenchStat end_to_end_ms;
  size_t peak_rss_bytes = 0;
};

// Throws Error like load_model / make_synthetic_model.
BenchReport run_bench(const BenchOptions& options);

// Quantization accuracy (`stepaudio bench --kl N`): the reference model greedily decodes N tokens
// after a fixed text prompt, keeping its next-token log-distribution P at every step; then each
// quantized model is teacher-forced on the same tokens and its distribution Q compared:
// KL(P || Q) = sum_i p_i (log p_i - log q_i) in nats, per step, averaged over the N steps, and the
// fraction of steps whose argmax equals the reference's. One model is held at a time (full size:
// the bf16 reference, 16.6 GB, is released before q8 is built). q8/q4 are also measured as a
// prefill would compute the same rows (KlResult::mode), with both activation types.
struct KlOptions {
  bool int8_encoder = true;  // LoadOptions::int8_encoder for the q8/q4 models
  std::string model;      // checkpoint folder (or .gguf: then only that file's quant is compared)
  std::string synthetic;  // or synthetic preset
  Quant reference = Quant::f32;
  std::vector<Quant> quants = {Quant::q8, Quant::q4};
  size_t steps = 256;
  int threads = 0;
  uint64_t seed = 0;  // synthetic weights
};
struct KlResult {
  Quant quant;
  size_t steps = 0;
  double mean_kl = 0, max_kl = 0;  // nats
  double top1_agreement = 0;       // fraction of steps with the reference's argmax
  // "decode": one token per step (the int8 GEMV for q8/q4); "prefill-int8" / "prefill-bf16" (q8
  // and q4 only): the same tokens in one pass of prompt + steps rows, as a prefill computes them,
  // with activations quantized to int8 blocks (AVX-512 only: absent elsewhere) or rounded to
  // bf16 (LoadOptions::int8_prefill).
  std::string mode = "decode";
  // Decode entries: the adapter rows of 10 s of audio (a fixed mel) against the reference's:
  // sum (a - r)^2 / sum r^2 (the encoder as built: int8 under q8/q4 with
  // LoadOptions::int8_encoder on AVX-512, else bf16). -1 when the model has no encoder.
  double encoder_nmse = -1;
};
std::vector<KlResult> quant_kl(const KlOptions& options);

}  // namespace stepaudio
