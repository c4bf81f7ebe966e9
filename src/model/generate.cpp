// generate(): the request orchestration the CLI and (later) the server call:
// encode chunks -> splice adapter rows at the <audio_patch> positions -> prefill -> sample loop.
// The named --dump intermediates (DESIGN.md §5) are written here so every caller gets them.
#include <chrono>
#include <filesystem>

#include "model/encoder.h"
#include "model/sampler.h"
#include "model/session.h"
#include "stepaudio/error.h"
#include "util/log.h"
#include "stepaudio/npy.h"

namespace stepaudio {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed))
    throw Error(Errc::canceled, "generation canceled");
}
}  // namespace

GenerateResult generate(const Model& m, const GenerateRequest& req, const ProgressFn& progress,
                        const std::atomic<bool>* cancel) {
  const auto& tc = m.cfg.text;
  const size_t H = tc.hidden;
  const bool dump = !req.dump_dir.empty();
  if (dump) std::filesystem::create_directories(req.dump_dir);
  auto dump_path = [&](const std::string& name) {
    return (std::filesystem::path(req.dump_dir) / name).string();
  };
  if (req.prompt_ids.empty()) throw Error(Errc::invalid_argument, "empty prompt");
  for (int32_t id : req.prompt_ids)
    if (id < 0 || static_cast<size_t>(id) >= tc.vocab)
      throw Error(Errc::invalid_argument, "prompt id " + std::to_string(id) +
                                              " outside the vocabulary (" +
                                              std::to_string(tc.vocab) + ")");
  size_t n_patch = 0;
  for (int32_t id : req.prompt_ids) n_patch += (id == m.audio_patch_id);
  size_t expected = 0;
  for (const auto& c : req.mels) {
    if (c.data.size() != c.n_mels * c.n_frames)
      throw Error(Errc::invalid_argument, "mel chunk data size mismatch");
    expected += audio_patch_count(c.n_frames);
  }
  if (!req.mels.empty() && m.audio_patch_id < 0)
    throw Error(Errc::model_format,
                "the checkpoint's tokenizer files define no <audio_patch> token");
  if (n_patch != expected)
    throw Error(Errc::invalid_argument, "the prompt has " + std::to_string(n_patch) +
                                            " <audio_patch> ids but the mel chunks need " +
                                            std::to_string(expected));
  model::Sampler sampler(req.sampling);  // validates the options before any compute
  const size_t capacity = req.prompt_ids.size() + req.max_new_tokens;
  if (capacity > tc.max_positions)
    throw Error(Errc::invalid_argument,
                "prompt (" + std::to_string(req.prompt_ids.size()) + ") + max new tokens (" +
                    std::to_string(req.max_new_tokens) + ") exceeds max_position_embeddings " +
                    std::to_string(tc.max_positions));

  ops::ThreadPool pool(req.threads);
  GenerateResult res;

  // 1. Audio chunks -> adapter rows [n_patch][H], in chunk order.
  auto t0 = Clock::now();
  std::vector<float> audio_rows;
  for (size_t i = 0; i < req.mels.size(); ++i) {
    check_cancel(cancel);
    const auto& c = req.mels[i];
    model::AudioEmbedding e = model::encode_audio(m, pool, c.data.data(), c.n_mels, c.n_frames);
    if (dump) {
      write_npy(dump_path("encoder_" + std::to_string(i) + ".npy"), e.encoder.data(),
                      {e.enc_rows, m.cfg.audio.n_state});
      write_npy(dump_path("adapter_" + std::to_string(i) + ".npy"), e.adapter.data(),
                      {e.n_rows, H});
    }
    audio_rows.insert(audio_rows.end(), e.adapter.begin(), e.adapter.end());
    if (progress) progress({GenerateProgress::Stage::encode, i + 1, req.mels.size()});
  }
  res.encode_ms = ms_since(t0);

  // 2. Prompt embeddings with the audio rows spliced in.
  model::Session session(m, pool, capacity);
  const size_t L = req.prompt_ids.size();
  std::vector<float> x(L * H);  // [L][H]
  for (size_t i = 0, a = 0; i < L; ++i) {
    if (req.prompt_ids[i] == m.audio_patch_id && !req.mels.empty())
      std::copy_n(audio_rows.data() + (a++) * H, H, x.data() + i * H);
    else
      session.embed(req.prompt_ids[i], x.data() + i * H);
  }
  if (dump) write_npy(dump_path("prompt_ids.npy"), req.prompt_ids.data(), {L});

  // 3. Prefill.
  check_cancel(cancel);
  t0 = Clock::now();
  std::vector<float> logits(tc.vocab);
  session.forward(x.data(), L, logits.data());
  res.prefill_ms = ms_since(t0);
  if (progress) progress({GenerateProgress::Stage::prefill, L, L});
  if (dump) write_npy(dump_path("logits_prefill.npy"), logits.data(), {tc.vocab});

  // 4. Generation: token k is chosen from the logits after k decode steps (k = 0: prefill).
  t0 = Clock::now();
  std::vector<int32_t> history = req.prompt_ids;
  std::vector<float> e(H);
  for (size_t k = 0; k < req.max_new_tokens; ++k) {
    check_cancel(cancel);
    if (k > 0) {
      session.embed(res.tokens.back(), e.data());
      session.forward(e.data(), 1, logits.data());
      if (dump && k <= 3)
        write_npy(dump_path("logits_step_" + std::to_string(k) + ".npy"), logits.data(),
                        {tc.vocab});
    }
    float lp = 0;
    int32_t id = sampler.sample(logits, history, &lp);
    res.tokens.push_back(id);
    res.logprobs.push_back(lp);
    history.push_back(id);
    if (progress) progress({GenerateProgress::Stage::generate, k + 1, req.max_new_tokens});
    if (id == m.eos_id) {
      res.stopped_at_eos = true;
      break;
    }
  }
  res.generate_ms = ms_since(t0);
  if (dump) write_npy(dump_path("tokens.npy"), res.tokens.data(), {res.tokens.size()});
  SA_INFO("encode %.1f ms, prefill %zu tokens %.1f ms, generate %zu tokens %.1f ms", res.encode_ms,
          L, res.prefill_ms, res.tokens.size(), res.generate_ms);
  return res;
}

}  // namespace stepaudio
