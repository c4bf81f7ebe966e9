// The engine's prompt head cache (src/pipeline/prompt_cache.h) on the synthetic tiny model: a
// chunk prefix continued from a cached head gives bit for bit the logits of prefilling it whole
// (bf16 weights: rows do not depend on the batch), also when two requests' copies compute at the
// same time on threads of their own (DecodeSession::fork_detached); least recently used heads
// go beyond the cache's size.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "pipeline/prompt_cache.h"
#include "random_inputs.h"
#include "stepaudio/model.h"
#include "stepaudio/session.h"

using namespace stepaudio;

namespace {
// A chunk prefix as the tasks lay it out: a head of text ids, the audio patches, a tail.
std::vector<int32_t> chunk_ids(const Model& m, std::vector<int32_t> head, size_t frames) {
  head.insert(head.end(), audio_patch_count(frames), model_info(m).audio_patch_id);
  head.insert(head.end(), {6, 7});
  return head;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEST(PromptCache, PrefixFromCachedHeadEqualsWholePrefill) {
  auto m = make_synthetic_model("tiny", 5);
  const std::vector<MelChunk> mels = {{randn(128 * 81, 3, 0.5f), 128, 81}};  // any values
  const auto audio = encode_audio(*m, mels, 1);
  const std::vector<int32_t> ids = chunk_ids(*m, {1, 2, 3, 4, 5}, 81);
  const std::span<const int32_t> head = pipeline::prompt_head(ids, model_info(*m).audio_patch_id);
  ASSERT_EQ(head.size(), 5u);

  DecodeSession whole(m, ids.size(), 1);
  whole.append(ids, audio);

  PromptCache cache;
  EXPECT_FALSE(cache.fork(head, ids.size(), 1).has_value());  // not there yet
  {
    DecodeSession h(m, head.size(), 2);
    h.append(head);
    cache.put(head, h);
  }  // the cache keeps its own copy
  ASSERT_EQ(cache.size(), 1u);

  // Two requests continue copies of the head at the same time, each on its own threads.
  std::vector<float> got[2];
  std::thread t[2];
  for (int r = 0; r < 2; ++r)
    t[r] = std::thread([&, r] {
      std::optional<DecodeSession> s = cache.fork(head, ids.size(), 2);
      ASSERT_TRUE(s.has_value());
      EXPECT_EQ(s->pos(), head.size());
      s->append(std::span<const int32_t>(ids).subspan(head.size()), audio);
      got[r].assign(s->logits().begin(), s->logits().end());
    });
  for (auto& x : t) x.join();
  for (const auto& g : got) EXPECT_TRUE(same_bits(g, whole.logits()));

  // A different head is another entry; the same one put twice stays one.
  const std::vector<int32_t> other = chunk_ids(*m, {1, 2, 9}, 81);
  const std::span<const int32_t> other_head =
      pipeline::prompt_head(other, model_info(*m).audio_patch_id);
  EXPECT_FALSE(cache.fork(other_head, other.size(), 1).has_value());
  DecodeSession h(m, head.size(), 1);
  h.append(head);
  cache.put(head, h);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(PromptCache, LeastRecentlyUsedHeadGoes) {
  auto m = make_synthetic_model("tiny", 5);
  PromptCache cache(2);
  auto state = [&](const std::vector<int32_t>& head) {
    DecodeSession s(m, head.size(), 1);
    s.append(head);
    return s;
  };
  const std::vector<int32_t> a = {1, 2}, b = {3, 4}, c = {5, 6};
  cache.put(a, state(a));
  cache.put(b, state(b));
  EXPECT_TRUE(cache.fork(a, 8, 1).has_value());  // a used after b
  cache.put(c, state(c));                        // b goes
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_TRUE(cache.fork(a, 8, 1).has_value());
  EXPECT_FALSE(cache.fork(b, 8, 1).has_value());
  EXPECT_TRUE(cache.fork(c, 8, 1).has_value());
  // A copy holds the head and room for more; a head longer than the room is refused.
  EXPECT_EQ(cache.fork(c, 8, 1)->capacity(), 8u);
  EXPECT_THROW(cache.fork(c, 1, 1), std::exception);
}

TEST(PromptCache, HeadIsTheIdsBeforeTheFirstAudioPatch) {
  const std::vector<int32_t> ids = {1, 2, 99, 3, 99};
  EXPECT_EQ(pipeline::prompt_head(ids, 99).size(), 2u);
  EXPECT_TRUE(pipeline::prompt_head(ids, 42).empty());  // no audio: nothing to cache
  EXPECT_TRUE(pipeline::prompt_head(std::vector<int32_t>{99, 1}, 99).empty());
}
