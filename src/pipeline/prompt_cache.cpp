// PromptCache (prompt_cache.h): a few entries searched linearly under one lock; the copy itself
// (O(head x layers), ~2 MB at full size) is made outside it.
#include "pipeline/prompt_cache.h"

#include <algorithm>

#include "stepaudio/prompt.h"
#include "stepaudio/tokenizer.h"

namespace stepaudio {

std::optional<DecodeSession> PromptCache::fork(std::span<const int32_t> head, size_t capacity,
                                               int threads) {
  std::shared_ptr<const DecodeSession> state;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (Entry& e : entries_)
      if (std::ranges::equal(e.head, head)) {
        e.used = ++clock_;
        state = e.state;
        break;
      }
  }
  if (!state) return std::nullopt;
  return state->fork_detached(capacity, threads);
}

void PromptCache::put(std::span<const int32_t> head, const DecodeSession& state) {
  // A copy on a pool of one thread, i.e. none of its own: a kept entry holds no idle workers.
  auto kept = std::make_shared<const DecodeSession>(state.fork_detached(state.pos(), 1));
  std::lock_guard<std::mutex> lk(mu_);
  for (Entry& e : entries_)
    if (std::ranges::equal(e.head, head)) return;  // another request put it first
  if (entries_.size() >= max_entries_ && !entries_.empty())
    entries_.erase(std::ranges::min_element(entries_, {}, &Entry::used));
  entries_.push_back({std::vector<int32_t>(head.begin(), head.end()), std::move(kept), ++clock_});
}

size_t PromptCache::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return entries_.size();
}

namespace pipeline {

std::span<const int32_t> prompt_head(std::span<const int32_t> prefix_ids, int32_t audio_patch_id) {
  const auto at = std::ranges::find(prefix_ids, audio_patch_id);
  return at == prefix_ids.end() ? std::span<const int32_t>()
                                : prefix_ids.first(at - prefix_ids.begin());
}

std::vector<int32_t> chunk_prefix_ids(const text::Tokenizer& tok, const std::string& system,
                                      size_t patches) {
  return text::render_prompt(tok,
                             {text::Message::text("system", system),
                              text::Message::list("human", {text::Part::audio(patches)})},
                             false)
      .ids;
}

void warm_prompt_cache(const Engine& engine, const std::string& system, int threads) {
  if (!engine.prompt_cache || !engine.tokenizer) return;
  const std::vector<int32_t> ids = chunk_prefix_ids(*engine.tokenizer, system, 1);
  const std::span<const int32_t> head = prompt_head(ids, model_info(*engine.model).audio_patch_id);
  if (head.empty()) return;
  DecodeSession s(engine.model, head.size(), threads);
  s.append(head);
  engine.prompt_cache->put(head, s);
}

}  // namespace pipeline
}  // namespace stepaudio
