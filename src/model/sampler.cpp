#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "stepaudio/error.h"

namespace stepaudio::model {

Sampler::Sampler(const SamplingOptions& o) : o_(o), rng_(o.seed) {
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f))
    throw Error(Errc::invalid_argument, "top_p must be in (0, 1]");
  if (o.top_k < 0) throw Error(Errc::invalid_argument, "top_k must be >= 0");
  if (!(o.repetition_penalty > 0.0f))
    throw Error(Errc::invalid_argument, "repetition_penalty must be > 0");
  if (std::isnan(o.temperature)) throw Error(Errc::invalid_argument, "temperature is NaN");
}

float log_softmax_at(const std::vector<float>& logits, int32_t id) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float l : logits) mx = std::max(mx, static_cast<double>(l));
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  return static_cast<float>(static_cast<double>(logits[id]) - mx - std::log(sum));
}

void Sampler::apply_repetition_penalty(std::vector<float>& logits,
                                       const std::vector<int32_t>& history, float p) {
  if (p == 1.0f) return;
  std::set<int32_t> seen(history.begin(), history.end());
  for (int32_t id : seen) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
    float& l = logits[id];
    l = l > 0 ? l / p : l * p;
  }
}

std::vector<float> Sampler::distribution(std::vector<float> logits) const {
  const size_t n = logits.size();
  const float temp = o_.temperature > 0 ? o_.temperature : 1.0f;
  for (float& l : logits) l /= temp;
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // Stable descending order: ties keep the lower id first, so results are reproducible.
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = n;
  if (o_.top_k > 0) keep = std::min(keep, static_cast<size_t>(o_.top_k));
  const double mx = logits[order[0]];
  std::vector<double> p(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp(logits[order[i]] - mx);
  if (o_.top_p < 1.0f) {
    // Keep the smallest prefix whose mass reaches top_p (always at least one id), as HF
    // TopPLogitsWarper.
    double acc = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      acc += p[i] / sum;
      if (acc >= o_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += p[i];
  }
  std::vector<float> out(n, 0.0f);
  for (size_t i = 0; i < keep; ++i) out[order[i]] = static_cast<float>(p[i] / sum);
  return out;
}

int32_t Sampler::sample(const std::vector<float>& raw, const std::vector<int32_t>& history,
                        float* logprob) {
  // Greedy without a penalty reads the raw logits; greedy with one penalizes a copy in work_, whose
  // capacity is kept across tokens (a fresh vocabulary-sized vector per token page-faulted its
  // memory in again). Sampling hands work_ on to distribution(), which consumes it.
  const std::vector<float>* logits = &raw;
  if (o_.repetition_penalty != 1.0f || o_.temperature > 0.0f) {
    work_.assign(raw.begin(), raw.end());
    apply_repetition_penalty(work_, history, o_.repetition_penalty);
    logits = &work_;
  }
  int32_t id;
  if (o_.temperature <= 0.0f) {
    id = static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
  } else {
    std::vector<float> p = distribution(std::move(work_));
    // Inverse-CDF draw with a 53-bit uniform: independent of the standard library's distributions,
    // so a seed gives the same tokens with any compiler.
    const double r = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
    double acc = 0;
    id = -1;
    int32_t last_nonzero = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i] <= 0) continue;
      last_nonzero = static_cast<int32_t>(i);
      acc += p[i];
      if (r < acc) {
        id = static_cast<int32_t>(i);
        break;
      }
    }
    if (id < 0) id = last_nonzero;  // rounding left r just above the total mass
  }
  if (logprob) *logprob = log_softmax_at(raw, id);
  return id;
}

}  // namespace stepaudio::model
