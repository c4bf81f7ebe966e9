// The engine in pieces, for callers that ask several questions about one recording (the tasks of
// src/pipeline/): encode the audio once, prefill a shared prefix once, fork it per question, score
// label continuations in one batched pass, generate from any branch.
//
//   auto audio = stepaudio::encode_audio(*model, features.mels);       // once per recording
//   stepaudio::DecodeSession prefix(model, prefix_ids.size() + 64);
//   prefix.append(prefix_ids, audio);                                  // system + audio, once
//   stepaudio::DecodeSession q = prefix.fork(prefix.pos() + 512);      // one branch per question
//   q.append(question_ids);
//   auto scores = q.score({{happy_ids}, {sad_ids}});                   // log P(label | branch)
//   stepaudio::GenerateResult text = q.generate({.max_new_tokens = 200});
//
// Several branches (forks of one prefix, or sessions of different requests) generate together with
// a BatchDecoder or generate_batch(): one decoder pass per step for all of them, so each weight is
// read once per step instead of once per branch (decode is bound by reading the weights).
//
// Thread-safety: a DecodeSession is one request's mutable state; use it from one thread at a time.
// Forks are independent copies of the cache (no sharing after fork()), but a fork shares its
// parent's thread pool, so sessions forked from one another must not compute concurrently. Create
// separate root sessions for concurrent work. encode_audio() is reentrant.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "stepaudio/model.h"

namespace stepaudio {
namespace ops {
class ThreadPool;  // src/ops: a session's compute threads
}

// The adapter rows of one audio chunk: they replace that chunk's <audio_patch> embeddings.
struct AudioEmbedding {
  std::vector<float> rows;  // [n_rows][dim], dim = the decoder's hidden size
  size_t n_rows = 0, dim = 0;
};

// Encoder + adapter for each chunk, in order (progress: Stage::encode per chunk; cancel polled
// between chunks). between_blocks (may be empty) is called after every encoder block but a
// chunk's last (Scheduler::run_yielding passes its decode step). Throws Error(invalid_argument)
// for chunks the encoder cannot take.
std::vector<AudioEmbedding> encode_audio(const Model& model, const std::vector<MelChunk>& mels,
                                         int threads = 0, const ProgressFn& progress = {},
                                         const std::atomic<bool>* cancel = nullptr,
                                         const std::function<void()>& between_blocks = {});

// Log-probability of one candidate continuation: sum over its tokens of log softmax(logits)[token]
// (raw logits, temperature 1), each token conditioned on the session and the tokens before it.
struct ContinuationScore {
  double logprob = 0;
  size_t n_tokens = 0;
};

struct SessionGenerateOptions {
  size_t max_new_tokens = 256;
  SamplingOptions sampling;       // default: greedy
  std::vector<int32_t> stop_ids;  // empty: the model's EOS (<|EOT|>)
  // Called after each chosen token (the stop token included); returning false stops generation
  // there (a guard, e.g. the repetition detector, or streaming output). It runs before the token
  // is appended: the session's logits() are still the ones that chose it, so the callback may
  // read them (e.g. top_logprobs() for the alternatives a client asked for).
  std::function<bool(int32_t id, float logprob)> on_token;
  const std::atomic<bool>* cancel = nullptr;  // polled before each token
};

class DecodeSession {
 public:
  // An empty session over `model` holding up to `capacity` positions (<= max positions).
  // threads 0: physical cores. Throws Error(invalid_argument) for a capacity over the limit.
  DecodeSession(std::shared_ptr<const Model> model, size_t capacity, int threads = 0);
  ~DecodeSession();
  DecodeSession(DecodeSession&&) noexcept;
  DecodeSession& operator=(DecodeSession&&) noexcept;

  // Runs `ids` through the decoder after the current position. <audio_patch> ids take, in order,
  // the rows of `audio` (all rows of chunk 0, then chunk 1, ...); their total must equal the
  // number of <audio_patch> ids. Afterwards logits() are those after the last id.
  void append(std::span<const int32_t> ids, const std::vector<AudioEmbedding>& audio = {});
  // Logits [vocab] after the last appended id (empty before the first append).
  std::span<const float> logits() const;
  // log softmax(logits())[id], in double precision.
  double logprob(int32_t id) const;

  // An independent copy of this state (the cached prefix is copied: O(pos() x layers)), able to
  // hold `capacity` positions (0: the same capacity). Continuing a fork gives exactly the logits of
  // running the whole sequence from scratch.
  DecodeSession fork(size_t capacity = 0) const;
  // The same copy with a thread pool of its own (`threads`, 0: physical cores), so that it may
  // compute concurrently with this session and its other forks: how a state computed once is
  // handed to concurrent requests (the prompt head cache of an Engine, pipeline.h).
  DecodeSession fork_detached(size_t capacity, int threads) const;

  // Samples from logits() on until a stop id, max_new_tokens or on_token() says stop. Every token
  // but the last is appended to the session, so logits() afterwards are those that chose the last
  // one. result.logprobs are log-softmax of the raw logits at each chosen id; the timings other
  // than generate_ms are 0. Throws Error(canceled) when the flag is raised.
  GenerateResult generate(const SessionGenerateOptions& options);

  // Scores every candidate continuation after the current state in one decoder pass: the
  // candidates are merged into a token trie (shared prefixes run once) and run together under a
  // tree attention mask, each row seeing the cached prefix and its own ancestors only. The state is
  // unchanged afterwards (the rows use the cache past pos() as scratch), so the capacity must allow
  // pos() + (number of trie nodes that have children). An empty candidate scores 0.
  std::vector<ContinuationScore> score(const std::vector<std::vector<int32_t>>& candidates);

  size_t pos() const;
  size_t capacity() const;
  const Model& model() const;

 private:
  friend class BatchDecoder;
  friend class Scheduler;
  struct Impl;
  explicit DecodeSession(std::unique_ptr<Impl> impl);
  DecodeSession fork_on(size_t capacity, std::shared_ptr<ops::ThreadPool> pool) const;
  std::unique_ptr<Impl> impl_;
};

// Generates on several sessions at once. Each branch behaves exactly as session.generate(options)
// would alone (same stop ids, budget, sampler, on_token veto, cancel flag, and the same tokens:
// every branch's logits are bit-identical to a lone run in the exact modes --quant f32/bf16 and,
// up to ops::kGemvMaxRows branches per pass, in the q8/q4 modes whose GEMV quantizes each row on
// its own). Per step, every active branch chooses its next token, then the branches that continue
// run their tokens through the decoder in one batched pass (at most max_batch rows per pass).
// Branches may be added between steps (continuous batching: a request arriving while others
// decode joins at the next step boundary) and leave as soon as they stop.
// Thread-safety: one thread drives a BatchDecoder (add/step); the sessions must not be used
// elsewhere while they are in it. The pass runs on the thread pool of the first branch in it.
class BatchDecoder {
 public:
  // Called once when a branch ends, from step(): its result, or the error that ended it (its
  // cancel flag: Error(canceled); an exception thrown by its on_token) with a partial result.
  using DoneFn = std::function<void(GenerateResult result, std::exception_ptr error)>;

  explicit BatchDecoder(size_t max_batch = 8);
  ~BatchDecoder();
  BatchDecoder(const BatchDecoder&) = delete;
  BatchDecoder& operator=(const BatchDecoder&) = delete;

  // Starts a branch at the next step. Throws Error(invalid_argument) at once for what generate()
  // rejects (no prompt yet, budget over the capacity, bad sampling options) or a session of
  // another model than the branches already in.
  void add(DecodeSession& session, const SessionGenerateOptions& options, DoneFn done);
  // One step for every active branch; returns how many are still active. Errors end only the
  // branches they concern, through their DoneFn (a failing decoder pass: every branch in it).
  // The DoneFns run at the end of the step, so they may add() follow-up branches; one that
  // throws has its exception rethrown by step() after the other DoneFns ran.
  size_t step();
  size_t active() const;

 private:
  friend class Scheduler;
  struct Branch;  // model/batch_branch.h
  // step() in two halves around the decoder pass, for a Scheduler that runs the branches' rows
  // in one pass with other sessions' prompt rows: begin_step() chooses every branch's next token
  // and returns the branches whose token must run (Branch::rows); end_step() takes them back
  // after the pass (a failed pass: their `error` set), retires the ended branches and runs their
  // DoneFns; it returns active().
  std::vector<Branch*> begin_step();
  size_t end_step(const std::vector<Branch*>& go);
  std::vector<std::unique_ptr<Branch>> branches_;
  size_t max_batch_;
};

// Runs the branches to the end together (a BatchDecoder) and returns their results in order.
// Throws the first branch error (after every branch has ended).
struct BranchRequest {
  DecodeSession* session = nullptr;
  SessionGenerateOptions options;
};
std::vector<GenerateResult> generate_batch(std::span<const BranchRequest> branches,
                                           size_t max_batch = 8);

// One id with its log-probability.
struct TokenLogprob {
  int32_t id = 0;
  double logprob = 0;
};

// The k most probable ids of `logits` with their log softmax (raw logits, temperature 1, in double
// precision: the same value as DecodeSession::logprob and GenerateResult::logprobs), most
// probable first, ties to the lower id. k is clamped to the vocabulary. O(vocab + k log k).
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, size_t k);

// Normalizes log-probabilities over a closed set: p_i = exp(l_i) / sum_j exp(l_j), computed
// stably (max subtracted). Empty in, empty out.
std::vector<double> normalize_logprobs(const std::vector<double>& logprobs);

}  // namespace stepaudio
