// run_bench() (include/stepaudio/bench.h): probes, then each stage with warm-up and repetitions.
#include "stepaudio/bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "model/encoder.h"
#include "model/session.h"
#include "model/weight_store.h"
#include "ops/cpu.h"
#include "ops/probes.h"
#include "stepaudio/error.h"
#include "util/log.h"

namespace stepaudio {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// 1 warm-up + reps timed runs of fn() (which returns its own measurement).
template <typename Fn>
BenchStat repeat(int reps, Fn fn) {
  fn();
  std::vector<double> v;
  for (int i = 0; i < std::max(1, reps); ++i) v.push_back(fn());
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  const double med = v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
  return {med, v.front(), v.back()};
}

size_t matrix_bytes(const ops::WeightView& w) {
  return w.rows * ops::row_bytes(w.dtype, w.cols);
}

// FLOPs of the encoder blocks' linears (q, k, v, out, fc1, fc2) for a chunk of T mel frames.
double encoder_linear_flops(const model::ModelConfig& c, size_t T) {
  const auto& a = c.audio;
  const double S = static_cast<double>(a.n_state);
  const double T2 = static_cast<double>(ops::conv1d_out_len(T, 3, 2, 1));
  return a.n_layer * 2.0 * T2 * 12 * S * S;
}

// FLOPs of the encoder + adapter for a chunk of T mel frames (2 per multiply-add).
double encoder_flops(const model::ModelConfig& c, size_t T) {
  const auto& a = c.audio;
  const double S = static_cast<double>(a.n_state);
  const double T2 = static_cast<double>(ops::conv1d_out_len(T, 3, 2, 1));
  double f = 2.0 * T * S * a.n_mels * 3 + 2.0 * T2 * S * S * 3;
  f += encoder_linear_flops(c, T) + a.n_layer * 2.0 * 2 * T2 * T2 * S;  // + QK^T, PV
  const double P = std::floor(T2 / 2),
               A = static_cast<double>(
                   ops::conv1d_out_len(static_cast<size_t>(P), a.kernel_size, a.adapter_stride, 1));
  const double N = static_cast<double>(audio_patch_count(T));
  f += 2.0 * A * S * S * a.kernel_size +
       2.0 * N * (S * a.adapter_hidden + a.adapter_hidden * a.llm_dim);
  return f;
}

// FLOPs of prefilling P tokens (linears, causal attention, one lm_head row).
double prefill_flops(const model::ModelConfig& c, size_t P) {
  const auto& t = c.text;
  const double H = static_cast<double>(t.hidden), hd = static_cast<double>(t.head_dim);
  const double lin = H * (t.n_heads * hd) * 2 + H * (t.n_kv_heads * hd) * 2 + 3.0 * H * t.ffn;
  const double attn = 2.0 * 2 * t.n_heads * hd * (static_cast<double>(P) * (P + 1) / 2);
  return t.n_layers * (2.0 * lin * P + attn) + 2.0 * H * t.vocab;
}
}  // namespace

BenchReport run_bench(const BenchOptions& o) {
  BenchReport r;
  ops::ThreadPool pool(o.threads);
  ops::MachineLimits lim = ops::measure_machine(pool);
  r.threads = lim.threads;
  r.isa = lim.isa;
  r.read_gbps = lim.read_gbps;
  r.read_gbps_1thread = lim.read_gbps_1thread;
  r.peak_fp32_gflops = lim.peak_fp32_gflops;
  r.peak_bf16_gflops = lim.peak_bf16_gflops;
  r.peak_int8_gops = lim.peak_int8_gops;
  SA_INFO("machine: read %.1f GB/s (1 thread %.1f), fp32 %.0f GFLOP/s, bf16 %.0f, int8 %.0f GOP/s",
          r.read_gbps, r.read_gbps_1thread, r.peak_fp32_gflops, r.peak_bf16_gflops,
          r.peak_int8_gops);

  auto t0 = Clock::now();
  std::shared_ptr<const Model> mp =
      o.synthetic.empty()
          ? load_model(o.model, {o.quant, true, o.int8_prefill, o.int8_encoder})
          : make_synthetic_model(o.synthetic, 0, o.quant, true, o.int8_prefill, o.int8_encoder);
  r.load_s = ms_since(t0) / 1e3;
  const Model& m = *mp;
  const auto& tc = m.cfg.text;
  r.quant = quant_name(o.quant);
  r.model_bytes = m.weight_bytes;
  size_t wb = matrix_bytes(m.lm_head.w) + tc.hidden * 4;
  for (const auto& l : m.layers)
    wb += matrix_bytes(l.q.w) + matrix_bytes(l.k.w) + matrix_bytes(l.v.w) + matrix_bytes(l.o.w) +
          matrix_bytes(l.gate.w) + matrix_bytes(l.up.w) + matrix_bytes(l.down.w) +
          (2 * tc.hidden + 2 * l.k.w.rows + l.q.w.rows) * 4;  // norms + biases
  r.weight_bytes = wb;
  // q8/q4 run the encoder and prefill GEMMs in bf16 where the CPU has a bf16 dot (AVX-512 BF16),
  // in float32 elsewhere (AVX2: oneDNN's f32 GEMM; the bf16 probe then reports the f32 peak).
  const bool fast = o.quant == Quant::q8 || o.quant == Quant::q4;
  const bool bf16_dot = fast && ops::cpu_isa() == ops::Isa::avx512;
  const double peak = (bf16_dot ? r.peak_bf16_gflops : r.peak_fp32_gflops) * 1e9;
  r.compute_peak = bf16_dot ? "bf16" : "fp32";

  // Encoder: S seconds = 100 S mel frames of valid audio (+2 padding frames), random values in the
  // range of real scaled log-mels.
  r.audio_seconds = o.audio_seconds;
  const size_t n_mels = m.cfg.audio.n_mels;
  size_t T = static_cast<size_t>(std::lround(o.audio_seconds * 100)) + 2;
  T = std::clamp<size_t>(T, 5, 2 * m.cfg.audio.n_ctx);
  std::vector<float> mel(n_mels * T);
  for (size_t i = 0; i < mel.size(); ++i)
    mel[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)) * 0.8);
  r.encoder_gflop = encoder_flops(m.cfg, T) / 1e9;
  r.encoder_bound_ms = r.encoder_gflop * 1e9 / peak * 1e3;
  if (!m.blocks.empty() && ops::is_block_type(m.blocks[0].query.w.dtype)) {
    // The int8 encoder (LoadOptions::int8_encoder): its linears at the int8 peak, the rest
    // (attention, convolutions, adapter) at the bf16 one.
    const double lin = encoder_linear_flops(m.cfg, T);
    r.compute_peak = "int8+bf16";
    r.encoder_bound_ms =
        (lin / (r.peak_int8_gops * 1e9) + (r.encoder_gflop * 1e9 - lin) / peak) * 1e3;
  }
  model::AudioEmbedding emb;
  r.encoder_ms = repeat(o.reps, [&] {
    auto t = Clock::now();
    emb = model::encode_audio(m, pool, mel.data(), n_mels, T);
    return ms_since(t);
  });

  // Prefill: the audio rows + a 30-token text frame (system prompt, turn markers).
  const size_t text_tokens = 30;
  const size_t P = emb.n_rows + text_tokens;
  r.prefill_tokens = P;
  std::vector<float> x(P * tc.hidden);  // [P][H]
  {
    model::Session s(m, pool, P);
    for (size_t i = 0; i < text_tokens; ++i)
      s.embed(static_cast<int32_t>((i * 7919) % std::min<size_t>(tc.vocab, 151000)),
              x.data() + i * tc.hidden);
    std::copy(emb.adapter.begin(), emb.adapter.end(), x.begin() + text_tokens * tc.hidden);
  }
  r.prefill_gflop_per_token = prefill_flops(m.cfg, P) / 1e9 / static_cast<double>(P);
  // The int8 GEMM where the decoder's weights are blocks and its kernel is VNNI (AVX-512).
  const bool int8 = fast && o.int8_prefill && ops::cpu_isa() == ops::Isa::avx512;
  r.prefill_peak = int8 ? "int8" : bf16_dot ? "bf16" : "fp32";
  r.prefill_bound_tps = (int8 ? r.peak_int8_gops * 1e9 : peak) / (r.prefill_gflop_per_token * 1e9);
  std::vector<float> logits(tc.vocab);
  auto prefill = [&] {
    model::Session s(m, pool, P);
    auto t = Clock::now();
    s.forward(x.data(), P, logits.data());
    return static_cast<double>(P) / (ms_since(t) / 1e3);
  };
  r.prefill_tps = repeat(o.reps, prefill);
  if (int8) {  // the bf16-activation path on the same weights: the flag flipped and back (this
               // model was built here and nothing else holds it)
    model::set_int8_prefill(const_cast<Model&>(m), false);
    r.prefill_bf16_tps = repeat(o.reps, prefill);
    model::set_int8_prefill(const_cast<Model&>(m), true);
  }

  // Decode: after the prompt, decode_tokens single-token steps (greedy ids).
  // The bound: the decoder-pattern probe (ops::read_pass_gbps) over the matrices one token reads,
  // in the decode's order and calls (fused q|k|v and gate|up where decode uses them). One pass
  // before the warm-up and before each repetition: the same memory as the decode (the bandwidth of
  // these VMs depends on where memory lands) at the same moments (other tenants of the host move
  // it from second to second). The limit is the passes' median, as the decode's reported rate is
  // the repetitions' median (the best pass against the median decode read 56-62% in runs where
  // one pass met a quiet moment and the decodes did not).
  r.decode_tokens = o.decode_tokens;
  std::vector<ops::ReadRegion> regions;
  const bool fused = !m.layers.empty() && m.layers[0].qkv.w.data && m.layers[0].gate_up.w.data;
  for (const auto& l : m.layers) {
    std::vector<const ops::WeightView*> ws = {&l.q.w,    &l.k.w,  &l.v.w,   &l.o.w,
                                              &l.gate.w, &l.up.w, &l.down.w};
    if (fused) ws = {&l.qkv.w, &l.o.w, &l.gate_up.w, &l.down.w};
    for (const ops::WeightView* w : ws) regions.push_back({w->data, matrix_bytes(*w)});
  }
  regions.push_back({m.lm_head.w.data, matrix_bytes(m.lm_head.w)});
  model::Session base(m, pool, P + o.decode_tokens * (o.reps + 2));
  base.forward(x.data(), P, logits.data());
  std::vector<float> e(tc.hidden);
  std::vector<double> passes;  // GB/s of each pass
  r.decode_tps = repeat(o.reps, [&] {
    passes.push_back(ops::read_pass_gbps(pool, regions.data(), regions.size()));
    auto t = Clock::now();
    for (size_t k = 0; k < o.decode_tokens; ++k) {
      const auto id =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      base.embed(id, e.data());
      base.forward(e.data(), 1, logits.data());
    }
    return static_cast<double>(o.decode_tokens) / (ms_since(t) / 1e3);
  });
  if (passes.size() > 1) passes.erase(passes.begin());  // the warm-up's, as repeat() drops it
  std::sort(passes.begin(), passes.end());
  const size_t h = passes.size() / 2;
  r.read_gbps_weights = passes.size() % 2 ? passes[h] : (passes[h - 1] + passes[h]) / 2;
  r.decode_bound_tps = r.read_gbps_weights * 1e9 / static_cast<double>(wb);
  SA_INFO("decode bound: weights read at %.1f GB/s (machine probe %.1f)", r.read_gbps_weights,
          r.read_gbps);

  // Batched decode: B forks of the prompt stepped together, greedy per session, steps per
  // repetition (fewer than decode_tokens at large B keep the run short; the step time is flat).
  const size_t batch_steps = std::max<size_t>(4, std::min<size_t>(o.decode_tokens, 16));
  for (size_t B : o.decode_batch) {
    if (B == 0) continue;
    std::vector<model::Session> ss;
    std::vector<std::vector<float>> lg(B, logits);
    for (size_t i = 0; i < B; ++i)
      ss.push_back(base.fork(base.pos() + batch_steps * (static_cast<size_t>(o.reps) + 2)));
    std::vector<model::Session*> sp;
    std::vector<float*> lp;
    for (size_t i = 0; i < B; ++i) sp.push_back(&ss[i]), lp.push_back(lg[i].data());
    std::vector<float> xb(B * tc.hidden);
    DecodeBatchStat d{B, {}};
    d.step_ms = repeat(o.reps, [&] {
      auto t = Clock::now();
      for (size_t k = 0; k < batch_steps; ++k) {
        for (size_t i = 0; i < B; ++i)
          ss[i].embed(static_cast<int32_t>(std::max_element(lg[i].begin(), lg[i].end()) -
                                           lg[i].begin()),
                      xb.data() + i * tc.hidden);
        model::Session::forward_batch(sp.data(), B, xb.data(), lp.data());
      }
      return ms_since(t) / static_cast<double>(batch_steps);
    });
    SA_INFO("decode batch of %zu: %.1f ms per step", B, d.step_ms.median);
    r.decode_batch.push_back(d);
  }

  // End to end: the library's generate() on the same audio (random mel as one chunk), greedy,
  // decode_tokens new tokens (EOS cannot stop a random model early: it is masked by its rarity).
  if (m.audio_patch_id >= 0) {
    GenerateRequest req;
    MelChunk c;
    c.data = mel;
    c.n_mels = n_mels;
    c.n_frames = T;
    req.mels.push_back(std::move(c));
    for (size_t i = 0; i < text_tokens; ++i)
      req.prompt_ids.push_back(
          static_cast<int32_t>((i * 7919) % std::min<size_t>(tc.vocab, 151000)));
    req.prompt_ids.insert(req.prompt_ids.begin() + text_tokens / 2, emb.n_rows, m.audio_patch_id);
    req.max_new_tokens = o.decode_tokens;
    req.threads = o.threads;
    r.end_to_end_ms = repeat(std::min(o.reps, 1), [&] {
      auto t = Clock::now();
      generate(m, req);
      return ms_since(t);
    });
  }

  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  r.peak_rss_bytes = static_cast<size_t>(ru.ru_maxrss) * 1024;
  return r;
}

}  // namespace stepaudio
