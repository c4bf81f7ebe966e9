// Next-token choice from logits: greedy, or repetition penalty -> temperature -> top-k -> top-p ->
// draw, in the order of transformers' LogitsProcessor list. The log-probability kept for confidence
// is always the log-softmax of the raw logits (temperature 1, no penalty) at the chosen id.
// Thread-safety: one Sampler per request (it owns its RNG).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "stepaudio/model.h"

namespace stepaudio::model {

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o);  // throws Error(invalid_argument) for bad options
  // logits[vocab] (not modified); history = every id seen so far (prompt + generated).
  int32_t sample(const std::vector<float>& logits, const std::vector<int32_t>& history,
                 float* logprob);

  // HF RepetitionPenaltyLogitsProcessor: for each distinct seen id, logit > 0 ? logit / p : logit *
  // p.
  static void apply_repetition_penalty(std::vector<float>& logits,
                                       const std::vector<int32_t>& history, float p);
  // Probabilities after temperature, top-k and top-p (zeros for removed ids), for tests.
  std::vector<float> distribution(std::vector<float> logits) const;

 private:
  SamplingOptions o_;
  std::mt19937_64 rng_;
  std::vector<float> work_;  // the penalized logits of the current token
};

// log_softmax(logits)[id] in double precision.
float log_softmax_at(const std::vector<float>& logits, int32_t id);

}  // namespace stepaudio::model
