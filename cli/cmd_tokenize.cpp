// `stepaudio tokenize` (issue 3): placeholder until the tokenizer lands.
#include <cstdio>

#include "commands.h"
#include "stepaudio/error.h"

namespace stepaudio::cli {

void add_tokenize_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app =
      root.add_subcommand("tokenize", "Text -> token ids or ids -> text with a model's tokenizer");
  commands.push_back({app, [] {
                        throw Error(Errc::invalid_argument, "tokenize is not built yet");
                        return 1;
                      }});
}

}  // namespace stepaudio::cli
