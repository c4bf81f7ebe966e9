// Read-only memory map of a whole file (RAII). Model shards are mapped, never read into heap
// memory, so that bf16 weights can be used in place and pages are shared between processes.
// Thread-safety: immutable after construction; concurrent reads are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace stepaudio::util {

class MappedFile {
 public:
  // Throws Error(io) when the file cannot be opened, stat'ed or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace stepaudio::util
