// Session::forward_tree: one decoder pass over a token tree hanging off the cached prefix (the
// candidates of a label set, merged into a trie so shared first tokens run once). Same layers
// as Session::forward (Session::run_layers); only the positions and the attention mask differ:
//   position(i) = pos() + depth(i), and row i sees the prefix, its ancestors and itself.
// The mask goes through ops::attention's per-key bias (0 visible, -inf hidden), one query row at a
// time: the scalar softmax turns -inf into an exact 0 and adding 0.0f changes no visible score, so
// a chain reproduces forward()'s logits bit for bit (tests/unit/test_session_api.cpp checks it).
#include <cmath>
#include <cstring>
#include <limits>

#include "model/session.h"
#include "stepaudio/error.h"

namespace stepaudio::model {

void Session::forward_tree(const float* x_in, size_t n, const int32_t* parent, float* logits) {
  const auto& t = m_.cfg.text;
  if (n == 0) throw Error(Errc::invalid_argument, "empty decoder input");
  if (pos_ + n > capacity_)
    throw Error(Errc::invalid_argument, "scoring needs " + std::to_string(pos_ + n) +
                                            " positions but the session holds " +
                                            std::to_string(capacity_));
  std::vector<size_t> depth(n);
  for (size_t i = 0; i < n; ++i) {
    if (parent[i] >= static_cast<int32_t>(i))
      throw Error(Errc::invalid_argument, "token tree: a parent must come before its child");
    depth[i] = parent[i] < 0 ? 0 : depth[parent[i]] + 1;
  }
  // bias[i][j] for keys j < pos_ + i + 1 (later rows are never ancestors).
  const size_t n_keys_max = pos_ + n;
  const float hide = -std::numeric_limits<float>::infinity();
  std::vector<float> bias(n * n_keys_max, hide);  // [n][pos_ + n]
  for (size_t i = 0; i < n; ++i) {
    float* b = bias.data() + i * n_keys_max;
    std::fill(b, b + pos_, 0.0f);
    for (int32_t a = static_cast<int32_t>(i); a >= 0; a = parent[a]) b[pos_ + a] = 0.0f;
  }

  const size_t H = t.hidden;
  const float eps = static_cast<float>(t.rms_eps);
  std::vector<float> x(x_in, x_in + n * H);  // [n][H] residual stream
  run_layers(x, n, depth, bias.data(), n_keys_max);
  std::vector<float> h(n * H);
  ops::rms_norm(pool_, x.data(), n, H, m_.final_norm.w, eps, h.data());
  ops::matmul(pool_, h.data(), n, m_.lm_head.w, nullptr, logits);
}

}  // namespace stepaudio::model
