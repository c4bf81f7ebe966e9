// BatchDecoder and generate_batch (include/stepaudio/session.h): branches that generate together,
// one batched decoder pass per step (model::Session::forward_batch). DecodeSession::generate is a
// batch of one, so a branch in a batch and a lone generate() run the same code.
#include <algorithm>
#include <chrono>

#include "model/batch_branch.h"
#include "stepaudio/error.h"

namespace stepaudio {

BatchDecoder::BatchDecoder(size_t max_batch) : max_batch_(std::max<size_t>(1, max_batch)) {}
BatchDecoder::~BatchDecoder() = default;

size_t BatchDecoder::active() const {
  return branches_.size();
}

void BatchDecoder::add(DecodeSession& session, const SessionGenerateOptions& o, DoneFn done) {
  DecodeSession::Impl& s = *session.impl_;
  if (s.logits.empty())
    throw Error(Errc::invalid_argument, "generate needs a prompt (append first)");
  if (s.session.pos() + o.max_new_tokens > s.session.capacity() + 1)
    throw Error(Errc::invalid_argument,
                "the session holds " + std::to_string(s.session.capacity()) + " positions; " +
                    std::to_string(s.session.pos()) + " used + " +
                    std::to_string(o.max_new_tokens) + " new tokens do not fit");
  for (const auto& b : branches_) {
    if (b->s == &s) throw Error(Errc::invalid_argument, "the session is already generating");
    if (b->s->model.get() != s.model.get())
      throw Error(Errc::invalid_argument, "batched generation: sessions of different models");
  }
  branches_.push_back(std::make_unique<Branch>(&s, o, std::move(done)));
}

std::vector<BatchDecoder::Branch*> BatchDecoder::begin_step() {
  std::vector<Branch*> go;  // branches whose chosen token runs in this step's pass(es)
  for (auto& b : branches_) {
    bool more = false;
    try {
      more = b->choose();
    } catch (...) {
      b->error = std::current_exception();
    }
    if (more) go.push_back(b.get());
  }
  return go;
}

size_t BatchDecoder::step() {
  if (branches_.empty()) return 0;
  const std::vector<Branch*> go = begin_step();
  // The continuing branches' tokens, at most max_batch_ rows per decoder pass.
  const size_t H = branches_.front()->s->model->cfg.text.hidden;
  for (size_t i0 = 0; i0 < go.size(); i0 += max_batch_) {
    const size_t n = std::min(max_batch_, go.size() - i0);
    std::vector<float> x(n * H);
    std::vector<model::Session::Rows> rows;
    try {
      for (size_t i = 0; i < n; ++i) rows.push_back(go[i0 + i]->rows(x.data() + i * H));
      model::Session::forward_mixed(rows);
    } catch (...) {
      for (size_t i = 0; i < n; ++i) go[i0 + i]->error = std::current_exception();
    }
  }
  return end_step(go);
}

size_t BatchDecoder::end_step(const std::vector<Branch*>& go) {
  for (Branch* b : go)
    if (!b->error) b->s->history.push_back(b->res.tokens.back());
  // Retire the branches that ended; their callbacks run last, so they may add() new branches.
  std::vector<std::unique_ptr<Branch>> keep, ended;
  for (auto& b : branches_) {
    const bool goes_on = !b->error && std::find(go.begin(), go.end(), b.get()) != go.end();
    (goes_on ? keep : ended).push_back(std::move(b));
  }
  branches_ = std::move(keep);
  std::exception_ptr thrown;  // a DoneFn's own exception: every other DoneFn still runs first
  for (auto& b : ended) {
    b->res.generate_ms =
        std::chrono::duration<double, std::milli>(Branch::Clock::now() - b->t0).count();
    try {
      if (b->done) b->done(std::move(b->res), b->error);
    } catch (...) {
      if (!thrown) thrown = std::current_exception();
    }
  }
  if (thrown) std::rethrow_exception(thrown);
  return branches_.size();
}

std::vector<GenerateResult> generate_batch(std::span<const BranchRequest> branches,
                                           size_t max_batch) {
  std::vector<GenerateResult> out(branches.size());
  std::exception_ptr first;
  BatchDecoder d(max_batch);
  for (size_t i = 0; i < branches.size(); ++i) {
    if (!branches[i].session) throw Error(Errc::invalid_argument, "a branch without a session");
    d.add(*branches[i].session, branches[i].options,
          [&out, &first, i](GenerateResult r, std::exception_ptr e) {
            out[i] = std::move(r);
            if (e && !first) first = e;
          });
  }
  while (d.step() > 0) {
  }
  if (first) std::rethrow_exception(first);
  return out;
}

}  // namespace stepaudio
