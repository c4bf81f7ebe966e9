// `stepaudio tokenize`: text -> ids, or ids -> text, with a checkpoint's tokenizer.
//   stepaudio tokenize --tokenizer PATH (--text TEXT | --file FILE | --decode ID,ID,...)
//   [--special]
// Encoding prints the ids comma-separated on one line. Decoding prints the text (every token,
// special ones included) followed by a newline. --special lets added tokens such as <|EOT|> match
// in the input text; without it they are encoded as ordinary text, as user input is.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "commands.h"
#include "options.h"
#include "stepaudio/error.h"
#include "stepaudio/tokenizer.h"

namespace stepaudio::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer, text, file, decode;
  bool special = false;
};

std::vector<int32_t> parse_ids(const std::string& list) {
  std::vector<int32_t> ids;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos)
      throw Error(Errc::invalid_argument, "--decode: empty id in \"" + list + "\"");
    item = item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX)
      throw Error(Errc::invalid_argument, "--decode: \"" + item + "\" is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) throw Error(Errc::invalid_argument, "--decode: no ids given");
  return ids;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::io, "cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

int run_tokenize(const TokenizeOptions& o) {
  auto tok = text::Tokenizer::load(o.tokenizer);
  if (!o.decode.empty()) {
    const auto ids = parse_ids(o.decode);
    std::string s = tok->decode(ids);
    s += '\n';
    std::fwrite(s.data(), 1, s.size(), stdout);
    return 0;
  }
  const std::string input = o.file.empty() ? o.text : read_text_file(o.file);
  const auto ids = tok->encode(input, o.special);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ',';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app =
      root.add_subcommand("tokenize", "Text -> token ids or ids -> text with a model's tokenizer");
  auto opts = std::make_shared<TokenizeOptions>();
  app->add_option("--tokenizer", opts->tokenizer,
                  "tokenizer.json, or a folder with tokenizer.json or vocab.json + merges.txt")
      ->required();
  auto* text = app->add_option("--text", opts->text, "text to encode");
  auto* file = app->add_option("--file", opts->file, "file whose whole content is encoded");
  auto* decode = app->add_option("--decode", opts->decode, "comma-separated ids to decode");
  text->excludes(file, decode);
  file->excludes(decode);
  app->add_flag("--special", opts->special,
                "let added/special tokens (<|EOT|>, ...) match in the text");
  commands.push_back({app, [opts, text, file, decode] {
                        if (text->count() + file->count() + decode->count() != 1)
                          throw Error(Errc::invalid_argument,
                                      "tokenize needs one of --text, --file, --decode");
                        return run_tokenize(*opts);
                      }});
}

}  // namespace stepaudio::cli
