// Qwen2 decoder forward (transformers' modeling_qwen2.py semantics): per layer
//   h = RMSNorm(x); q,k,v = h W^T + b; RoPE(q, k) at absolute positions; causal GQA softmax(q k^T /
//   sqrt(hd)) v; x += o_proj; h = RMSNorm(x); x += down(silu(gate(h)) * up(h)); final RMSNorm,
//   lm_head.
#include "model/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "stepaudio/error.h"

namespace stepaudio::model {

Session::Session(const Model& m, ops::ThreadPool& pool, size_t capacity)
    : m_(m), pool_(pool), capacity_(capacity) {
  const auto& t = m.cfg.text;
  if (capacity > t.max_positions)
    throw Error(Errc::invalid_argument,
                "context of " + std::to_string(capacity) +
                    " positions (prompt + max new tokens) exceeds max_position_embeddings " +
                    std::to_string(t.max_positions));
  const size_t kvd = t.n_kv_heads * t.head_dim;
  for (size_t l = 0; l < t.n_layers; ++l) {
    k_.emplace_back(new float[capacity * kvd]);  // default-initialized: not written here
    v_.emplace_back(new float[capacity * kvd]);
  }
}

Session Session::fork(size_t capacity) const {
  Session s(m_, pool_, capacity);
  if (pos_ > capacity)
    throw Error(Errc::invalid_argument, "fork: capacity below the prefix length");
  const size_t kvd = m_.cfg.text.n_kv_heads * m_.cfg.text.head_dim;
  for (size_t l = 0; l < k_.size(); ++l) {
    std::memcpy(s.k_[l].get(), k_[l].get(), pos_ * kvd * sizeof(float));
    std::memcpy(s.v_[l].get(), v_[l].get(), pos_ * kvd * sizeof(float));
  }
  s.pos_ = pos_;
  return s;
}

void Session::truncate(size_t pos) {
  if (pos > pos_) throw Error(Errc::invalid_argument, "truncate: position past the cache end");
  pos_ = pos;
}

void Session::embed(int32_t id, float* dst) const {
  if (id < 0 || static_cast<size_t>(id) >= m_.cfg.text.vocab)
    throw Error(Errc::invalid_argument, "token id " + std::to_string(id) +
                                            " outside the vocabulary (" +
                                            std::to_string(m_.cfg.text.vocab) + ")");
  m_.embed.row_f32(static_cast<size_t>(id), dst);
}

void Session::forward(const float* x_in, size_t n, float* logits) {
  const auto& t = m_.cfg.text;
  if (n == 0) throw Error(Errc::invalid_argument, "empty decoder input");
  if (pos_ + n > capacity_)
    throw Error(Errc::invalid_argument, "decoder position " + std::to_string(pos_ + n) +
                                            " exceeds the session's " + std::to_string(capacity_) +
                                            " positions");
  const size_t H = t.hidden;
  const float eps = static_cast<float>(t.rms_eps);
  std::vector<float> x(x_in, x_in + n * H);  // [n][H] residual stream
  std::vector<size_t> offset(n);
  for (size_t i = 0; i < n; ++i) offset[i] = i;
  run_layers(x, n, offset, nullptr, 0);
  pos_ += n;
  // Only the last position's logits are needed to sample the next token.
  std::vector<float> last(H);
  ops::rms_norm(pool_, x.data() + (n - 1) * H, 1, H, m_.final_norm.w, eps, last.data());
  ops::matmul(pool_, last.data(), 1, m_.lm_head.w, nullptr, logits);
}

namespace {
// After a layer's q/k/v projections and RoPE (q [n][qd], k/v [n][kvd]): store the K/V rows in the
// cache(s) and write the attention output o [n][qd]. Layer index first.
using Attend = std::function<void(size_t, const float*, const float*, const float*, float*)>;

// Every decoder layer on the residual stream x [n][hidden] (updated in place), row i at absolute
// position pos[i]: the one layer loop behind forward, forward_tree and forward_batch, which differ
// only in where K/V go and what each row attends to (`attend`).
void decoder_layers(const Model& m, ops::ThreadPool& pool, std::vector<float>& x, size_t n,
                    const size_t* pos, const Attend& attend) {
  const auto& t = m.cfg.text;
  const size_t H = t.hidden, hd = t.head_dim, qd = t.n_heads * hd, kvd = t.n_kv_heads * hd;
  const float eps = static_cast<float>(t.rms_eps);
  std::vector<float> h(n * H), q(n * qd), k(n * kvd), v(n * kvd), o(n * qd), g(n * t.ffn),
      u(n * t.ffn);
  // Decode (n <= kGemvMaxRows) with packed weights: q|k|v and gate|up in one matmul each
  // (DecoderLayer::qkv/gate_up): 4 pool hand-offs per layer instead of 7, one activation
  // quantization per input. Same per-output arithmetic, so the same numbers as separate calls.
  const bool fused = n <= ops::kGemvMaxRows && !m.layers.empty() && m.layers[0].qkv.w.data &&
                     m.layers[0].gate_up.w.data;
  std::vector<float> f(fused ? n * std::max(qd + 2 * kvd, 2 * t.ffn) : 0);
  // RoPE angles: one table for every layer, q and k.
  std::vector<float> cs(n * hd);  // [n][2][hd / 2]: cos, sin
  ops::rope_table(pos, n, hd, m.inv_freq.data(), cs.data());
  // Each layer's closing residual add is fused into the next layer's first norm (and the last
  // one into a plain add): x += down(...) and h = RMSNorm(x) in one pass.
  const float* pending = nullptr;  // the down projection to add to x before the next norm
  for (size_t l = 0; l < t.n_layers; ++l) {
    const auto& L = m.layers[l];
    ops::add_rms_norm(pool, x.data(), pending, n, H, L.input_norm.w, eps, h.data());
    if (fused) {
      const size_t w = qd + 2 * kvd;
      ops::matmul(pool, h.data(), n, L.qkv.w, L.qkv.b, f.data());
      for (size_t i = 0; i < n; ++i) {
        const float* r = f.data() + i * w;
        std::memcpy(q.data() + i * qd, r, qd * sizeof(float));
        std::memcpy(k.data() + i * kvd, r + qd, kvd * sizeof(float));
        std::memcpy(v.data() + i * kvd, r + qd + kvd, kvd * sizeof(float));
      }
    } else {
      ops::matmul(pool, h.data(), n, L.q.w, L.q.b, q.data());
      ops::matmul(pool, h.data(), n, L.k.w, L.k.b, k.data());
      ops::matmul(pool, h.data(), n, L.v.w, L.v.b, v.data());
    }
    ops::rope_rows(pool, q.data(), n, qd, t.n_heads, hd, cs.data());
    ops::rope_rows(pool, k.data(), n, kvd, t.n_kv_heads, hd, cs.data());
    attend(l, q.data(), k.data(), v.data(), o.data());
    ops::matmul(pool, o.data(), n, L.o.w, nullptr, h.data());
    ops::add_rms_norm(pool, x.data(), h.data(), n, H, L.post_norm.w, eps, h.data());
    if (fused) {
      ops::matmul(pool, h.data(), n, L.gate_up.w, nullptr, f.data());
      for (size_t i = 0; i < n; ++i) {
        std::memcpy(g.data() + i * t.ffn, f.data() + i * 2 * t.ffn, t.ffn * sizeof(float));
        std::memcpy(u.data() + i * t.ffn, f.data() + (i * 2 + 1) * t.ffn, t.ffn * sizeof(float));
      }
    } else {
      ops::matmul(pool, h.data(), n, L.gate.w, nullptr, g.data());
      ops::matmul(pool, h.data(), n, L.up.w, nullptr, u.data());
    }
    ops::silu_mul(pool, g.data(), u.data(), g.size());
    ops::matmul(pool, g.data(), n, L.down.w, nullptr, h.data());
    pending = h.data();
  }
  if (pending) ops::add(pool, x.data(), pending, n * H);
}
}  // namespace

void Session::run_layers(std::vector<float>& x, size_t n, const std::vector<size_t>& offset,
                         const float* tree_bias, size_t bias_stride) {
  const auto& t = m_.cfg.text;
  const size_t hd = t.head_dim, qd = t.n_heads * hd, kvd = t.n_kv_heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<size_t> pos(n);
  for (size_t i = 0; i < n; ++i) pos[i] = pos_ + offset[i];
  decoder_layers(m_, pool_, x, n, pos.data(),
                 [&](size_t l, const float* q, const float* k, const float* v, float* o) {
                   std::memcpy(k_[l].get() + pos_ * kvd, k, n * kvd * sizeof(float));
                   std::memcpy(v_[l].get() + pos_ * kvd, v, n * kvd * sizeof(float));
                   if (!tree_bias) {
                     ops::attention(pool_, {n, pos_ + n, t.n_heads, t.n_kv_heads, hd, qd, kvd}, q,
                                    k_[l].get(), v_[l].get(), scale, nullptr, true, pos_, o);
                     return;
                   }
                   for (size_t i = 0; i < n; ++i)  // one query row at a time: keys end at pos_ + i
                     ops::attention(pool_, {1, pos_ + i + 1, t.n_heads, t.n_kv_heads, hd, qd, kvd},
                                    q + i * qd, k_[l].get(), v_[l].get(), scale,
                                    tree_bias + i * bias_stride, false, 0, o + i * qd);
                 });
}

void Session::forward_batch(Session* const* ss, size_t n, const float* x_in, float* const* logits) {
  if (n == 0) return;
  const Model& m = ss[0]->m_;
  ops::ThreadPool& pool = ss[0]->pool_;
  const auto& t = m.cfg.text;
  for (size_t i = 0; i < n; ++i) {
    if (&ss[i]->m_ != &m)
      throw Error(Errc::invalid_argument, "batched step: sessions of different models");
    for (size_t j = 0; j < i; ++j)
      if (ss[j] == ss[i]) throw Error(Errc::invalid_argument, "batched step: a session twice");
    if (ss[i]->pos_ + 1 > ss[i]->capacity_)
      throw Error(Errc::invalid_argument, "decoder position " + std::to_string(ss[i]->pos_ + 1) +
                                              " exceeds the session's " +
                                              std::to_string(ss[i]->capacity_) + " positions");
  }
  const size_t H = t.hidden, hd = t.head_dim, qd = t.n_heads * hd, kvd = t.n_kv_heads * hd;
  const float eps = static_cast<float>(t.rms_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> x(x_in, x_in + n * H);
  std::vector<size_t> pos(n);
  for (size_t i = 0; i < n; ++i) pos[i] = ss[i]->pos_;
  decoder_layers(m, pool, x, n, pos.data(),
                 [&](size_t l, const float* q, const float* k, const float* v, float* o) {
                   for (size_t i = 0; i < n; ++i) {  // exactly forward()'s call for one row
                     Session& s = *ss[i];
                     std::memcpy(s.k_[l].get() + s.pos_ * kvd, k + i * kvd, kvd * sizeof(float));
                     std::memcpy(s.v_[l].get() + s.pos_ * kvd, v + i * kvd, kvd * sizeof(float));
                     ops::attention(pool, {1, s.pos_ + 1, t.n_heads, t.n_kv_heads, hd, qd, kvd},
                                    q + i * qd, s.k_[l].get(), s.v_[l].get(), scale, nullptr, true,
                                    s.pos_, o + i * qd);
                   }
                 });
  for (size_t i = 0; i < n; ++i) ++ss[i]->pos_;
  std::vector<float> h(n * H), out(n * t.vocab);
  ops::rms_norm(pool, x.data(), n, H, m.final_norm.w, eps, h.data());
  ops::matmul(pool, h.data(), n, m.lm_head.w, nullptr, out.data());
  for (size_t i = 0; i < n; ++i)
    std::memcpy(logits[i], out.data() + i * t.vocab, t.vocab * sizeof(float));
}

}  // namespace stepaudio::model
