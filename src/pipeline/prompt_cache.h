// The decoder state after a prompt head that every request starts with: the system turn up to
// the first audio row (<|BOT|>system\n{system}<|EOT|><|BOT|>human\n<audio_start>, ~20 ids). Every
// speech chunk of every request prefills it again otherwise (20 of a 10 s request's ~300 prompt
// rows, 27 x 20 rows for 10 minutes). It is computed once per system prompt and copied into each
// chunk's prefix (DecodeSession::fork_detached: a copy may compute concurrently with others).
// The copy's rows are bit for bit those of prefilling it, wherever rows do not depend on the
// batch (model::rows_independent_of_batch); elsewhere the head is one piece more of a prefill
// that the scheduler cuts into pieces anyway.
// Thread-safety: every member may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "stepaudio/pipeline.h"
#include "stepaudio/session.h"

namespace stepaudio {

class PromptCache {
 public:
  explicit PromptCache(size_t max_entries = 8) : max_entries_(max_entries) {}
  // A copy of the state after `head` able to hold `capacity` positions, on a thread pool of its
  // own; nullopt when the head is not cached.
  std::optional<DecodeSession> fork(std::span<const int32_t> head, size_t capacity, int threads);
  // Keeps a copy of `state`, the state after exactly `head`. Beyond max_entries the least
  // recently used head goes.
  void put(std::span<const int32_t> head, const DecodeSession& state);
  size_t size() const;

 private:
  struct Entry {
    std::vector<int32_t> head;
    std::shared_ptr<const DecodeSession> state;
    uint64_t used = 0;
  };
  const size_t max_entries_;
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
  uint64_t clock_ = 0;
};

namespace pipeline {
// The head of a chunk's prefix ids: the ids before its first <audio_patch> (empty without one).
std::span<const int32_t> prompt_head(std::span<const int32_t> prefix_ids, int32_t audio_patch_id);
// The prefix ids of a speech chunk of `patches` audio rows under `system`: the layout the tasks
// prefill (system turn, then the human turn holding the audio).
std::vector<int32_t> chunk_prefix_ids(const text::Tokenizer& tok, const std::string& system,
                                      size_t patches);
// Puts the head of `system` into engine.prompt_cache (if any), computed on this thread, before any
// request (the task bench: its first run finds it as every later one does).
void warm_prompt_cache(const Engine& engine, const std::string& system, int threads = 0);
}  // namespace pipeline

}  // namespace stepaudio
