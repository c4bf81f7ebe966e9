#include "ops/scratch.h"

#include <cstdlib>
#include <memory>
#include <new>

namespace stepaudio::ops {

namespace {
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
struct Slot {
  std::unique_ptr<void, FreeDeleter> block;
  size_t bytes = 0;
};
}  // namespace

void* scratch(ScratchSlot slot, size_t bytes) {
  thread_local Slot slots[static_cast<size_t>(ScratchSlot::kCount)];
  Slot& s = slots[static_cast<size_t>(slot)];
  // A kept block above the limit (from an earlier large request) is dropped on the next call.
  if (s.bytes >= bytes && (s.bytes <= kScratchKeepBytes || bytes > kScratchKeepBytes / 2))
    return s.block.get();
  s.block.reset();
  s.bytes = 0;
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw std::bad_alloc();
  s.block.reset(p);
  s.bytes = rounded;
  return p;
}

}  // namespace stepaudio::ops
