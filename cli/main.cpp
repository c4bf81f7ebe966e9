// stepaudio: one binary, one subcommand per job (DESIGN.md §5). Errors print one line on stderr and
// exit non-zero: 1 for failures, 2 for bad command lines.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "stepaudio/error.h"

int main(int argc, char** argv) {
  using namespace stepaudio;
  CLI::App root{"stepaudio: speech understanding with Step-Audio-2-mini, natively on CPUs"};
  root.require_subcommand(1);
  std::vector<cli::Command> commands;
  cli::add_run_command(root, commands);
  cli::add_mel_command(root, commands);
  cli::add_tokenize_command(root, commands);
  cli::add_bench_command(root, commands);
  cli::add_quantize_command(root, commands);
  cli::add_serve_command(root, commands);

  try {
    root.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return root.exit(e);
  }
  try {
    for (auto& cmd : commands)
      if (cmd.app->parsed()) return cmd.run();
  } catch (const Error& e) {
    std::fprintf(stderr, "stepaudio: error [%s]: %s\n", e.code_name(), e.what());
    return e.code() == Errc::invalid_argument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stepaudio: error [internal]: %s\n", e.what());
    return 1;
  }
  return 2;
}
