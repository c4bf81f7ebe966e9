// The safetensors container: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the raw
// tensor bytes (offsets relative to the end of the header).
//
// parse_safetensors() validates everything before anything is used: sane header length (<= 100 MB
// and inside the file), JSON shape, known dtype, shape x element size == byte length, offsets
// inside the data area, no overflow. Any violation is Error(model_format) naming the file and
// tensor. Thread-safety: value types; SafetensorsFile is immutable after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ops/dtype.h"
#include "util/mmap.h"

namespace stepaudio::model {

struct TensorInfo {
  ops::DType dtype = ops::DType::f32;
  std::vector<size_t> shape;
  const uint8_t* data = nullptr;  // inside the file's bytes
  size_t nbytes = 0;
  size_t numel() const;
};

// Parses bytes[0, size) as a safetensors file. Tensors point into `bytes`.
std::map<std::string, TensorInfo> parse_safetensors(const uint8_t* bytes, size_t size,
                                                    const std::string& where);

// One mmapped shard.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& path() const { return map_->path(); }

 private:
  std::unique_ptr<util::MappedFile> map_;
  std::map<std::string, TensorInfo> tensors_;
};

}  // namespace stepaudio::model
