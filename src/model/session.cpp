// Qwen2 decoder forward (transformers' modeling_qwen2.py semantics): per layer
//   h = RMSNorm(x); q,k,v = h W^T + b; RoPE(q, k) at absolute positions; causal GQA softmax(q k^T /
//   sqrt(hd)) v; x += o_proj; h = RMSNorm(x); x += down(silu(gate(h)) * up(h)); final RMSNorm,
//   lm_head.
#include "model/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "ops/scratch.h"
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

Session Session::fork(size_t capacity, ops::ThreadPool* pool) const {
  Session s(m_, pool ? *pool : pool_, capacity);
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

bool rows_independent_of_batch(const Model& m) {
  auto independent = [](const ops::WeightView& w) {
    return w.data == nullptr || (is_block_type(w.dtype) ? w.int8_act : !w.fast);
  };
  for (const DecoderLayer& L : m.layers)
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.qkv, &L.gate_up})
      if (!independent(l->w)) return false;
  return independent(m.lm_head.w);
}

void Session::forward_mixed(std::span<const Rows> parts) {
  if (parts.empty()) return;
  const Model& m = parts[0].session->m_;
  ops::ThreadPool& pool = parts[0].session->pool_;
  const auto& t = m.cfg.text;
  const size_t H = t.hidden, hd = t.head_dim, qd = t.n_heads * hd, kvd = t.n_kv_heads * hd;
  const float eps = static_cast<float>(t.rms_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Checks first: a pass either runs whole or changes nothing.
  size_t n = 0, n_logits = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Rows& p = parts[i];
    if (!p.session || p.n == 0) throw Error(Errc::invalid_argument, "empty decoder input");
    if (&p.session->m_ != &m)
      throw Error(Errc::invalid_argument, "batched pass: sessions of different models");
    for (size_t j = 0; j < i; ++j)
      if (parts[j].session == p.session)
        throw Error(Errc::invalid_argument, "batched pass: a session twice");
    const Session& s = *p.session;
    if (s.pos_ + p.n > s.capacity_ && p.parent)
      throw Error(Errc::invalid_argument, "scoring needs " + std::to_string(s.pos_ + p.n) +
                                              " positions but the session holds " +
                                              std::to_string(s.capacity_));
    if (s.pos_ + p.n > s.capacity_)
      throw Error(Errc::invalid_argument, "decoder position " + std::to_string(s.pos_ + p.n) +
                                              " exceeds the session's " +
                                              std::to_string(s.capacity_) + " positions");
    for (size_t r = 0; p.parent && r < p.n; ++r)
      if (p.parent[r] >= static_cast<int32_t>(r))
        throw Error(Errc::invalid_argument, "token tree: a parent must come before its child");
    n += p.n;
    if (p.logits) n_logits += p.parent ? p.n : 1;
  }
  // The residual stream of every row, each row's absolute position, and the tree masks:
  // bias[r][j] over keys j < pos + r + 1 (0 visible, -inf hidden; later rows are never ancestors).
  std::vector<float> x(n * H);
  std::vector<size_t> pos(n);
  std::vector<std::vector<float>> bias(parts.size());
  const float hide = -std::numeric_limits<float>::infinity();
  for (size_t i = 0, row = 0; i < parts.size(); row += parts[i].n, ++i) {
    const Rows& p = parts[i];
    const size_t base = p.session->pos_;
    std::memcpy(x.data() + row * H, p.x, p.n * H * sizeof(float));
    if (!p.parent) {
      for (size_t r = 0; r < p.n; ++r) pos[row + r] = base + r;
      continue;
    }
    std::vector<float>& b = bias[i];
    b.assign(p.n * (base + p.n), hide);
    for (size_t r = 0; r < p.n; ++r) {
      const int32_t up = p.parent[r];
      pos[row + r] = up < 0 ? base : pos[row + up] + 1;  // depth below the prefix end
      float* br = b.data() + r * (base + p.n);
      std::fill(br, br + base, 0.0f);
      for (int32_t a = static_cast<int32_t>(r); a >= 0; a = p.parent[a]) br[base + a] = 0.0f;
    }
  }
  decoder_layers(
      m, pool, x, n, pos.data(),
      [&](size_t l, const float* q, const float* k, const float* v, float* o) {
        for (size_t i = 0, row = 0; i < parts.size(); row += parts[i].n, ++i) {
          const Rows& p = parts[i];
          Session& s = *p.session;
          const size_t at = s.pos_;
          std::memcpy(s.k_[l].get() + at * kvd, k + row * kvd, p.n * kvd * sizeof(float));
          std::memcpy(s.v_[l].get() + at * kvd, v + row * kvd, p.n * kvd * sizeof(float));
          const float* qs = q + row * qd;
          float* os = o + row * qd;
          if (!p.parent) {
            ops::attention(pool, {p.n, at + p.n, t.n_heads, t.n_kv_heads, hd, qd, kvd}, qs,
                           s.k_[l].get(), s.v_[l].get(), scale, nullptr, true, at, os);
            continue;
          }
          // One query row at a time, keys ending at its own row: the scalar softmax
          // turns -inf into an exact 0 and adding 0.0f changes no visible score, so a
          // chain reproduces the appended rows' logits bit for bit.
          for (size_t r = 0; r < p.n; ++r)
            ops::attention(pool, {1, at + r + 1, t.n_heads, t.n_kv_heads, hd, qd, kvd}, qs + r * qd,
                           s.k_[l].get(), s.v_[l].get(), scale, bias[i].data() + r * (at + p.n),
                           false, 0, os + r * qd);
        }
      });
  for (const Rows& p : parts)
    if (!p.parent) p.session->pos_ += p.n;
  if (n_logits == 0) return;
  // Only the rows whose logits are wanted go through the final norm and lm_head, in one matmul.
  std::vector<float> g(n_logits * H);
  size_t at = 0;
  for (size_t i = 0, row = 0; i < parts.size(); row += parts[i].n, ++i) {
    const Rows& p = parts[i];
    if (!p.logits) continue;
    const size_t first = p.parent ? row : row + p.n - 1, count = p.parent ? p.n : 1;
    std::memcpy(g.data() + at * H, x.data() + first * H, count * H * sizeof(float));
    at += count;
  }
  std::vector<float> h(n_logits * H);
  ops::rms_norm(pool, g.data(), n_logits, H, m.final_norm.w, eps, h.data());
  const size_t V = t.vocab;
  // One part wanting logits writes them in place; several share one output and are scattered.
  float* y = nullptr;
  size_t wanting = 0;
  for (const Rows& p : parts) wanting += p.logits != nullptr;
  if (wanting == 1) {
    for (const Rows& p : parts)
      if (p.logits) y = p.logits;
  } else {  // reused across steps: a fresh [n][vocab] vector page-faulted in on every step
    y = ops::scratch_array<float>(ops::ScratchSlot::model_logits, n_logits * V);
  }
  ops::matmul(pool, h.data(), n_logits, m.lm_head.w, nullptr, y);
  if (wanting == 1) return;
  at = 0;
  for (const Rows& p : parts) {
    if (!p.logits) continue;
    const size_t count = p.parent ? p.n : 1;
    std::memcpy(p.logits, y + at * V, count * V * sizeof(float));
    at += count;
  }
}

void Session::forward(const float* x, size_t n, float* logits) {
  const Rows one{this, x, n, nullptr, logits};
  forward_mixed(std::span<const Rows>(&one, 1));
}

void Session::forward_tree(const float* x, size_t n, const int32_t* parent, float* logits) {
  if (!parent) throw Error(Errc::invalid_argument, "token tree without parents");
  const Rows one{this, x, n, parent, logits};
  forward_mixed(std::span<const Rows>(&one, 1));
}

void Session::forward_batch(Session* const* ss, size_t n, const float* x, float* const* logits) {
  if (n == 0) return;
  std::vector<Rows> parts(n);
  const size_t H = ss[0]->m_.cfg.text.hidden;
  for (size_t i = 0; i < n; ++i) parts[i] = {ss[i], x + i * H, 1, nullptr, logits[i]};
  forward_mixed(parts);
}

}  // namespace stepaudio::model
