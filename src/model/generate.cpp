// generate(): the request orchestration the CLI and (later) the server call:
// encode chunks -> splice adapter rows at the <audio_patch> positions -> prefill -> sample loop.
// Built on the public DecodeSession (session.h), so the engine has one prefill path and one decode
// loop whichever API a caller uses. The named --dump intermediates (DESIGN.md §5) are written here
// so every caller gets them.
#include <chrono>
#include <filesystem>

#include "model/encoder.h"
#include "model/sampler.h"
#include "stepaudio/error.h"
#include "stepaudio/npy.h"
#include "stepaudio/session.h"
#include "util/log.h"

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
  if (dump) make_dump_dir(req.dump_dir);
  auto dump_path = [&](const std::string& name) {
    return (std::filesystem::path(req.dump_dir) / name).string();
  };
  // Every input is validated before any compute.
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
  { model::Sampler validate(req.sampling); }
  const size_t capacity = req.prompt_ids.size() + req.max_new_tokens;
  if (capacity > tc.max_positions)
    throw Error(Errc::invalid_argument,
                "prompt (" + std::to_string(req.prompt_ids.size()) + ") + max new tokens (" +
                    std::to_string(req.max_new_tokens) + ") exceeds max_position_embeddings " +
                    std::to_string(tc.max_positions));

  GenerateResult res;

  // 1. Audio chunks -> adapter rows, in chunk order (model::encode_audio directly: the dump needs
  // the encoder rows too). The pool lives only while encoding.
  auto t0 = Clock::now();
  std::vector<AudioEmbedding> audio;
  {
    ops::ThreadPool pool(req.threads);
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
      audio.push_back({std::move(e.adapter), e.n_rows, H});
      if (progress) progress({GenerateProgress::Stage::encode, i + 1, req.mels.size()});
    }
  }
  res.encode_ms = ms_since(t0);
  if (dump) write_npy(dump_path("prompt_ids.npy"), req.prompt_ids.data(), {req.prompt_ids.size()});

  // 2. Prefill: the prompt with the audio rows spliced at the <audio_patch> positions. The session
  // does not own the model (the caller's reference outlives this call): an aliasing shared_ptr.
  check_cancel(cancel);
  DecodeSession session(std::shared_ptr<const Model>(std::shared_ptr<const Model>(), &m), capacity,
                        req.threads);
  t0 = Clock::now();
  session.append(req.prompt_ids, audio);
  res.prefill_ms = ms_since(t0);
  audio.clear();
  const size_t L = req.prompt_ids.size();
  if (progress) progress({GenerateProgress::Stage::prefill, L, L});
  if (dump) write_npy(dump_path("logits_prefill.npy"), session.logits().data(), {tc.vocab});

  // 3. Generation: token k is chosen from the logits after k decode steps (k = 0: prefill), so
  // when token k (k = 1..3) is reported the session's logits are logits_step_k.
  SessionGenerateOptions g;
  g.max_new_tokens = req.max_new_tokens;
  g.sampling = req.sampling;
  g.cancel = cancel;
  size_t k = 0;
  g.on_token = [&](int32_t, float) {
    if (dump && k >= 1 && k <= 3)
      write_npy(dump_path("logits_step_" + std::to_string(k) + ".npy"), session.logits().data(),
                {tc.vocab});
    ++k;
    if (progress) progress({GenerateProgress::Stage::generate, k, req.max_new_tokens});
    return true;
  };
  const GenerateResult gen = session.generate(g);
  res.tokens = gen.tokens;
  res.logprobs = gen.logprobs;
  res.stopped_at_eos = gen.stopped_at_eos;
  res.generate_ms = gen.generate_ms;
  if (dump) write_npy(dump_path("tokens.npy"), res.tokens.data(), {res.tokens.size()});
  SA_INFO("encode %.1f ms, prefill %zu tokens %.1f ms, generate %zu tokens %.1f ms", res.encode_ms,
          L, res.prefill_ms, res.tokens.size(), res.generate_ms);
  return res;
}

}  // namespace stepaudio
