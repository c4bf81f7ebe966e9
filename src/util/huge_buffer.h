// Anonymous memory for weights, aligned to 2 MiB and advised for transparent huge pages.
//
// Why: weights converted or quantized at load live here rather than in std::vector or file pages.
// Anonymous memory is never paged out on these machines (no swap), whereas file-backed pages that
// are read once per token look cold to the kernel's memory monitor (DAMON) and get reclaimed,
// which made decode speed vary ~10x; huge pages cut TLB misses while streaming (~15% bandwidth).
// The contents are uninitialised; the owner fills them.
// Thread-safety: plain owning value; concurrent reads of the memory are safe.
#pragma once

#include <cstddef>

namespace stepaudio::util {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  explicit HugeBuffer(size_t bytes);  // throws Error(io) when the allocation fails
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  HugeBuffer& operator=(HugeBuffer&& o) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  void* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Drops the pages of [p, p + bytes) from this process's resident set (MADV_DONTNEED on the whole
// pages inside the range). Used on read-only file mappings once their tensor has been converted, so
// the source shard does not count twice in RSS. No-op where unsupported.
void release_pages(const void* p, size_t bytes);

}  // namespace stepaudio::util
