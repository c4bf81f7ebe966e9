// quant_kl() (include/stepaudio/bench.h): how far the q8/q4 next-token distributions drift from
// the reference's under teacher forcing. Teacher forcing (feeding the reference's tokens to every
// model) keeps the contexts identical, so the per-step KL measures the weights' error alone, not
// the divergence of two free-running generations.
#include <algorithm>
#include <cmath>
#include <functional>

#include "model/encoder.h"
#include "model/model_data.h"
#include "model/session.h"
#include "model/weight_store.h"
#include "stepaudio/bench.h"
#include "stepaudio/error.h"
#include "util/log.h"

namespace stepaudio {

namespace {
std::shared_ptr<const Model> build(const KlOptions& o, Quant q) {
  if (!o.synthetic.empty())
    return make_synthetic_model(o.synthetic, o.seed, q, true, true, o.int8_encoder);
  LoadOptions lo;
  lo.quant = q;
  lo.int8_encoder = o.int8_encoder;
  return load_model(o.model, lo);
}

// The adapter rows of 10 s of a fixed, speech-range mel (as `stepaudio bench` uses).
std::vector<float> encode_fixed(const Model& m, ops::ThreadPool& pool) {
  const size_t n_mels = m.cfg.audio.n_mels, T = 1002;
  std::vector<float> mel(n_mels * T);
  for (size_t i = 0; i < mel.size(); ++i) mel[i] = float(std::sin(0.37 * double(i)) * 0.8);
  return model::encode_audio(m, pool, mel.data(), n_mels, T).adapter;
}

// log-softmax of logits[n] in double (the KL of close distributions is a small difference of
// large sums: float32 would lose it).
void log_softmax(const float* logits, size_t n, double* out) {
  const double mx = *std::max_element(logits, logits + n);
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += std::exp(double(logits[i]) - mx);
  const double lse = mx + std::log(s);
  for (size_t i = 0; i < n; ++i) out[i] = double(logits[i]) - lse;
}

int32_t argmax(const float* x, size_t n) {
  return int32_t(std::max_element(x, x + n) - x);  // first maximum, as the greedy sampler
}

// A fixed text prompt of ordinary ids (the first ids of any Qwen2 vocabulary are byte tokens).
std::vector<int32_t> prompt_ids(size_t vocab) {
  std::vector<int32_t> ids;
  for (int32_t i : {40, 1079, 264, 2699, 911, 279, 9104, 13, 576, 3974, 13876, 38835})
    ids.push_back(i % int32_t(vocab));
  return ids;
}
}  // namespace

std::vector<KlResult> quant_kl(const KlOptions& o) {
  if (o.model.empty() == o.synthetic.empty())
    throw Error(Errc::invalid_argument,
                "quant_kl needs exactly one of a model or a synthetic preset");
  if (o.steps == 0) throw Error(Errc::invalid_argument, "quant_kl needs at least one step");
  ops::ThreadPool pool(o.threads);

  // 1. Reference: greedy tokens and log-distributions, [steps][vocab] in double (so a model
  //    compared with itself gives exactly 0; 256 steps x 152 K ids = 310 MB).
  std::vector<int32_t> tokens;
  std::vector<double> ref_lp;
  size_t V = 0;
  std::vector<int32_t> prompt;
  std::vector<float> ref_audio;  // the reference's adapter rows
  const auto has_encoder = [](const Model& m) { return !m.blocks.empty(); };
  {
    auto m = build(o, o.reference);
    if (has_encoder(*m)) ref_audio = encode_fixed(*m, pool);
    V = model_info(*m).vocab;
    prompt = prompt_ids(V);
    ref_lp.resize(o.steps * V);
    model::Session s(*m, pool, prompt.size() + o.steps);
    const size_t H = model_info(*m).hidden;
    std::vector<float> x(prompt.size() * H), logits(V);
    std::vector<double> lp(V);
    for (size_t i = 0; i < prompt.size(); ++i) s.embed(prompt[i], x.data() + i * H);
    s.forward(x.data(), prompt.size(), logits.data());
    for (size_t k = 0; k < o.steps; ++k) {
      if (k > 0) {
        s.embed(tokens.back(), x.data());
        s.forward(x.data(), 1, logits.data());
      }
      log_softmax(logits.data(), V, lp.data());
      std::copy(lp.begin(), lp.end(), ref_lp.begin() + k * V);
      tokens.push_back(argmax(logits.data(), V));
    }
  }

  // 2. Each quantized model, teacher-forced on the reference's tokens.
  std::vector<KlResult> out;
  auto compare = [&](KlResult r, const std::function<const float*(size_t)>& logits_at) {
    size_t agree = 0;
    std::vector<double> lq(V);
    for (size_t k = 0; k < o.steps; ++k) {
      const float* logits = logits_at(k);
      log_softmax(logits, V, lq.data());
      const double* lp = ref_lp.data() + k * V;
      double kl = 0;
      for (size_t i = 0; i < V; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
      kl = std::max(kl, 0.0);  // rounding can make identical distributions a hair negative
      r.mean_kl += kl / double(o.steps);
      r.max_kl = std::max(r.max_kl, kl);
      agree += argmax(logits, V) == tokens[k];
    }
    r.top1_agreement = double(agree) / double(o.steps);
    SA_INFO("%s %s vs %s: mean KL %.3g nats, max %.3g, top-1 agreement %.3f over %zu steps",
            quant_name(r.quant), r.mode.c_str(), quant_name(o.reference), r.mean_kl, r.max_kl,
            r.top1_agreement, o.steps);
    out.push_back(r);
  };
  for (Quant q : o.quants) {
    auto m = build(o, q);
    if (model_info(*m).vocab != V)
      throw Error(Errc::invalid_argument, "quant_kl: models of different vocabularies");
    const size_t H = model_info(*m).hidden;
    {  // decode: token by token
      model::Session s(*m, pool, prompt.size() + o.steps);
      std::vector<float> x(prompt.size() * H), logits(V);
      for (size_t i = 0; i < prompt.size(); ++i) s.embed(prompt[i], x.data() + i * H);
      s.forward(x.data(), prompt.size(), logits.data());
      KlResult r{model_info(*m).quant, o.steps};
      if (!ref_audio.empty()) {
        const std::vector<float> a = encode_fixed(*m, pool);
        double err = 0, ref = 0;
        for (size_t i = 0; i < a.size() && i < ref_audio.size(); ++i) {
          err += (double(a[i]) - ref_audio[i]) * (double(a[i]) - ref_audio[i]);
          ref += double(ref_audio[i]) * ref_audio[i];
        }
        r.encoder_nmse = a.size() == ref_audio.size() && ref > 0 ? err / ref : -1;
      }
      compare(r, [&](size_t k) {
        if (k > 0) {
          s.embed(tokens[k - 1], x.data());
          s.forward(x.data(), 1, logits.data());
        }
        return logits.data();
      });
    }
    if (q != Quant::q8 && q != Quant::q4) continue;
    // Prefill: prompt + tokens[0 .. steps-2] in one pass (a chain through forward_tree gives every
    // row's logits, equal to forward()'s), once per activation type. The flag is flipped on the
    // model built above, which nothing else holds.
    const size_t n = prompt.size() + o.steps - 1;
    std::vector<float> x(n * H), logits(n * V);
    std::vector<int32_t> parent(n);
    for (size_t i = 0; i < n; ++i) parent[i] = int32_t(i) - 1;
    for (bool int8 : {true, false}) {
      model::set_int8_prefill(const_cast<Model&>(*m), int8);
      if (int8 && !m->layers.empty() && !m->layers[0].q.w.int8_act) continue;  // no VNNI here
      model::Session s(*m, pool, n);
      for (size_t i = 0; i < n; ++i)
        s.embed(i < prompt.size() ? prompt[i] : tokens[i - prompt.size()], x.data() + i * H);
      s.forward_tree(x.data(), n, parent.data(), logits.data());
      KlResult r{model_info(*m).quant, o.steps};
      r.mode = int8 ? "prefill-int8" : "prefill-bf16";
      compare(r, [&](size_t k) { return logits.data() + (prompt.size() - 1 + k) * V; });
    }
  }
  return out;
}

}  // namespace stepaudio
