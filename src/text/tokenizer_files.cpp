#include "text/tokenizer_files.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "stepaudio/error.h"
#include "text/json_sax_vocab.h"
#include "text/pretokenizer.h"
#include "util/log.h"

namespace stepaudio::text {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Ids above this are rejected: real vocabularies are < 1M, and a bogus huge id must not make us
// allocate gigabytes for the id table.
constexpr int64_t kMaxTokenId = (1 << 24) - 1;

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw Error(Errc::tokenizer_format, file + ": " + what);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::io, "cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(Errc::io, "cannot read " + path.string());
  return std::move(ss).str();
}

json parse_json(std::string_view text, const std::string& file) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(file, std::string("malformed JSON: ") + e.what());
  }
}

// Parses with the vocab (and merges) streamed into `h`; the returned DOM holds the rest.
json parse_streaming(std::string_view text, const std::string& file, VocabSaxHandler*& out,
                     std::unique_ptr<VocabSaxHandler>& holder, bool vocab_at_root) {
  json dom;
  holder = std::make_unique<VocabSaxHandler>(dom, vocab_at_root);
  out = holder.get();
  bool ok = false;
  try {
    ok = json::sax_parse(text, holder.get());
  } catch (const json::exception& e) {
    fail(file, std::string("malformed JSON: ") + e.what());
  }
  if (!ok) fail(file, holder->error.empty() ? std::string("malformed JSON") : holder->error);
  return dom;
}

int32_t token_id_of(const json& v, const std::string& file, std::string_view what) {
  if (!v.is_number_integer()) fail(file, std::string(what) + " has a non-integer id");
  const auto id = v.get<int64_t>();
  if (id < 0 || id > kMaxTokenId)
    fail(file, std::string(what) + " has an out-of-range id " + std::to_string(id));
  return static_cast<int32_t>(id);
}

// "a b" (merges.txt and older tokenizer.json) -> {a, b}.
std::pair<std::string, std::string> split_merge(std::string_view line, const std::string& file,
                                                size_t index) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size() ||
      line.find(' ', sp + 1) != std::string_view::npos)
    fail(file, "merge " + std::to_string(index) + " \"" + std::string(line) +
                   "\" is not two tokens separated by one space");
  return {std::string(line.substr(0, sp)), std::string(line.substr(sp + 1))};
}

std::string type_of(const json& v) {
  auto it = v.find("type");
  return it != v.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool parse_normalizer(const json& v, const std::string& file) {
  if (v.is_null()) return false;
  const std::string type = type_of(v);
  if (type == "NFC") return true;
  if (type == "Sequence") {
    bool nfc = false;
    for (const auto& n : v.value("normalizers", json::array()))
      nfc = parse_normalizer(n, file) || nfc;
    return nfc;
  }
  fail(file, "unsupported normalizer \"" + type + "\" (supported: NFC, Sequence of NFC, null)");
}

// Returns the split regex ("" for none). Only the byte-level shapes of GPT-2/Qwen2 are supported.
void parse_pre_tokenizer(const json& v, const std::string& file, std::string& regex,
                         bool& byte_level) {
  if (v.is_null()) return;
  const std::string type = type_of(v);
  auto set_regex = [&](std::string r) {
    if (!regex.empty())
      fail(file, "more than one split regex in the pre_tokenizer is not supported");
    regex = std::move(r);
  };
  if (type == "Sequence") {
    for (const auto& p : v.value("pretokenizers", json::array()))
      parse_pre_tokenizer(p, file, regex, byte_level);
  } else if (type == "ByteLevel") {
    byte_level = true;
    if (v.value("add_prefix_space", false))
      fail(file, "ByteLevel add_prefix_space = true is not supported");
    if (v.value("use_regex", true)) set_regex(kGpt2SplitRegex);
  } else if (type == "Split") {
    const json& pat = v.value("pattern", json::object());
    if (v.value("behavior", std::string("Isolated")) != "Isolated" || v.value("invert", false))
      fail(file, "only Split with behavior Isolated and invert false is supported");
    if (pat.contains("Regex") && pat["Regex"].is_string()) {
      set_regex(pat["Regex"].get<std::string>());
    } else if (pat.contains("String") && pat["String"].is_string()) {
      std::string escaped;  // a literal: escape every ASCII punctuation character
      for (char c : pat["String"].get<std::string>()) {
        if (static_cast<unsigned char>(c) < 0x80 && !std::isalnum(static_cast<unsigned char>(c)))
          escaped += '\\';
        escaped += c;
      }
      set_regex(escaped);
    } else {
      fail(file, "Split pre-tokenizer without a Regex or String pattern");
    }
  } else {
    fail(file,
         "unsupported pre_tokenizer \"" + type + "\" (supported: Split, ByteLevel, Sequence)");
  }
}

void check_decoder(const json& v, const std::string& file) {
  if (v.is_null()) return;
  const std::string type = type_of(v);
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    for (const auto& d : v.value("decoders", json::array())) check_decoder(d, file);
    return;
  }
  fail(file, "unsupported decoder \"" + type + "\" (supported: ByteLevel)");
}

AddedTokenSpec parse_added_token(const json& t, const std::string& file, size_t index) {
  if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id"))
    fail(file, "added token " + std::to_string(index) + " lacks a string content or an id");
  AddedTokenSpec a;
  a.content = t["content"].get<std::string>();
  a.id = token_id_of(t["id"], file, "added token \"" + a.content + "\"");
  const auto sp = t.find("special");
  a.special = sp != t.end() && sp->is_boolean() && sp->get<bool>();
  return a;
}

TokenizerSpec read_vocab_merges(const fs::path& dir) {
  TokenizerSpec spec;
  spec.source = dir.string();
  const fs::path vocab_path = dir / "vocab.json", merges_path = dir / "merges.txt";
  spec.vocab_file = vocab_path.string();
  {
    VocabSaxHandler* h = nullptr;
    std::unique_ptr<VocabSaxHandler> holder;
    const json rest = parse_streaming(read_file(vocab_path), spec.vocab_file, h, holder, true);
    if (!h->saw_vocab) fail(spec.vocab_file, "the vocab is not a JSON object of token -> id");
    spec.vocab = std::move(h->vocab);
  }

  const std::string merges_text = read_file(merges_path);
  std::istringstream lines(merges_text);
  std::string line;
  for (size_t n = 0; std::getline(lines, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (n == 0 && line.rfind("#version", 0) == 0)) continue;
    spec.merges.push_back(split_merge(line, merges_path.string(), spec.merges.size()));
  }

  // added_tokens.json: {"content": id}. tokenizer_config.json: added_tokens_decoder
  // {"id": {"content": ..., "special": ...}} adds the special flags (and tokens of its own).
  const fs::path added_path = dir / "added_tokens.json",
                 config_path = dir / "tokenizer_config.json";
  spec.added_file = added_path.string();
  if (fs::exists(added_path)) {
    const json added = parse_json(read_file(added_path), spec.added_file);
    if (!added.is_object()) fail(spec.added_file, "not a JSON object of token -> id");
    for (const auto& [content, id] : added.items())
      spec.added.push_back(
          {token_id_of(id, spec.added_file, "added token \"" + content + "\""), content, false});
  }
  if (fs::exists(config_path)) {
    const std::string cfg_name = config_path.string();
    const json cfg = parse_json(read_file(config_path), cfg_name);
    const json decoder =
        cfg.is_object() ? cfg.value("added_tokens_decoder", json::object()) : json::object();
    if (!decoder.is_object()) fail(cfg_name, "added_tokens_decoder is not an object");
    size_t index = 0;
    for (const auto& [id_str, t] : decoder.items()) {
      json entry = t;
      if (!entry.is_object())
        fail(cfg_name, "added_tokens_decoder[\"" + id_str + "\"] is not an object");
      try {
        entry["id"] = std::stoll(id_str);
      } catch (const std::exception&) {
        fail(cfg_name, "added_tokens_decoder key \"" + id_str + "\" is not an id");
      }
      AddedTokenSpec a = parse_added_token(entry, cfg_name, index++);
      bool merged = false;
      for (auto& existing : spec.added)
        if (existing.id == a.id && existing.content == a.content)
          existing.special = a.special, merged = true;
      if (!merged) spec.added.push_back(std::move(a));
    }
  }
  spec.nfc = true;  // the Qwen2 pipeline (bpe_pipeline_config.json)
  spec.split_regex = kQwen2SplitRegex;
  return spec;
}

}  // namespace

TokenizerSpec parse_tokenizer_json(std::string_view text, const std::string& name) {
  VocabSaxHandler* h = nullptr;
  std::unique_ptr<VocabSaxHandler> holder;
  const json root = parse_streaming(text, name, h, holder, false);
  try {
    if (!root.is_object()) fail(name, "the top level is not a JSON object");
    TokenizerSpec spec;
    spec.source = spec.vocab_file = spec.added_file = name;
    const auto model_it = root.find("model");
    if (model_it == root.end() || !model_it->is_object()) fail(name, "no \"model\" object");
    const json& model = *model_it;
    if (const std::string type = type_of(model); !type.empty() && type != "BPE")
      fail(name, "model type \"" + type + "\" is not supported (only BPE)");
    if (!model.contains("vocab")) fail(name, "model.vocab is missing");
    if (!model.contains("merges")) fail(name, "model.merges is missing");
    if (!h->saw_vocab) fail(name, "model.vocab is not a JSON object of token -> id");
    if (!h->saw_merges) fail(name, "model.merges is not an array");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      auto it = model.find(key);
      if (it != model.end() && it->is_string() && !it->get_ref<const std::string&>().empty())
        fail(name, std::string("model.") + key + " is not supported");
    }
    spec.vocab = std::move(h->vocab);
    spec.merges = std::move(h->merges);
    const auto im = model.find("ignore_merges");
    spec.ignore_merges = im != model.end() && im->is_boolean() && im->get<bool>();

    const json& added = root.value("added_tokens", json::array());
    if (!added.is_array()) fail(name, "added_tokens is not an array");
    for (size_t i = 0; i < added.size(); ++i)
      spec.added.push_back(parse_added_token(added[i], name, i));

    spec.nfc = parse_normalizer(root.value("normalizer", json()), name);
    bool byte_level = false;
    parse_pre_tokenizer(root.value("pre_tokenizer", json()), name, spec.split_regex, byte_level);
    if (!byte_level)
      fail(name, "the pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
    check_decoder(root.value("decoder", json()), name);
    // The post-processor only adds template tokens (BOS/EOS) around a sequence; Qwen2's is a no-op
    // ByteLevel. Prompts are built by render_prompt, so anything else is ignored, loudly.
    if (const json& post = root.value("post_processor", json());
        !post.is_null() && type_of(post) != "ByteLevel")
      SA_WARN("%s: post_processor \"%s\" is ignored (no tokens are added around a sequence)",
              name.c_str(), type_of(post).c_str());
    return spec;
  } catch (const json::exception& e) {
    fail(name, std::string("unexpected JSON structure: ") + e.what());
  }
}

TokenizerSpec read_tokenizer_files(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json")) {
      const std::string file = (p / "tokenizer.json").string();
      TokenizerSpec spec = parse_tokenizer_json(read_file(file), file);
      spec.source = path;
      return spec;
    }
    if (fs::exists(p / "vocab.json") || fs::exists(p / "merges.txt")) {
      if (!fs::exists(p / "merges.txt"))
        throw Error(Errc::tokenizer_format, path + ": vocab.json without merges.txt");
      return read_vocab_merges(p);
    }
    throw Error(Errc::io, path + ": no tokenizer.json or vocab.json + merges.txt in this folder");
  }
  if (!fs::exists(p, ec)) throw Error(Errc::io, "tokenizer not found: " + path);
  return parse_tokenizer_json(read_file(p), path);
}

}  // namespace stepaudio::text
