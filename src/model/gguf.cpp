#include "model/gguf.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include "ops/quant.h"
#include "stepaudio/error.h"

namespace stepaudio::model {

namespace {

// GGUF metadata value types (ggml/include/gguf.h, enum gguf_type).
enum : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
constexpr size_t kMaxDims = 4;  // GGML_MAX_DIMS

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(Errc::model_format, where + ": " + what);
}

bool ggml_to_dtype(uint32_t id, ops::DType& t) {
  switch (id) {
    case 0:
      t = ops::DType::f32;
      return true;
    case 1:
      t = ops::DType::f16;
      return true;
    case 2:
      t = ops::DType::q4_0;
      return true;
    case 8:
      t = ops::DType::q8_0;
      return true;
    case 30:
      t = ops::DType::bf16;
      return true;
  }
  return false;
}

// Bounds-checked little-endian cursor over the header; every read names what it was reading.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& where) : p_(p), n_(n), where_(where) {}

  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

  const uint8_t* take(size_t bytes, const char* what) {
    if (bytes > left())
      fail(where_, std::string("file truncated while reading ") + what + " at byte " +
                       std::to_string(pos_) + " (needs " + std::to_string(bytes) + ", " +
                       std::to_string(left()) + " left)");
    const uint8_t* r = p_ + pos_;
    pos_ += bytes;
    return r;
  }
  template <class T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));  // GGUF is little-endian, as x86/ARM
    return v;
  }
  std::string str(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    if (n > left())
      fail(where_, std::string(what) + " of length " + std::to_string(n) + " runs past the end");
    const uint8_t* s = take(n, what);
    return std::string(reinterpret_cast<const char*>(s), n);
  }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
  const std::string& where_;
};

size_t scalar_size(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
  }
  return 0;
}

// Reads one metadata value of `type`; keeps strings and unsigned integers, skips the rest.
void read_value(Cursor& c, uint32_t type, const std::string& key, GgufContents& out,
                const std::string& where) {
  if (type == kString) {
    out.strings[key] = c.str("a string value");
  } else if (type == kArray) {
    const uint32_t et = c.get<uint32_t>("an array type");
    const uint64_t n = c.get<uint64_t>("an array length");
    if (et == kString) {
      for (uint64_t i = 0; i < n; ++i) c.str("an array string");  // each bounds-checked
    } else if (size_t es = scalar_size(et)) {
      if (n > c.left() / es)
        fail(where, "metadata '" + key + "': array of " + std::to_string(n) +
                        " elements runs past the end");
      c.take(n * es, "an array");
    } else {  // nested arrays are legal GGUF but nothing writes them; refusing bounds recursion
      fail(where, "metadata '" + key + "': unsupported array element type " + std::to_string(et));
    }
  } else if (size_t sz = scalar_size(type)) {
    const uint8_t* v = c.take(sz, "a metadata value");
    if (type == kU8 || type == kBool || type == kU16 || type == kU32 || type == kU64) {
      uint64_t u = 0;
      std::memcpy(&u, v, sz);
      out.uints[key] = u;
    }
  } else {
    fail(where, "metadata '" + key + "': unknown value type " + std::to_string(type));
  }
}

}  // namespace

uint32_t ggml_type_id(ops::DType t) {
  switch (t) {
    case ops::DType::f32:
      return 0;
    case ops::DType::f16:
      return 1;
    case ops::DType::q4_0:
      return 2;
    case ops::DType::q8_0:
      return 8;
    case ops::DType::bf16:
      return 30;
  }
  return 0;
}

size_t tensor_numel(const std::vector<size_t>& shape) {
  size_t n = 1;
  for (size_t d : shape) n *= d;
  return n;
}

size_t tensor_bytes(ops::DType t, const std::vector<size_t>& shape) {
  const size_t n = tensor_numel(shape);
  if (!ops::is_block_type(t)) return n * ops::dtype_size(t);
  return n / ops::kQBlock *
         (t == ops::DType::q8_0 ? sizeof(ops::BlockQ8_0) : sizeof(ops::BlockQ4_0));
}

const std::string& GgufContents::string(const std::string& key, const std::string& where) const {
  auto it = strings.find(key);
  if (it == strings.end()) fail(where, "missing string metadata '" + key + "'");
  return it->second;
}

GgufContents parse_gguf(const uint8_t* bytes, size_t size, const std::string& where) {
  Cursor c(bytes, size, where);
  GgufContents out;
  if (size < 4 || std::memcmp(bytes, "GGUF", 4) != 0)
    fail(where, "not a GGUF file (the first 4 bytes are not \"GGUF\")");
  c.take(4, "the magic");
  out.version = c.get<uint32_t>("the version");
  if (out.version != kGgufVersion)
    fail(where, "GGUF version " + std::to_string(out.version) + " is not supported (expected 3)");
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  // Each entry takes at least 12 (kv: key length + type) or 24 bytes (tensor: name length, n_dims,
  // type, offset): counts beyond what the file can hold are corrupt, refused before any loop.
  if (n_kv > c.left() / 12)
    fail(where, "metadata count " + std::to_string(n_kv) + " is corrupt (or the file truncated)");
  if (n_tensors > c.left() / 24)
    fail(where,
         "tensor count " + std::to_string(n_tensors) + " is corrupt (or the file truncated)");

  std::set<std::string> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str("a metadata key");
    if (!keys.insert(key).second) fail(where, "duplicate metadata key '" + key + "'");
    const uint32_t type = c.get<uint32_t>("a metadata type");
    read_value(c, type, key, out, where);
  }
  size_t align = kGgufAlignment;
  if (keys.count("general.alignment")) {
    auto it = out.uints.find("general.alignment");
    if (it == out.uints.end() || it->second == 0 || (it->second & (it->second - 1)) != 0 ||
        it->second > 4096)
      fail(where, "general.alignment must be an unsigned power of two <= 4096");
    align = it->second;
  }

  struct Pending {
    std::string name;
    GgufTensor t;
    uint64_t offset;
  };
  std::vector<Pending> pending;
  pending.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Pending p;
    p.name = c.str("a tensor name");
    const std::string what = "tensor '" + p.name + "'";
    const uint32_t n_dims = c.get<uint32_t>("a tensor's dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail(where, what + " has " + std::to_string(n_dims) + " dimensions (1..4 allowed)");
    std::vector<size_t> ne(n_dims);
    size_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t v = c.get<uint64_t>("a tensor dimension");
      if (v == 0 || v > (uint64_t(1) << 40) || numel > std::numeric_limits<size_t>::max() / v)
        fail(where, what + " has an invalid dimension " + std::to_string(v));
      ne[d] = v;
      numel *= v;
    }
    const uint32_t type = c.get<uint32_t>("a tensor type");
    if (!ggml_to_dtype(type, p.t.dtype))
      fail(where, what + " has ggml type " + std::to_string(type) +
                      ", not one of F32 (0), F16 (1), Q4_0 (2), Q8_0 (8), BF16 (30)");
    if (ops::is_block_type(p.t.dtype) && ne[0] % ops::kQBlock != 0)
      fail(where, what + " is " + ops::dtype_name(p.t.dtype) + " but its row length " +
                      std::to_string(ne[0]) + " is not a multiple of 32");
    if (numel > std::numeric_limits<size_t>::max() / 4) fail(where, what + " is too large");
    p.t.shape.assign(ne.rbegin(), ne.rend());
    p.t.nbytes = tensor_bytes(p.t.dtype, p.t.shape);
    p.offset = c.get<uint64_t>("a tensor offset");
    if (p.offset % align != 0)
      fail(where, what + " has offset " + std::to_string(p.offset) + ", not a multiple of " +
                      std::to_string(align));
    pending.push_back(std::move(p));
  }
  const size_t data_start = (c.pos() + align - 1) / align * align;
  if (data_start > size) fail(where, "file truncated before the tensor data");
  const size_t data_size = size - data_start;
  for (auto& p : pending) {
    if (p.offset > data_size || p.t.nbytes > data_size - p.offset)
      fail(where, "tensor '" + p.name + "' (" + std::to_string(p.t.nbytes) + " bytes at offset " +
                      std::to_string(p.offset) + ") lies outside the data area of " +
                      std::to_string(data_size) + " bytes (file truncated?)");
    p.t.data = bytes + data_start + p.offset;
    if (!out.tensors.emplace(p.name, std::move(p.t)).second)
      fail(where, "duplicate tensor name '" + p.name + "'");
  }
  return out;
}

GgufFile::GgufFile(const std::string& path)
    : map_(std::make_unique<util::MappedFile>(path)),
      contents_(parse_gguf(map_->data(), map_->size(), path)) {}

std::string gguf_tokenizer_json(const std::string& path) {
  GgufFile f(path);
  return f.contents().string(kGgufTokenizerKey, path);
}

namespace {
// Buffered writer that turns any short write into Error(io).
class Out {
 public:
  explicit Out(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) throw Error(Errc::io, "cannot create '" + path + "'");
  }
  ~Out() {
    if (f_) std::fclose(f_);
  }
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;
  void bytes(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) throw Error(Errc::io, "cannot write '" + path_ + "'");
    pos_ += n;
  }
  template <class T>
  void put(T v) {
    bytes(&v, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad(size_t align) {
    static const char zeros[4096] = {};
    bytes(zeros, (align - pos_ % align) % align);
  }
  void close() {
    const bool ok = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!ok) throw Error(Errc::io, "cannot write '" + path_ + "'");
  }

 private:
  std::string path_;
  std::FILE* f_;
  size_t pos_ = 0;
};
}  // namespace

void write_gguf(const std::string& path, const GgufWriteSpec& spec) {
  const std::string tmp = path + ".tmp";
  {
    Out o(tmp);
    o.bytes("GGUF", 4);
    o.put<uint32_t>(kGgufVersion);
    o.put<uint64_t>(spec.tensors.size());
    o.put<uint64_t>(spec.strings.size() + spec.uints.size());
    for (const auto& [k, v] : spec.strings) {
      o.str(k);
      o.put<uint32_t>(kString);
      o.str(v);
    }
    for (const auto& [k, v] : spec.uints) {
      o.str(k);
      o.put<uint32_t>(kU32);
      o.put<uint32_t>(v);
    }
    uint64_t offset = 0;
    for (const auto& t : spec.tensors) {
      o.str(t.name);
      o.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
      for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) o.put<uint64_t>(*it);
      o.put<uint32_t>(ggml_type_id(t.dtype));
      o.put<uint64_t>(offset);
      offset +=
          (tensor_bytes(t.dtype, t.shape) + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment;
    }
    o.pad(kGgufAlignment);
    for (const auto& t : spec.tensors) {
      o.bytes(t.data, tensor_bytes(t.dtype, t.shape));
      o.pad(kGgufAlignment);
    }
    o.close();
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error(Errc::io, "cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
}

}  // namespace stepaudio::model
