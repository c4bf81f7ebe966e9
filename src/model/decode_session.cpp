// The public DecodeSession (include/stepaudio/session.h) over model::Session: audio splicing,
// forks, sampling with stop ids and a per-token veto, and batched continuation scoring on a trie.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include "model/decode_session_impl.h"
#include "model/encoder.h"
#include "model/sampler.h"
#include "model/session.h"
#include "stepaudio/error.h"
#include "stepaudio/session.h"

namespace stepaudio {

namespace {
void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed))
    throw Error(Errc::canceled, "generation canceled");
}

double log_softmax_at(std::span<const float> logits, int32_t id) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float l : logits) mx = std::max(mx, static_cast<double>(l));
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  return static_cast<double>(logits[id]) - mx - std::log(sum);
}
}  // namespace

std::vector<AudioEmbedding> encode_audio(const Model& m, const std::vector<MelChunk>& mels,
                                         int threads, const ProgressFn& progress,
                                         const std::atomic<bool>* cancel,
                                         const std::function<void()>& between_blocks) {
  ops::ThreadPool pool(threads);
  std::vector<AudioEmbedding> out;
  out.reserve(mels.size());
  for (size_t i = 0; i < mels.size(); ++i) {
    check_cancel(cancel);
    const MelChunk& c = mels[i];
    if (c.data.size() != c.n_mels * c.n_frames)
      throw Error(Errc::invalid_argument, "mel chunk data size mismatch");
    model::AudioEmbedding e =
        model::encode_audio(m, pool, c.data.data(), c.n_mels, c.n_frames, between_blocks);
    out.push_back({std::move(e.adapter), e.n_rows, m.cfg.text.hidden});
    if (progress) progress({GenerateProgress::Stage::encode, i + 1, mels.size()});
  }
  return out;
}

std::vector<double> normalize_logprobs(const std::vector<double>& lp) {
  if (lp.empty()) return {};
  const double mx = *std::max_element(lp.begin(), lp.end());
  std::vector<double> p(lp.size());
  double sum = 0;
  for (size_t i = 0; i < lp.size(); ++i) sum += p[i] = std::exp(lp[i] - mx);
  for (double& x : p) x /= sum;
  return p;
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, size_t k) {
  k = std::min(k, logits.size());
  if (k == 0) return {};
  // One pass keeps the k best in a heap whose top is the worst kept (lowest logit, then highest
  // id), so a later id never displaces an equal earlier one: ties go to the lower id.
  auto worse = [&](int32_t a, int32_t b) {  // true when a ranks before b (a is better)
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<int32_t> heap;
  heap.reserve(k + 1);
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    mx = std::max(mx, static_cast<double>(logits[i]));
    const int32_t id = static_cast<int32_t>(i);
    if (heap.size() < k) {
      heap.push_back(id);
      std::push_heap(heap.begin(), heap.end(), worse);
    } else if (worse(id, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), worse);
      heap.back() = id;
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  }
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  const double log_sum = std::log(sum);
  std::sort_heap(heap.begin(), heap.end(), worse);  // best first
  std::vector<TokenLogprob> out;
  out.reserve(k);
  for (int32_t id : heap) out.push_back({id, static_cast<double>(logits[id]) - mx - log_sum});
  return out;
}

DecodeSession::DecodeSession(std::shared_ptr<const Model> model, size_t capacity, int threads) {
  if (!model) throw Error(Errc::invalid_argument, "DecodeSession needs a model");
  auto pool = std::make_shared<ops::ThreadPool>(threads);
  model::Session s(*model, *pool, capacity);
  impl_ = std::make_unique<Impl>(std::move(model), std::move(pool), std::move(s));
}
DecodeSession::DecodeSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DecodeSession::~DecodeSession() = default;
DecodeSession::DecodeSession(DecodeSession&&) noexcept = default;
DecodeSession& DecodeSession::operator=(DecodeSession&&) noexcept = default;

size_t DecodeSession::pos() const {
  return impl_->session.pos();
}
size_t DecodeSession::capacity() const {
  return impl_->session.capacity();
}
const Model& DecodeSession::model() const {
  return *impl_->model;
}
std::span<const float> DecodeSession::logits() const {
  return impl_->logits;
}

double DecodeSession::logprob(int32_t id) const {
  if (impl_->logits.empty()) throw Error(Errc::invalid_argument, "logprob before any append");
  if (id < 0 || static_cast<size_t>(id) >= impl_->logits.size())
    throw Error(Errc::invalid_argument, "token id " + std::to_string(id) + " out of range");
  return log_softmax_at(impl_->logits, id);
}

std::vector<float> DecodeSession::Impl::prompt_rows(
    std::span<const int32_t> ids, const std::vector<AudioEmbedding>& audio) const {
  const Model& m = *model;
  const size_t H = m.cfg.text.hidden, V = m.cfg.text.vocab;
  size_t n_patch = 0, n_rows = 0;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= V)
      throw Error(Errc::invalid_argument, "prompt id " + std::to_string(id) +
                                              " outside the vocabulary (" + std::to_string(V) +
                                              ")");
    n_patch += (id == m.audio_patch_id);
  }
  for (const AudioEmbedding& a : audio) {
    if (a.dim != H || a.rows.size() != a.n_rows * a.dim)
      throw Error(Errc::invalid_argument, "audio embedding shape does not match the decoder");
    n_rows += a.n_rows;
  }
  // Without audio, <audio_patch> ids are plain tokens (generate() does the same).
  if (!audio.empty() && n_patch != n_rows)
    throw Error(Errc::invalid_argument, "the prompt has " + std::to_string(n_patch) +
                                            " <audio_patch> ids but the audio has " +
                                            std::to_string(n_rows) + " rows");
  if (session.pos() + ids.size() > session.capacity())
    throw Error(Errc::invalid_argument,
                "decoder position " + std::to_string(session.pos() + ids.size()) +
                    " exceeds the session's " + std::to_string(session.capacity()) + " positions");
  std::vector<float> x(ids.size() * H);  // [n][H]
  size_t chunk = 0, row = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!audio.empty() && ids[i] == m.audio_patch_id) {
      while (row == audio[chunk].n_rows) ++chunk, row = 0;
      std::copy_n(audio[chunk].rows.data() + (row++) * H, H, x.data() + i * H);
    } else {
      session.embed(ids[i], x.data() + i * H);
    }
  }
  return x;
}

void DecodeSession::append(std::span<const int32_t> ids, const std::vector<AudioEmbedding>& audio) {
  if (ids.empty()) return;
  const std::vector<float> x = impl_->prompt_rows(ids, audio);  // checked before anything runs
  impl_->logits.resize(impl_->model->cfg.text.vocab);
  impl_->session.forward(x.data(), ids.size(), impl_->logits.data());
  impl_->history.insert(impl_->history.end(), ids.begin(), ids.end());
}

DecodeSession DecodeSession::fork(size_t capacity) const {
  return fork_on(capacity, impl_->pool);
}

DecodeSession DecodeSession::fork_detached(size_t capacity, int threads) const {
  return fork_on(capacity, std::make_shared<ops::ThreadPool>(threads));
}

DecodeSession DecodeSession::fork_on(size_t capacity, std::shared_ptr<ops::ThreadPool> pool) const {
  model::Session s =
      impl_->session.fork(capacity ? capacity : impl_->session.capacity(), pool.get());
  auto impl = std::make_unique<Impl>(impl_->model, std::move(pool), std::move(s));
  impl->logits = impl_->logits;
  impl->history = impl_->history;
  return DecodeSession(std::move(impl));
}

GenerateResult DecodeSession::generate(const SessionGenerateOptions& o) {
  // One code path for one branch and many: a batch of one (batch_decode.cpp).
  BranchRequest one{this, o};
  return generate_batch(std::span<const BranchRequest>(&one, 1)).front();
}

ScorePlan::ScorePlan(const model::Session& session, std::span<const float> logits,
                     const std::vector<std::vector<int32_t>>& candidates) {
  const size_t H = session.model().cfg.text.hidden;
  vocab_ = session.model().cfg.text.vocab;
  if (logits.empty()) throw Error(Errc::invalid_argument, "score needs a prompt first");
  // Trie of the candidates. Node = one token; node i's logits predict its children. Only nodes
  // with children need a decoder row; the root's children are predicted by the session's logits.
  std::map<int32_t, int32_t> root;
  paths_.resize(candidates.size());
  for (size_t c = 0; c < candidates.size(); ++c) {
    int32_t at = -1;
    for (int32_t tok : candidates[c]) {
      if (tok < 0 || static_cast<size_t>(tok) >= vocab_)
        throw Error(Errc::invalid_argument,
                    "candidate token " + std::to_string(tok) + " outside the vocabulary");
      auto& kids = at < 0 ? root : nodes_[at].children;
      auto it = kids.find(tok);
      int32_t next;
      if (it == kids.end()) {
        next = static_cast<int32_t>(nodes_.size());
        kids.emplace(tok, next);  // before push_back: `kids` may live inside `nodes_`
        nodes_.push_back({tok, at, {}});
      } else {
        next = it->second;
      }
      paths_[c].push_back(next);
      at = next;
    }
  }
  // Rows = nodes with children, in creation order (a parent is created before its children).
  row_of_.assign(nodes_.size(), -1);
  std::vector<int32_t> row_nodes;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].children.empty()) continue;
    row_of_[i] = static_cast<int32_t>(row_nodes.size());
    row_nodes.push_back(static_cast<int32_t>(i));
    parent_.push_back(nodes_[i].parent < 0 ? -1 : row_of_[nodes_[i].parent]);
  }
  x_.resize(row_nodes.size() * H);
  for (size_t r = 0; r < row_nodes.size(); ++r)
    session.embed(nodes_[row_nodes[r]].token, x_.data() + r * H);
  if (session.pos() + rows() > session.capacity())
    throw Error(Errc::invalid_argument, "scoring needs " + std::to_string(session.pos() + rows()) +
                                            " positions but the session holds " +
                                            std::to_string(session.capacity()));
}

std::vector<ContinuationScore> ScorePlan::scores(std::span<const float> last_logits,
                                                 const float* row_logits) const {
  std::vector<ContinuationScore> out(paths_.size());
  for (size_t c = 0; c < paths_.size(); ++c) {
    for (int32_t at : paths_[c]) {
      const Node& node = nodes_[at];
      std::span<const float> lg =
          node.parent < 0
              ? last_logits
              : std::span<const float>(row_logits + row_of_[node.parent] * vocab_, vocab_);
      out[c].logprob += log_softmax_at(lg, node.token);
    }
    out[c].n_tokens = paths_[c].size();
  }
  return out;
}

std::vector<ContinuationScore> DecodeSession::score(
    const std::vector<std::vector<int32_t>>& candidates) {
  const ScorePlan plan(impl_->session, impl_->logits, candidates);
  std::vector<float> row_logits(plan.rows() * impl_->model->cfg.text.vocab);
  if (plan.rows() > 0)
    impl_->session.forward_tree(plan.x().data(), plan.rows(), plan.parent().data(),
                                row_logits.data());
  return plan.scores(impl_->logits, row_logits.data());
}

}  // namespace stepaudio
