// Per-request decoder state: the KV cache of every layer plus scratch buffers.
//
// Layout: K and V of layer l are [capacity][n_kv_heads * head_dim] (rows = positions), so a prefix
// is a contiguous block per layer: fork() copies the first pos() rows into a new Session, which is
// how shared-prefix requests (issue 6) will reuse one prefill.
// Thread-safety: one Session per request/thread; it only reads the shared Model.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "model/model_data.h"

namespace stepaudio::model {

class Session {
 public:
  // capacity: positions the cache holds (prompt + new tokens); must be <= max_position_embeddings.
  Session(const Model& m, ops::ThreadPool& pool, size_t capacity);

  // Runs x [n][hidden] (embeddings) at positions pos() .. pos()+n-1, appends their K/V and writes
  // the logits of the last row to logits[vocab]. Throws Error(invalid_argument) past capacity.
  void forward(const float* x, size_t n, float* logits);

  // Embedding row of a token id into dst[hidden] (widened to float32).
  void embed(int32_t id, float* dst) const;

  // Scores a token tree after the current prefix without advancing it: row i (embedding x[i])
  // sits at depth(i) below the prefix end, where parent[i] < i is its parent row or -1 for a child
  // of the prefix; it attends to the prefix, its ancestors and itself only (a tree mask), at
  // position pos() + depth(i). Writes the logits of every row to logits[n][vocab]. The rows' K/V
  // use cache rows pos() .. pos()+n-1 as scratch; pos() is unchanged. Defined in session_tree.cpp.
  // A chain (parent[i] = i-1) gives exactly the logits of forward() on the same rows.
  void forward_tree(const float* x, size_t n, const int32_t* parent, float* logits);

  // One decoder step for n sessions at once: row i (embedding x[i][hidden]) continues sessions[i]
  // at its pos(), which then advances by one; logits[i] receives its logits [vocab]. Every weight
  // matrix is read once for all rows (ops::matmul with M = n); attention runs per session over its
  // own cache. The sessions must be distinct and share one Model; the pool is sessions[0]'s.
  // Each row's logits are bit-identical to that session's own forward() of the row whenever the
  // matmul's row results do not depend on M (ops.h: always in the exact modes, and for q8_0/q4_0
  // up to kGemvMaxRows rows or with int8_act), so callers keep n <= kGemvMaxRows.
  static void forward_batch(Session* const* sessions, size_t n, const float* x,
                            float* const* logits);

  // Forgets every position >= pos (pos <= pos()): cache rows past pos() are never read, so this
  // is exact and free (used to rewind after speculative rows).
  void truncate(size_t pos);

  size_t pos() const { return pos_; }
  size_t capacity() const { return capacity_; }
  // A new Session with the same cache prefix (the first pos() rows), of the given capacity.
  Session fork(size_t capacity) const;

 private:
  // Every decoder layer on the residual stream x [n][hidden] (updated in place); row i sits at
  // position pos() + offset[i] and its K/V go to cache row pos() + i. tree_bias null: causal
  // attention over the cache; otherwise row i sees keys j < pos() + i + 1 with the additive bias
  // tree_bias[i * bias_stride + j] (0 visible, -inf hidden). Does not advance pos().
  void run_layers(std::vector<float>& x, size_t n, const std::vector<size_t>& offset,
                  const float* tree_bias, size_t bias_stride);
  const Model& m_;
  ops::ThreadPool& pool_;
  size_t capacity_, pos_ = 0;
  // Per layer [capacity][n_kv * head_dim], left uninitialized: only rows below pos() (+ the rows
  // being written) are ever read, and a large block's pages are committed as rows are written, so
  // a session sized for the whole context costs the memory of what it holds.
  std::vector<std::unique_ptr<float[]>> k_, v_;
};

}  // namespace stepaudio::model
