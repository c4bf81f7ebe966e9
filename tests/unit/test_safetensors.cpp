// safetensors parsing from memory: valid files parse, malformed ones throw Error(model_format).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"
#include "stepaudio/error.h"

using stepaudio::Errc;
using stepaudio::Error;
using stepaudio::model::parse_safetensors;

namespace {
std::vector<uint8_t> file(const std::string& header, size_t data_bytes,
                          uint64_t declared = UINT64_MAX) {
  std::string h = header;
  while (h.size() % 8) h += ' ';
  uint64_t n = declared == UINT64_MAX ? h.size() : declared;
  std::vector<uint8_t> f(8 + h.size() + data_bytes, 0);
  for (int i = 0; i < 8; ++i) f[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(f.data() + 8, h.data(), h.size());
  return f;
}
Errc code_of(const std::vector<uint8_t>& f) {
  try {
    parse_safetensors(f.data(), f.size(), "t");
  } catch (const Error& e) {
    return e.code();
  }
  return Errc::internal;  // "did not throw"
}
}  // namespace

TEST(Safetensors, ParsesValidFile) {
  auto f = file(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
      16);
  auto t = parse_safetensors(f.data(), f.size(), "t");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t["a"].numel(), 6u);
  EXPECT_EQ(t["a"].dtype, stepaudio::ops::DType::bf16);
  EXPECT_EQ(t["b"].nbytes, 4u);
}

TEST(Safetensors, RejectsMalformed) {
  EXPECT_EQ(code_of({1, 2, 3}), Errc::model_format);                  // too short
  EXPECT_EQ(code_of(file("{}", 0, 1ull << 40)), Errc::model_format);  // huge header
  EXPECT_EQ(code_of(file("{}", 0, 1000)), Errc::model_format);        // past end
  EXPECT_EQ(code_of(file("[1,2]", 0)), Errc::model_format);           // not an object
  EXPECT_EQ(code_of(file("{\"a\":", 0)), Errc::model_format);         // bad JSON
  EXPECT_EQ(code_of(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)),
            Errc::model_format);
  EXPECT_EQ(code_of(file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
            Errc::model_format);
  EXPECT_EQ(code_of(file(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8)),
            Errc::model_format);
  EXPECT_EQ(code_of(file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
            Errc::model_format);
  EXPECT_EQ(code_of(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8)),
            Errc::model_format);
  EXPECT_EQ(
      code_of(
          file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
      Errc::model_format);  // overflow
  EXPECT_EQ(code_of(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 8)),
            Errc::model_format);
  EXPECT_EQ(code_of(file(R"({"a":{"dtype":"F32","shape":[1]}})", 4)), Errc::model_format);
}

TEST(Config, MissingKeyIsNamed) {
  const std::string good =
      R"({"text_config":{"hidden_size":8,"intermediate_size":16,"num_attention_heads":2,
    "num_key_value_heads":1,"num_hidden_layers":1,"vocab_size":10,"max_position_embeddings":32,
    "rms_norm_eps":1e-6,"rope_theta":10000},"audio_encoder_config":{"n_mels":128,"n_audio_ctx":1500,
    "n_audio_state":8,"n_audio_head":2,"n_audio_layer":1,"llm_dim":8,"kernel_size":3,"adapter_stride":2}})";
  auto c = stepaudio::model::parse_config(good, "config.json");
  EXPECT_EQ(c.text.head_dim, 4u);
  std::string bad = good;
  bad.replace(bad.find("\"n_audio_head\":2,"), std::strlen("\"n_audio_head\":2,"), "");
  try {
    stepaudio::model::parse_config(bad, "config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::model_format);
    EXPECT_NE(std::string(e.what()).find("audio_encoder_config.n_audio_head"), std::string::npos);
  }
}
