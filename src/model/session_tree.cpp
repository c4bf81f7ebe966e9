// Session::forward_tree: one decoder pass over a token tree hanging off the cached prefix (the
// candidates of a label set, merged into a trie so shared first tokens run once). Same layer math
// as Session::forward (session.cpp); only the positions and the attention mask differ:
//   position(i) = pos() + depth(i), and row i sees the prefix, its ancestors and itself.
// The mask goes through ops::attention's per-key bias (0 visible, -inf hidden), one query row at a
// time: the scalar softmax turns -inf into an exact 0 and adding 0.0f changes no visible score, so
// a chain reproduces forward()'s logits bit for bit (tests/unit/test_session_api.cpp checks it).
// Kept in its own file so that the kernels' owner can rework forward() without touching this.
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

  const size_t H = t.hidden, hd = t.head_dim, qd = t.n_heads * hd, kvd = t.n_kv_heads * hd;
  const float eps = static_cast<float>(t.rms_eps);
  std::vector<float> x(x_in, x_in + n * H);  // [n][H] residual stream
  std::vector<float> h(n * H), q(n * qd), k(n * kvd), v(n * kvd), o(n * qd), g(n * t.ffn),
      u(n * t.ffn);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t l = 0; l < t.n_layers; ++l) {
    const auto& L = m_.layers[l];
    ops::rms_norm(x.data(), n, H, L.input_norm.w, eps, h.data());
    ops::matmul(pool_, h.data(), n, L.q.w, L.q.b, q.data());
    ops::matmul(pool_, h.data(), n, L.k.w, L.k.b, k.data());
    ops::matmul(pool_, h.data(), n, L.v.w, L.v.b, v.data());
    for (size_t i = 0; i < n; ++i) {
      ops::rope(q.data() + i * qd, t.n_heads, hd, pos_ + depth[i], m_.inv_freq.data());
      ops::rope(k.data() + i * kvd, t.n_kv_heads, hd, pos_ + depth[i], m_.inv_freq.data());
    }
    std::memcpy(k_[l].data() + pos_ * kvd, k.data(), n * kvd * sizeof(float));
    std::memcpy(v_[l].data() + pos_ * kvd, v.data(), n * kvd * sizeof(float));
    for (size_t i = 0; i < n; ++i)
      ops::attention(pool_, {1, pos_ + i + 1, t.n_heads, t.n_kv_heads, hd, qd, kvd},
                     q.data() + i * qd, k_[l].data(), v_[l].data(), scale,
                     bias.data() + i * n_keys_max, false, 0, o.data() + i * qd);
    ops::matmul(pool_, o.data(), n, L.o.w, nullptr, h.data());
    ops::add(x.data(), h.data(), n * H);
    ops::rms_norm(x.data(), n, H, L.post_norm.w, eps, h.data());
    ops::matmul(pool_, h.data(), n, L.gate.w, nullptr, g.data());
    ops::matmul(pool_, h.data(), n, L.up.w, nullptr, u.data());
    ops::silu(g.data(), g.size());
    ops::mul(g.data(), u.data(), g.size());
    ops::matmul(pool_, g.data(), n, L.down.w, nullptr, h.data());
    ops::add(x.data(), h.data(), n * H);
  }
  ops::rms_norm(x.data(), n, H, m_.final_norm.w, eps, h.data());
  ops::matmul(pool_, h.data(), n, m_.lm_head.w, nullptr, logits);
}

}  // namespace stepaudio::model
