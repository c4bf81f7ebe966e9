// One generating branch of a BatchDecoder (include/stepaudio/session.h): its session, options,
// sampler and result so far. Internal to src/model/: batch_decode.cpp steps branches, and the
// Scheduler (scheduler.cpp) runs their rows in passes shared with prefill pieces.
#pragma once

#include <algorithm>
#include <chrono>

#include "model/decode_session_impl.h"
#include "model/sampler.h"
#include "stepaudio/error.h"

namespace stepaudio {

struct BatchDecoder::Branch {
  using Clock = std::chrono::steady_clock;
  DecodeSession::Impl* s;
  SessionGenerateOptions o;
  DoneFn done;
  model::Sampler sampler;
  std::vector<int32_t> stops;
  GenerateResult res;
  Clock::time_point t0 = Clock::now();
  std::exception_ptr error;
  const void* owner = nullptr;  // Scheduler::generate's tag

  Branch(DecodeSession::Impl* s_, const SessionGenerateOptions& o_, DoneFn d)
      : s(s_), o(o_), done(std::move(d)), sampler(o_.sampling), stops(o_.stop_ids) {
    if (stops.empty() && s->model->eos_id >= 0) stops.push_back(s->model->eos_id);
  }
  // Chooses the next token; true when the branch goes on (its token must then run).
  bool choose() {
    if (o.cancel && o.cancel->load(std::memory_order_relaxed))
      throw Error(Errc::canceled, "generation canceled");
    if (res.tokens.size() >= o.max_new_tokens) return false;
    float lp = 0;
    const int32_t id = sampler.sample(s->logits, s->history, &lp);
    res.tokens.push_back(id);
    res.logprobs.push_back(lp);
    const bool stop = std::find(stops.begin(), stops.end(), id) != stops.end();
    if (stop) res.stopped_at_eos = true;
    if (o.on_token && !o.on_token(id, lp)) return false;
    return !stop && res.tokens.size() < o.max_new_tokens;
  }
  // The decoder row of the chosen token: its embedding into x[hidden], logits into the session's.
  model::Session::Rows rows(float* x) {
    s->session.embed(res.tokens.back(), x);
    return {&s->session, x, 1, nullptr, s->logits.data()};
  }
};

}  // namespace stepaudio
