// Retry pacing and a circuit breaker for calls to a remote inference backend (remote_backend.cpp).
//
// Backoff: attempt k (0-based) waits a random time in [d/2, d] with d = min(max, base * 2^k)
// ("equal jitter": never zero, so a crowd of retries spreads out instead of hammering together).
//
// CircuitBreaker: closed -> open after `threshold` consecutive failures; while open every call is
// refused at once (the caller answers 503 backend_unavailable instead of waiting on a dead
// backend); after `cooldown` one probe call is let through (half-open): its success closes the
// breaker, its failure opens it for another cooldown. Any success resets the failure count.
// Time is passed in, so the tests drive it without sleeping.
// Thread-safety: CircuitBreaker is internally locked; Backoff is a pure function of its inputs.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace stepaudio::server {

struct Backoff {
  double base_s = 0.2, max_s = 5.0;
  // `unit` in [0, 1): the random draw (the caller's RNG).
  double delay_s(int attempt, double unit) const;
};

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State { closed, open, half_open };
  CircuitBreaker(int threshold, double cooldown_s)
      : threshold_(threshold), cooldown_s_(cooldown_s) {}

  // May a call go out now? false: refused (open, or half-open with its probe already out).
  bool allow(Clock::time_point now = Clock::now());
  void success();
  void failure(Clock::time_point now = Clock::now());
  // A call that ended without telling (canceled): a probe it was lets the next one go.
  void abandon();
  State state(Clock::time_point now = Clock::now()) const;
  // Seconds until the next probe may go out (0 unless open).
  double retry_in_s(Clock::time_point now = Clock::now()) const;
  int consecutive_failures() const;
  bool probe_out() const;  // half-open with its probe call still running

 private:
  const int threshold_;
  const double cooldown_s_;
  mutable std::mutex mu_;
  int failures_ = 0;
  bool open_ = false, probing_ = false;
  Clock::time_point opened_at_{};
};

const char* state_name(CircuitBreaker::State s);

}  // namespace stepaudio::server
