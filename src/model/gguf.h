// The GGUF v3 container (ggml's single-file model format), as `stepaudio quantize` writes it and
// load_model reads it.
//
//   "GGUF" | u32 version = 3 | u64 n_tensors | u64 n_kv
//   n_kv x  (string key, u32 value type, value)        strings are u64 length + bytes, no NUL
//   n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
//   zero padding to `general.alignment` (default 32), then the data area; every tensor's offset
//   (relative to the data area) is a multiple of the alignment.
// ne[0] is the innermost (fastest-varying) dimension, i.e. the reverse of the row-major shape of
// PyTorch/safetensors: a [rows][cols] matrix has ne = {cols, rows}. GgufTensor::shape is given in
// row-major order so that it compares directly with the HF names' shapes (model/loader.cpp).
// Types we read and write (ggml ids): F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, BF16 = 30.
//
// parse_gguf() validates everything before anything is used: magic, version, counts bounded by the
// file size, every string and array inside the file, known value and tensor types, at most 4
// dims, no zero dim, no size overflow, block types with ne[0] % 32 == 0, aligned offsets, every
// tensor inside the data area, no duplicate keys or names. Violations are Error(model_format)
// naming the file and the field (reference: ggml/src/gguf.cpp, gguf_init_from_file_impl).
// Thread-safety: value types; GgufFile is immutable after construction.
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

inline constexpr uint32_t kGgufVersion = 3;
inline constexpr size_t kGgufAlignment = 32;

struct GgufTensor {
  ops::DType dtype = ops::DType::f32;
  std::vector<size_t> shape;  // row-major (the reverse of GGUF's ne[])
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

struct GgufContents {
  uint32_t version = 0;
  std::map<std::string, std::string> strings;  // string-valued metadata
  std::map<std::string, uint64_t> uints;       // unsigned/boolean-valued metadata (widened)
  std::map<std::string, GgufTensor> tensors;
  // A string metadata value, or Error(model_format) naming the key when it is absent.
  const std::string& string(const std::string& key, const std::string& where) const;
};

// Parses bytes[0, size) as a GGUF file. Tensors point into `bytes`.
GgufContents parse_gguf(const uint8_t* bytes, size_t size, const std::string& where);

// One mmapped GGUF file.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // Error(io) / Error(model_format)
  const GgufContents& contents() const { return contents_; }
  const std::string& path() const { return map_->path(); }

 private:
  std::unique_ptr<util::MappedFile> map_;
  GgufContents contents_;
};

// What write_gguf() stores: metadata in the order given, tensors in the order given.
struct GgufTensorOut {
  std::string name;
  ops::DType dtype;
  std::vector<size_t> shape;  // row-major
  const void* data;           // nbytes of the row-major data in dtype's layout
};
struct GgufWriteSpec {
  std::vector<std::pair<std::string, std::string>> strings;
  std::vector<std::pair<std::string, uint32_t>> uints;
  std::vector<GgufTensorOut> tensors;
};
// Writes `spec` to `path` (via path + ".tmp", renamed at the end, so a failed write leaves no
// half file under the final name). Throws Error(io).
void write_gguf(const std::string& path, const GgufWriteSpec& spec);

// ggml type id of a DType; elements and bytes of a tensor of that type and row-major shape.
uint32_t ggml_type_id(ops::DType t);
size_t tensor_numel(const std::vector<size_t>& shape);
size_t tensor_bytes(ops::DType t, const std::vector<size_t>& shape);

// The HF tokenizer.json text stored in a GGUF file (llama.cpp's key for it), for the pipeline's
// tokenizer; Error(model_format) when absent.
inline constexpr const char* kGgufTokenizerKey = "tokenizer.huggingface.json";
std::string gguf_tokenizer_json(const std::string& path);

}  // namespace stepaudio::model
