// Streaming reader for the two big parts of a tokenizer file: the vocab object (token -> id) and
// the merges array. A full nlohmann DOM of an 11 MB tokenizer.json costs ~0.25 s to build and as
// much to copy and free, so these two are consumed straight into their final containers while
// every other part is built as a (small) DOM, where `vocab`/`merges` are left as null.
// Thread-safety: one handler per parse.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "text/bpe.h"

namespace stepaudio::text {

class VocabSaxHandler {
 public:
  using json = nlohmann::json;
  // vocab_at_root: the whole document is the vocab (vocab.json); otherwise model.vocab and
  // model.merges of a tokenizer.json are streamed.
  VocabSaxHandler(json& dom, bool vocab_at_root) : dom_(dom), vocab_at_root_(vocab_at_root) {}

  TokenMap vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool saw_vocab = false, saw_merges = false;
  std::string error;  // set when a streamed part is malformed (the parse then stops)

  bool null();
  bool boolean(bool v);
  bool number_integer(json::number_integer_t v);
  bool number_unsigned(json::number_unsigned_t v);
  bool number_float(json::number_float_t v, const json::string_t& s);
  bool string(json::string_t& s);
  bool binary(json::binary_t& b);
  bool start_object(std::size_t n);
  bool key(json::string_t& k);
  bool end_object();
  bool start_array(std::size_t n);
  bool end_array();
  bool parse_error(std::size_t pos, const std::string& token, const nlohmann::detail::exception& e);

 private:
  enum class Mode { dom, vocab, merges, merge_pair };
  struct Frame {
    bool object;
    std::string key;
  };
  bool at(const char* k1, const char* k2) const;
  bool fail(std::string msg);
  bool vocab_value(int64_t id);

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  bool vocab_at_root_;
  Mode mode_ = Mode::dom;
  std::vector<Frame> frames_;  // containers open in dom mode
  std::string pending_key_;
  std::vector<std::string> pair_;
};

}  // namespace stepaudio::text
