#include "model/safetensors.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "stepaudio/error.h"

namespace stepaudio::model {

namespace {
constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit (100 MB)

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(Errc::model_format, where + ": " + what);
}
}  // namespace

size_t TensorInfo::numel() const {
  size_t n = 1;
  for (size_t d : shape) n *= d;
  return n;
}

std::map<std::string, TensorInfo> parse_safetensors(const uint8_t* bytes, size_t size,
                                                    const std::string& where) {
  if (size < 8)
    fail(where, "file too short for a safetensors header (" + std::to_string(size) + " bytes)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeader)
    fail(where, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    fail(where, "header length " + std::to_string(n) + " runs past the end of the file (" +
                    std::to_string(size) + " bytes): truncated file?");
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(bytes + 8, bytes + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!h.is_object()) fail(where, "header is not a JSON object");
  const uint8_t* base = bytes + 8 + n;
  const size_t data_size = size - 8 - n;
  std::map<std::string, TensorInfo> out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const auto& t = it.value();
    const std::string tw = where + ": tensor '" + name + "'";
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") ||
        !t.contains("data_offsets"))
      throw Error(Errc::model_format,
                  tw + ": expected an object with dtype, shape and data_offsets");
    TensorInfo ti;
    if (!t["dtype"].is_string()) throw Error(Errc::model_format, tw + ": dtype is not a string");
    const std::string dt = t["dtype"].get<std::string>();
    if (dt == "F32")
      ti.dtype = ops::DType::f32;
    else if (dt == "BF16")
      ti.dtype = ops::DType::bf16;
    else if (dt == "F16")
      ti.dtype = ops::DType::f16;
    else
      throw Error(Errc::model_format,
                  tw + ": unsupported dtype '" + dt + "' (expected F32, BF16 or F16)");
    if (!t["shape"].is_array()) throw Error(Errc::model_format, tw + ": shape is not an array");
    size_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned())
        throw Error(Errc::model_format, tw + ": shape has a non-integer entry");
      uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > std::numeric_limits<size_t>::max() / 8 / v)
        throw Error(Errc::model_format, tw + ": shape overflows");
      numel *= v;
      ti.shape.push_back(static_cast<size_t>(v));
    }
    const auto& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw Error(Errc::model_format, tw + ": data_offsets must be two non-negative integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      throw Error(Errc::model_format, tw + ": data_offsets [" + std::to_string(b) + ", " +
                                          std::to_string(e) + "] outside the data area of " +
                                          std::to_string(data_size) + " bytes");
    ti.nbytes = static_cast<size_t>(e - b);
    if (ti.nbytes != numel * ops::dtype_size(ti.dtype))
      throw Error(Errc::model_format, tw + ": " + std::to_string(ti.nbytes) + " bytes for " +
                                          std::to_string(numel) + " elements of " + dt);
    ti.data = base + b;
    // Writers pad the header to 8 bytes, but do not trust it: reading a misaligned tensor in place
    // would be undefined behaviour, so such files are refused.
    if (reinterpret_cast<uintptr_t>(ti.data) % ops::dtype_size(ti.dtype) != 0)
      throw Error(Errc::model_format, tw + ": data is not aligned to its element size");
    out.emplace(name, std::move(ti));
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : map_(std::make_unique<util::MappedFile>(path)) {
  tensors_ = parse_safetensors(map_->data(), map_->size(), path);
}

}  // namespace stepaudio::model
