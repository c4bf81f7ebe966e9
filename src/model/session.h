// Per-request decoder state: the KV cache of every layer plus scratch buffers.
//
// Layout: K and V of layer l are [capacity][n_kv_heads * head_dim] (rows = positions), so a prefix
// is a contiguous block per layer: fork() copies the first pos() rows into a new Session, which is
// how shared-prefix requests (issue 6) will reuse one prefill.
// Thread-safety: one Session per request/thread; it only reads the shared Model.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "model/model_data.h"

namespace stepaudio::model {

class Session {
 public:
  // capacity: positions the cache holds (prompt + new tokens); must be <= max_position_embeddings.
  Session(const Model& m, ops::ThreadPool& pool, size_t capacity);

  // One session's rows in a mixed decoder pass (forward_mixed).
  struct Rows {
    Session* session = nullptr;
    const float* x = nullptr;  // [n][hidden] embeddings
    size_t n = 0;
    const int32_t* parent = nullptr;  // null: appended rows; else a token tree (forward_tree)
    float* logits = nullptr;          // appended: [vocab] of the last row; tree: [n][vocab]
  };

  // One decoder pass over the rows of several distinct sessions of one Model: every weight matrix
  // is read once for all of them (ops::matmul with M = all rows), attention runs per session over
  // its own cache. Appended rows (parent null) continue their session at pos() .. pos()+n-1,
  // which then advances by n (a prefill piece, or n = 1: a decode step). Tree rows are scored
  // after pos() without advancing it: row i sits at depth(i) below the prefix end (parent[i] < i
  // its parent row, -1 a child of the prefix) and attends to the prefix, its ancestors and
  // itself; its K/V use cache rows pos() .. pos()+n-1 as scratch. Logits go where `logits` is not
  // null. Everything is checked before any state changes (Error(invalid_argument): a session
  // twice, sessions of different models, rows past a capacity, a parent after its child). The
  // pool is the first session's.
  // A row's result depends on the other rows of the pass only through M: it is bit-identical to
  // the same rows run on their own whenever the matmuls' rows do not depend on M (ops.h; see
  // rows_independent_of_batch in model_data.h). forward, forward_tree and forward_batch are
  // passes of one kind, so they share this code.
  static void forward_mixed(std::span<const Rows> parts);

  // Appended rows: x [n][hidden] at positions pos() .. pos()+n-1; logits of the last row.
  void forward(const float* x, size_t n, float* logits);

  // Embedding row of a token id into dst[hidden] (widened to float32).
  void embed(int32_t id, float* dst) const;

  // A token tree after the current prefix (see Rows), logits of every row to logits[n][vocab].
  // A chain (parent[i] = i-1) gives exactly the logits of forward() on the same rows.
  void forward_tree(const float* x, size_t n, const int32_t* parent, float* logits);

  // One decoder step for n sessions at once: row i (embedding x[i][hidden]) continues sessions[i]
  // at its pos(), which then advances by one; logits[i] receives its logits [vocab]. The n <= 8
  // rows share each weight load (the packed GEMV), so each row's logits are bit-identical to that
  // session's own forward() of the row (ops.h: in every mode up to kGemvMaxRows rows).
  static void forward_batch(Session* const* sessions, size_t n, const float* x,
                            float* const* logits);

  // Forgets every position >= pos (pos <= pos()): cache rows past pos() are never read, so this
  // is exact and free (used to rewind after speculative rows).
  void truncate(size_t pos);

  size_t pos() const { return pos_; }
  const Model& model() const { return m_; }
  size_t capacity() const { return capacity_; }
  // A new Session with the same cache prefix (the first pos() rows), of the given capacity, on
  // `pool` (null: this session's).
  Session fork(size_t capacity, ops::ThreadPool* pool = nullptr) const;

 private:
  const Model& m_;
  ops::ThreadPool& pool_;
  size_t capacity_, pos_ = 0;
  // Per layer [capacity][n_kv * head_dim], left uninitialized: only rows below pos() (+ the rows
  // being written) are ever read, and a large block's pages are committed as rows are written, so
  // a session sized for the whole context costs the memory of what it holds.
  std::vector<std::unique_ptr<float[]>> k_, v_;
};

}  // namespace stepaudio::model
