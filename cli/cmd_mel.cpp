#include "commands.h"
#include "stepaudio/error.h"
namespace stepaudio::cli {
void add_mel_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app = root.add_subcommand("mel", "The audio front end alone: recording -> log-mel .npy");
  commands.push_back({app, [] { throw Error(Errc::invalid_argument, "not built yet"); return 1; }});
}
}  // namespace stepaudio::cli
