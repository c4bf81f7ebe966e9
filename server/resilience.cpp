// Backoff and CircuitBreaker (resilience.h).
#include "resilience.h"

#include <algorithm>
#include <cmath>

namespace stepaudio::server {

double Backoff::delay_s(int attempt, double unit) const {
  const double d = std::min(max_s, base_s * std::ldexp(1.0, std::clamp(attempt, 0, 30)));
  return d / 2 + d / 2 * std::clamp(unit, 0.0, 1.0);
}

bool CircuitBreaker::allow(Clock::time_point now) {
  std::lock_guard lk(mu_);
  if (!open_) return true;
  if (std::chrono::duration<double>(now - opened_at_).count() < cooldown_s_) return false;
  if (probing_) return false;  // half-open: one probe at a time
  probing_ = true;
  return true;
}

void CircuitBreaker::success() {
  std::lock_guard lk(mu_);
  failures_ = 0;
  open_ = probing_ = false;
}

void CircuitBreaker::failure(Clock::time_point now) {
  std::lock_guard lk(mu_);
  ++failures_;
  if (probing_ || failures_ >= threshold_) {
    open_ = true;
    probing_ = false;
    opened_at_ = now;
  }
}

void CircuitBreaker::abandon() {
  std::lock_guard lk(mu_);
  probing_ = false;
}

CircuitBreaker::State CircuitBreaker::state(Clock::time_point now) const {
  std::lock_guard lk(mu_);
  if (!open_) return State::closed;
  if (probing_ || std::chrono::duration<double>(now - opened_at_).count() >= cooldown_s_)
    return State::half_open;
  return State::open;
}

double CircuitBreaker::retry_in_s(Clock::time_point now) const {
  std::lock_guard lk(mu_);
  if (!open_) return 0;
  return std::max(0.0, cooldown_s_ - std::chrono::duration<double>(now - opened_at_).count());
}

int CircuitBreaker::consecutive_failures() const {
  std::lock_guard lk(mu_);
  return failures_;
}

bool CircuitBreaker::probe_out() const {
  std::lock_guard lk(mu_);
  return probing_;
}

const char* state_name(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::closed:
      return "closed";
    case CircuitBreaker::State::open:
      return "open";
    case CircuitBreaker::State::half_open:
      return "half_open";
  }
  return "?";
}

}  // namespace stepaudio::server
