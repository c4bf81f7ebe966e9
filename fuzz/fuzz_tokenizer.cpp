// libFuzzer: arbitrary bytes through encode (with and without added tokens), decode and the stream
// decoder. Invalid UTF-8 must throw Error(invalid_argument); valid text must round-trip to NFC.
// The tokenizer is a tiny in-memory byte-level one, or the file named by STEPAUDIO_FUZZ_TOKENIZER.
//   CC=clang CXX=clang++ cmake -B build-fuzz -DSTEPAUDIO_FUZZ=ON && ninja -C build-fuzz
//   fuzz_tokenizer STEPAUDIO_FUZZ_TOKENIZER=/tmp/tokenizer.json build-fuzz/bin/fuzz_tokenizer
//   -max_total_time=60
#include <cstdint>
#include <cstdlib>
#include <string>

#include "stepaudio/error.h"
#include "stepaudio/tokenizer.h"
#include "text/bpe.h"
#include "text/utf8.h"

using namespace stepaudio;

namespace {

std::string tiny_json() {
  std::string vocab, sep;
  const auto& alphabet = text::byte_level_alphabet();
  auto quoted = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  };
  for (int b = 0; b < 256; ++b)
    vocab += sep + quoted(alphabet[b]) + ":" + std::to_string(b), sep = ",";
  vocab += ",\"he\":256,\"ll\":257,\"hell\":258,\"Ġw\":259";
  return R"({"added_tokens":[{"id":300,"content":"<|BOT|>","special":true},)"
         R"({"id":301,"content":"<|EOT|>","special":true},{"id":302,"content":"<audio_start>","special":true},)"
         R"({"id":303,"content":"<audio_patch>","special":false}],)"
         R"("normalizer":{"type":"NFC"},"pre_tokenizer":{"type":"Sequence","pretokenizers":[)"
         R"({"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},)"
         R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},"decoder":{"type":"ByteLevel"},)"
         R"("model":{"type":"BPE","vocab":{)" +
         vocab + R"(},"merges":["h e","l l","he ll","Ġ w"]}})";
}

const text::Tokenizer& tokenizer() {
  static const auto tok = [] {
    if (const char* path = std::getenv("STEPAUDIO_FUZZ_TOKENIZER"))
      return text::Tokenizer::load(path);
    return text::Tokenizer::from_json(tiny_json(), "fuzz-tiny");
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& tok = tokenizer();
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  const bool valid = !text::first_invalid_utf8(s);
  for (bool special : {false, true}) {
    try {
      const auto ids = tok.encode(s, special);
      if (!valid) std::abort();  // invalid UTF-8 must have been rejected
      if (tok.decode(ids) != text::nfc(s)) std::abort();
      text::StreamDecoder dec(tok);
      std::string streamed;
      for (int32_t id : ids) streamed += dec.push(id);
      if (streamed + dec.finish() != text::nfc(s)) std::abort();
    } catch (const Error& e) {
      if (valid || e.code() != Errc::invalid_argument) std::abort();
    }
  }
  // Arbitrary ids (pairs of input bytes) through decode: valid UTF-8 out, or an unknown-id error.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) ids.push_back(data[i] | (data[i + 1] << 8));
  try {
    const std::string out = tok.decode(ids);
    if (text::first_invalid_utf8(out)) std::abort();
  } catch (const Error& e) {
    if (e.code() != Errc::invalid_argument) std::abort();
  }
  return 0;
}
