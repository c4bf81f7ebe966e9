// The GGUF container (model/gguf.h): write -> parse round trip, and every malformed-file class the
// loader must refuse with a clear Error(model_format) instead of reading out of bounds.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "ops/quant.h"
#include "stepaudio/error.h"
#include "stepaudio/model.h"
#include "stepaudio/quantize.h"

namespace stepaudio::model {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  std::vector<float> vec = {1.f, 2.f, 3.f};                          // [3]
  std::vector<uint16_t> mat = std::vector<uint16_t>(2 * 5, 0x3f80);  // bf16 [2][5], all 1.0
  std::vector<ops::BlockQ8_0> q8 = std::vector<ops::BlockQ8_0>(4);   // Q8_0 [2][64]
};

std::vector<uint8_t> write_and_read(const GgufWriteSpec& spec) {
  const fs::path p =
      fs::temp_directory_path() / ("sa_gguf_" + std::to_string(::getpid()) + ".gguf");
  write_gguf(p.string(), spec);
  std::ifstream f(p, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  fs::remove(p);
  return bytes;
}

GgufWriteSpec spec_of(const Fixture& fx) {
  GgufWriteSpec s;
  s.strings = {{"general.architecture", "step-audio-2"}, {"text", "h\xc3\xa9llo"}};
  s.uints = {{"general.alignment", 32}};
  s.tensors = {{"v", ops::DType::f32, {3}, fx.vec.data()},
               {"m", ops::DType::bf16, {2, 5}, fx.mat.data()},
               {"q", ops::DType::q8_0, {2, 64}, fx.q8.data()}};
  return s;
}

// Offset of the first byte of `needle` in `bytes` (the test finds header fields by their names).
size_t find(const std::vector<uint8_t>& bytes, const std::string& needle) {
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  EXPECT_NE(it, bytes.end()) << needle;
  return size_t(it - bytes.begin());
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& substr) {
  try {
    parse_gguf(bytes.data(), bytes.size(), "f.gguf");
    ADD_FAILURE() << "accepted a file that should fail with '" << substr << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::model_format);
    EXPECT_NE(std::string(e.what()).find(substr), std::string::npos) << e.what();
  }
}

TEST(Gguf, RoundTrip) {
  Fixture fx;
  for (size_t i = 0; i < fx.q8.size(); ++i) fx.q8[i].qs[i] = int8_t(i + 1);
  const auto bytes = write_and_read(spec_of(fx));
  const GgufContents g = parse_gguf(bytes.data(), bytes.size(), "f.gguf");
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.string("general.architecture", "f"), "step-audio-2");
  EXPECT_EQ(g.string("text", "f"), "h\xc3\xa9llo");
  EXPECT_EQ(g.uints.at("general.alignment"), 32u);
  ASSERT_EQ(g.tensors.size(), 3u);
  const auto& q = g.tensors.at("q");
  EXPECT_EQ(q.dtype, ops::DType::q8_0);
  EXPECT_EQ(q.shape, (std::vector<size_t>{2, 64}));  // row-major, as written
  EXPECT_EQ(q.nbytes, 4 * sizeof(ops::BlockQ8_0));
  EXPECT_EQ(std::memcmp(q.data, fx.q8.data(), q.nbytes), 0);
  const auto& m = g.tensors.at("m");
  EXPECT_EQ(m.shape, (std::vector<size_t>{2, 5}));
  EXPECT_EQ(std::memcmp(m.data, fx.mat.data(), m.nbytes), 0);
  for (const auto& [name, t] : g.tensors)
    EXPECT_EQ(size_t(t.data - bytes.data()) % kGgufAlignment, 0u) << name;
  // GGUF order on disk: ne[0] (= columns) first. The "m" entry is name, n_dims=2, ne0=5, ne1=2.
  const size_t at = find(bytes, std::string("\x01\0\0\0\0\0\0\0m", 9)) + 9;
  uint64_t ne0, ne1;
  std::memcpy(&ne0, &bytes[at + 4], 8);
  std::memcpy(&ne1, &bytes[at + 12], 8);
  EXPECT_EQ(ne0, 5u);
  EXPECT_EQ(ne1, 2u);
}

TEST(Gguf, MalformedFilesGiveClearErrors) {
  Fixture fx;
  const auto good = write_and_read(spec_of(fx));
  expect_error({}, "not a GGUF file");
  {
    auto b = good;
    b[0] = 'X';
    expect_error(b, "not a GGUF file");
  }
  {
    auto b = good;
    b[4] = 2;  // version 2
    expect_error(b, "version 2 is not supported");
  }
  // Truncated anywhere: inside the header, or inside the data.
  for (size_t n : {size_t(6), size_t(30), size_t(100), good.size() - 40}) {  // 40: past the padding
    std::vector<uint8_t> b(good.begin(), good.begin() + n);
    try {
      parse_gguf(b.data(), b.size(), "f.gguf");
      ADD_FAILURE() << "accepted a file truncated to " << n << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::model_format) << e.what();
      const std::string w = e.what();
      EXPECT_TRUE(w.find("truncated") != std::string::npos ||
                  w.find("past the end") != std::string::npos ||
                  w.find("is corrupt") != std::string::npos)
          << w;
    }
  }
  {
    auto b = good;  // tensor count far beyond what the file can hold
    const uint64_t huge = uint64_t(1) << 60;
    std::memcpy(&b[8], &huge, 8);
    expect_error(b, "tensor count");
  }
  // Fields of tensor "q" (the last one): name, n_dims, ne[0], ne[1], type, offset.
  const size_t q = find(good, std::string("\x01\0\0\0\0\0\0\0q", 9)) + 9;
  {
    auto b = good;
    const uint32_t t = 3;  // Q4_1: not a type we read
    std::memcpy(&b[q + 4 + 16], &t, 4);
    expect_error(b, "ggml type 3");
  }
  {
    auto b = good;
    const uint64_t off = uint64_t(1) << 20;  // aligned, far outside the data
    std::memcpy(&b[q + 4 + 16 + 4], &off, 8);
    expect_error(b, "outside the data area");
  }
  {
    auto b = good;
    const uint64_t off = 33;
    std::memcpy(&b[q + 4 + 16 + 4], &off, 8);
    expect_error(b, "not a multiple of 32");
  }
  {
    auto b = good;
    const uint64_t ne0 = 48;  // Q8_0 rows must be whole blocks
    std::memcpy(&b[q + 4], &ne0, 8);
    expect_error(b, "not a multiple of 32");
  }
  {
    auto b = good;
    const uint32_t nd = 7;
    std::memcpy(&b[q], &nd, 4);
    expect_error(b, "7 dimensions");
  }
  {
    auto b = good;
    const uint64_t ne0 = 0;
    std::memcpy(&b[q + 4], &ne0, 8);
    expect_error(b, "invalid dimension");
  }
  {
    auto b = good;  // a string length pointing past the end of the file
    const size_t k = find(good, "text") - 8;
    const uint64_t len = uint64_t(1) << 40;
    std::memcpy(&b[k], &len, 8);
    expect_error(b, "past the end");
  }
}

// A .gguf path goes to the GGUF loader: a missing file is Error(io), a non-GGUF file a format
// error.
TEST(Gguf, LoadModelRefusesBadFiles) {
  EXPECT_THROW(load_model("/nonexistent/x.gguf"), Error);
  const fs::path p = fs::temp_directory_path() / ("sa_bad_" + std::to_string(::getpid()) + ".gguf");
  std::ofstream(p) << "not a model";
  try {
    load_model(p.string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::model_format);
  }
  // A valid container that is not ours: the architecture is checked before anything else.
  Fixture fx;
  GgufWriteSpec s = spec_of(fx);
  s.strings[0].second = "llama";
  write_gguf(p.string(), s);
  try {
    load_model(p.string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'llama', expected 'step-audio-2'"), std::string::npos)
        << e.what();
  }
  fs::remove(p);
}

}  // namespace
}  // namespace stepaudio::model

namespace stepaudio {
namespace {
// A model written to GGUF and loaded back computes exactly what the in-memory model computes.
TEST(Gguf, SyntheticModelRoundTripIsBitIdentical) {
  const auto p =
      std::filesystem::temp_directory_path() / ("sa_syn_" + std::to_string(::getpid()) + ".gguf");
  for (Quant q : {Quant::q4, Quant::bf16}) {
    quantize_synthetic_model("tiny", p.string(), q);
    auto a = make_synthetic_model("tiny", 0, q);
    auto b = load_model(p.string());
    EXPECT_EQ(model_info(*b).quant, q);
    EXPECT_EQ(model_info(*b).eos_id, model_info(*a).eos_id);
    EXPECT_EQ(model_info(*b).audio_patch_id, model_info(*a).audio_patch_id);
    GenerateRequest req;
    req.prompt_ids = {1, 2, 3, 4, 5, 6, 7, 8};
    req.max_new_tokens = 8;
    req.threads = 2;
    const GenerateResult ra = generate(*a, req), rb = generate(*b, req);
    EXPECT_EQ(ra.tokens, rb.tokens);
    EXPECT_EQ(ra.logprobs, rb.logprobs);  // bit-identical floats
  }
  std::filesystem::remove(p);
}
}  // namespace
}  // namespace stepaudio
