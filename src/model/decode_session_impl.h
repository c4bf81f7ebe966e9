// DecodeSession's state (include/stepaudio/session.h), shared by decode_session.cpp (one session)
// and batch_decode.cpp (BatchDecoder: several sessions stepped together). Internal to src/model/.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <vector>

#include "model/session.h"
#include "stepaudio/session.h"

namespace stepaudio {

struct DecodeSession::Impl {
  std::shared_ptr<const Model> model;
  std::shared_ptr<ops::ThreadPool> pool;  // shared with forks; declared before the session
  model::Session session;
  std::vector<float> logits;     // [vocab] after the last appended id, empty before
  std::vector<int32_t> history;  // every id appended (the repetition penalty's view)

  Impl(std::shared_ptr<const Model> m, std::shared_ptr<ops::ThreadPool> p, model::Session s)
      : model(std::move(m)), pool(std::move(p)), session(std::move(s)) {}

  // The decoder input of append(ids, audio): x [ids.size()][hidden], <audio_patch> ids replaced
  // by the audio rows in order. Checks the ids, the audio's shape and count, and that the rows fit
  // the session (Error(invalid_argument)); changes nothing.
  std::vector<float> prompt_rows(std::span<const int32_t> ids,
                                 const std::vector<AudioEmbedding>& audio) const;
};

// DecodeSession::score in two halves around its decoder pass, so a Scheduler can run the pass
// together with other sessions' rows: the candidates merged into a token trie, whose inner nodes
// are the pass's tree rows (x, parent: model::Session::Rows), and the scores read from the logits
// of those rows and the session's current logits.
class ScorePlan {
 public:
  // session: the one scored, logits: its current ones (DecodeSession::logits()). Throws
  // Error(invalid_argument) without logits, for a token outside the vocabulary, or when the rows
  // do not fit the session.
  ScorePlan(const model::Session& session, std::span<const float> logits,
            const std::vector<std::vector<int32_t>>& candidates);
  size_t rows() const { return parent_.size(); }
  const std::vector<float>& x() const { return x_; }  // [rows][hidden]
  const std::vector<int32_t>& parent() const { return parent_; }
  // row_logits: [rows][vocab] (may be null when rows() == 0).
  std::vector<ContinuationScore> scores(std::span<const float> last_logits,
                                        const float* row_logits) const;

 private:
  struct Node {
    int32_t token, parent;  // parent: node index, -1 = root (the session's last position)
    std::map<int32_t, int32_t> children;
  };
  std::vector<Node> nodes_;
  std::vector<std::vector<int32_t>> paths_;  // node index per token, per candidate
  std::vector<int32_t> row_of_, parent_;
  std::vector<float> x_;
  size_t vocab_ = 0;
};

}  // namespace stepaudio
