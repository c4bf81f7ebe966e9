#include "text/json_sax_vocab.h"

namespace stepaudio::text {

namespace {
constexpr int64_t kMaxTokenId = (1 << 24) - 1;  // same bound as tokenizer_files.cpp
}

bool VocabSaxHandler::fail(std::string msg) {
  if (error.empty()) error = std::move(msg);
  return false;
}

// True when the container about to open sits at key path k1.k2 (tokenizer.json) or, for
// vocab_at_root, is the root.
bool VocabSaxHandler::at(const char* k1, const char* k2) const {
  return frames_.size() == 2 && frames_[0].object && frames_[1].object && frames_[0].key == k1 &&
         frames_[1].key == k2;
}

bool VocabSaxHandler::vocab_value(int64_t id) {
  if (mode_ != Mode::vocab) return false;
  if (id < 0 || id > kMaxTokenId)
    return fail("vocab token \"" + pending_key_ + "\" has an out-of-range id " +
                std::to_string(id));
  auto [it, inserted] = vocab.emplace(std::move(pending_key_), static_cast<int32_t>(id));
  if (!inserted && it->second != id)
    return fail("vocab token \"" + it->first + "\" appears twice with different ids");
  return true;
}

bool VocabSaxHandler::null() {
  if (mode_ == Mode::dom) return dom_.null();
  return fail(mode_ == Mode::vocab ? "vocab token \"" + pending_key_ + "\" has a non-integer id"
                                   : "a merge is neither \"a b\" nor [\"a\", \"b\"]");
}
bool VocabSaxHandler::boolean(bool v) {
  if (mode_ == Mode::dom) return dom_.boolean(v);
  return null();
}
bool VocabSaxHandler::number_integer(json::number_integer_t v) {
  if (mode_ == Mode::dom) return dom_.number_integer(v);
  if (mode_ == Mode::vocab) return vocab_value(v);
  return null();
}
bool VocabSaxHandler::number_unsigned(json::number_unsigned_t v) {
  if (mode_ == Mode::dom) return dom_.number_unsigned(v);
  if (mode_ == Mode::vocab)
    return vocab_value(v > static_cast<json::number_unsigned_t>(kMaxTokenId)
                           ? kMaxTokenId + 1
                           : static_cast<int64_t>(v));
  return null();
}
bool VocabSaxHandler::number_float(json::number_float_t v, const json::string_t& s) {
  if (mode_ == Mode::dom) return dom_.number_float(v, s);
  return null();
}
bool VocabSaxHandler::binary(json::binary_t& b) {
  if (mode_ == Mode::dom) return dom_.binary(b);
  return null();
}

bool VocabSaxHandler::string(json::string_t& s) {
  switch (mode_) {
    case Mode::dom:
      return dom_.string(s);
    case Mode::merges: {
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() ||
          s.find(' ', sp + 1) != std::string::npos)
        return fail("merge " + std::to_string(merges.size()) + " \"" + s +
                    "\" is not two tokens separated by one space");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    case Mode::merge_pair:
      if (pair_.size() >= 2)
        return fail("merge " + std::to_string(merges.size()) + " has more than two parts");
      pair_.push_back(std::move(s));
      return true;
    case Mode::vocab:
      return null();
  }
  return false;
}

bool VocabSaxHandler::start_object(std::size_t n) {
  if (mode_ != Mode::dom) return null();
  if (vocab_at_root_ ? frames_.empty() : at("model", "vocab")) {
    if (!vocab_at_root_ && !dom_.null()) return false;  // placeholder for the streamed value
    mode_ = Mode::vocab;
    saw_vocab = true;
    vocab.reserve(1 << 18);  // SAX gives no size; Qwen2 has 151k entries, so skip the rehashes
    return true;
  }
  frames_.push_back({true, {}});
  return dom_.start_object(n);
}

bool VocabSaxHandler::key(json::string_t& k) {
  if (mode_ == Mode::vocab) {
    pending_key_ = std::move(k);
    return true;
  }
  if (mode_ != Mode::dom) return null();
  if (!frames_.empty()) frames_.back().key = k;
  return dom_.key(k);
}

bool VocabSaxHandler::end_object() {
  if (mode_ == Mode::vocab) {
    mode_ = Mode::dom;
    if (vocab_at_root_) return dom_.null();  // the DOM result is just null
    return true;
  }
  if (mode_ != Mode::dom) return null();
  frames_.pop_back();
  return dom_.end_object();
}

bool VocabSaxHandler::start_array(std::size_t n) {
  if (mode_ == Mode::merges) {
    mode_ = Mode::merge_pair;
    pair_.clear();
    return true;
  }
  if (mode_ != Mode::dom) return null();
  if (!vocab_at_root_ && at("model", "merges")) {
    if (!dom_.null()) return false;
    mode_ = Mode::merges;
    saw_merges = true;
    merges.reserve(n == std::size_t(-1) ? 0 : n);
    return true;
  }
  frames_.push_back({false, {}});
  return dom_.start_array(n);
}

bool VocabSaxHandler::end_array() {
  if (mode_ == Mode::merge_pair) {
    if (pair_.size() != 2)
      return fail("merge " + std::to_string(merges.size()) +
                  " is neither \"a b\" nor [\"a\", \"b\"]");
    merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
    mode_ = Mode::merges;
    return true;
  }
  if (mode_ == Mode::merges) {
    mode_ = Mode::dom;
    return true;
  }
  if (mode_ != Mode::dom) return null();
  frames_.pop_back();
  return dom_.end_array();
}

bool VocabSaxHandler::parse_error(std::size_t pos, const std::string& token,
                                  const nlohmann::detail::exception& e) {
  return fail(std::string("malformed JSON: ") + e.what());
}

}  // namespace stepaudio::text
