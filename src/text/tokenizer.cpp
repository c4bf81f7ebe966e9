// Tokenizer: builds the lookup tables from a TokenizerSpec and runs the encode pipeline
// (added-token split -> NFC -> regex split -> byte-level BPE) and byte-level decoding.
#include "stepaudio/tokenizer.h"

#include <algorithm>

#include "stepaudio/error.h"
#include "text/added_tokens.h"
#include "text/bpe.h"
#include "text/pretokenizer.h"
#include "text/tokenizer_files.h"
#include "text/utf8.h"
#include "text/word_cache.h"

namespace stepaudio::text {

namespace {
enum : uint8_t { kPresent = 1, kAdded = 2, kSpecial = 4 };

bool is_control_token(std::string_view s) {
  return s.size() > 2 && s.back() == '>' && (s.starts_with("<audio_") || s.starts_with("<tts_"));
}
}  // namespace

struct Tokenizer::Impl {
  std::string source;
  bool nfc = false;
  std::unique_ptr<PreTokenizer> pretok;  // null: the whole text is one word
  BpeModel bpe;
  TokenMap added;  // content -> id
  AddedTokenMatcher matcher;
  std::vector<std::string> bytes;  // id -> raw bytes (byte-level decoded; added: content)
  std::vector<uint8_t> flags;      // id -> kPresent | kAdded | kSpecial
  int32_t first_non_text = 0;
  WordCache cache;

  void build(TokenizerSpec spec);
  void encode_run(std::string_view text, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::build(TokenizerSpec spec) {
  source = spec.source;
  nfc = spec.nfc;
  if (!spec.split_regex.empty())
    pretok = std::make_unique<PreTokenizer>(spec.split_regex, spec.vocab_file);

  // Id table of the vocab, rejecting two tokens with one id.
  int32_t max_id = -1;
  for (const auto& [tok, id] : spec.vocab) max_id = std::max(max_id, id);
  for (const auto& a : spec.added) max_id = std::max(max_id, a.id);
  const size_t n = static_cast<size_t>(max_id + 1);
  bytes.assign(n, {});
  flags.assign(n, 0);
  std::vector<const std::string*> owner(n, nullptr);
  for (const auto& [tok, id] : spec.vocab) {
    if (owner[id])
      throw Error(Errc::tokenizer_format, spec.vocab_file + ": duplicate id " + std::to_string(id) +
                                              " for vocab tokens \"" + *owner[id] + "\" and \"" +
                                              tok + "\"");
    owner[id] = &tok;
    bytes[id] = byte_level_decode(tok);
    flags[id] = kPresent;
  }

  // Added tokens: an entry that repeats a vocab token with its own id is fine (GPT-2 style); any
  // other overlap would make encode and decode disagree, so it is an error.
  first_non_text = static_cast<int32_t>(n);
  for (const auto& a : spec.added) {
    if (a.content.empty())
      throw Error(Errc::tokenizer_format,
                  spec.added_file + ": added token " + std::to_string(a.id) + " is empty");
    if (first_invalid_utf8(a.content))
      throw Error(Errc::tokenizer_format, spec.added_file + ": added token " +
                                              std::to_string(a.id) + " is not valid UTF-8");
    if (auto v = spec.vocab.find(a.content); v != spec.vocab.end() && v->second != a.id)
      throw Error(Errc::tokenizer_format, spec.added_file + ": added token \"" + a.content +
                                              "\" (id " + std::to_string(a.id) +
                                              ") collides with vocab id " +
                                              std::to_string(v->second));
    if (owner[a.id] && *owner[a.id] != a.content)
      throw Error(Errc::tokenizer_format, spec.added_file + ": added token \"" + a.content +
                                              "\" id " + std::to_string(a.id) +
                                              " collides with \"" + *owner[a.id] + "\"");
    if (auto [it, inserted] = added.try_emplace(a.content, a.id); !inserted && it->second != a.id)
      throw Error(Errc::tokenizer_format, spec.added_file + ": added token \"" + a.content +
                                              "\" appears with ids " + std::to_string(it->second) +
                                              " and " + std::to_string(a.id));
    owner[a.id] = &a.content;
    bytes[a.id] = a.content;
    flags[a.id] = kPresent | kAdded | (a.special ? kSpecial : 0);
    matcher.add(a.content, a.id);
    if (is_control_token(a.content)) first_non_text = std::min(first_non_text, a.id);
  }
  bpe.build(std::move(spec.vocab), spec.merges, spec.ignore_merges, spec.vocab_file);
}

void Tokenizer::Impl::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (cache.lookup(word, out)) return;
  const size_t start = out.size();
  bpe.encode_word(word, out);
  cache.insert(word, out.data() + start, out.size() - start);
}

// One run of plain text (no added tokens inside): normalize, split, BPE each word.
void Tokenizer::Impl::encode_run(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string normalized;
  if (nfc) {
    normalized = text::nfc(text);
    text = normalized;
  }
  if (!pretok) {
    encode_word(text, out);
    return;
  }
  std::vector<std::string_view> words;
  pretok->split(text, words);
  for (auto w : words) encode_word(w, out);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->build(read_tokenizer_files(path));
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

std::shared_ptr<const Tokenizer> Tokenizer::from_json(std::string_view json,
                                                      const std::string& name) {
  auto impl = std::make_unique<Impl>();
  impl->build(parse_tokenizer_json(json, name));
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  const TextPiece piece{text, allow_special};
  return encode(std::span<const TextPiece>(&piece, 1));
}

std::vector<int32_t> Tokenizer::encode(std::span<const TextPiece> pieces) const {
  size_t offset = 0;
  for (const auto& p : pieces) {
    if (auto bad = first_invalid_utf8(p.text))
      throw Error(Errc::invalid_argument,
                  "text is not valid UTF-8 at byte offset " + std::to_string(offset + *bad));
    offset += p.text.size();
  }
  std::vector<int32_t> out;
  std::string run;  // plain text not yet encoded; may span pieces, as in one joined string
  const Impl& m = *impl_;
  for (const auto& p : pieces) {
    if (!p.allow_special || m.matcher.empty()) {
      run.append(p.text);
      continue;
    }
    size_t copied = 0;
    for (size_t i = 0; i < p.text.size();) {
      if (!m.matcher.may_start(static_cast<unsigned char>(p.text[i]))) {
        ++i;
        continue;
      }
      const auto hit = m.matcher.match(p.text, i);
      if (hit.length == 0) {
        ++i;
        continue;
      }
      run.append(p.text.substr(copied, i - copied));
      m.encode_run(run, out);
      run.clear();
      out.push_back(hit.id);
      i += hit.length;
      copied = i;
    }
    run.append(p.text.substr(copied));
  }
  m.encode_run(run, out);
  return out;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->flags.size() || !impl_->flags[id])
    throw Error(Errc::invalid_argument,
                "token id " + std::to_string(id) + " is not in the tokenizer");
  return impl_->bytes[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string raw;
  for (int32_t id : ids) {
    const std::string_view b = token_bytes(id);
    if (skip_special && (impl_->flags[id] & kSpecial)) continue;
    raw.append(b);
  }
  std::string out;
  out.reserve(raw.size());
  append_utf8_lossy(out, raw, /*hold_tail=*/false);
  return out;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  if (auto it = impl_->added.find(token); it != impl_->added.end()) return it->second;
  if (auto it = impl_->bpe.vocab().find(token); it != impl_->bpe.vocab().end()) return it->second;
  return std::nullopt;
}

int32_t Tokenizer::require_token(std::string_view token) const {
  if (auto id = token_id(token)) return *id;
  throw Error(Errc::tokenizer_format,
              impl_->source + ": the tokenizer has no token \"" + std::string(token) + "\"");
}

bool Tokenizer::is_added(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->flags.size() && (impl_->flags[id] & kAdded);
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->flags.size() && (impl_->flags[id] & kSpecial);
}

int32_t Tokenizer::eos_id() const {
  return require_token("<|EOT|>");
}
int32_t Tokenizer::first_non_text_id() const {
  return impl_->first_non_text;
}

SplitIds Tokenizer::split_generated(std::span<const int32_t> ids) const {
  SplitIds s;
  for (int32_t id : ids) (id >= 0 && id < impl_->first_non_text ? s.text : s.other).push_back(id);
  return s;
}

size_t Tokenizer::vocab_size() const {
  return impl_->flags.size();
}
const std::string& Tokenizer::source() const {
  return impl_->source;
}

}  // namespace stepaudio::text
