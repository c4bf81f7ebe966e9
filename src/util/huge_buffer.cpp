#include "util/huge_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "stepaudio/error.h"

namespace stepaudio::util {

namespace {
constexpr size_t kHuge = size_t{2} << 20;
}

HugeBuffer::HugeBuffer(size_t bytes) : n_(bytes) {
  if (bytes == 0) return;
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  if (posix_memalign(&p_, kHuge, rounded) != 0 || !p_)
    throw Error(Errc::io, "cannot allocate " + std::to_string(bytes) + " bytes for weights");
#if defined(MADV_HUGEPAGE)
  madvise(p_, rounded, MADV_HUGEPAGE);  // advice only: failure just means 4 KiB pages
#endif
}

HugeBuffer::~HugeBuffer() {
  std::free(p_);
}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

void release_pages(const void* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace stepaudio::util
