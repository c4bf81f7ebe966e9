// stepaudio: one binary, one subcommand per job. Every failure prints one line on stderr,
// `stepaudio: error [code]: message`, and exits 2 for a bad command line (the option parser's
// errors included) or 1 for anything else.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "options.h"
#include "stepaudio/error.h"

int main(int argc, char** argv) {
  using namespace stepaudio;
  CLI::App root{"stepaudio: speech understanding with Step-Audio-2-mini, natively on CPUs"};
  root.require_subcommand(1);
  root.set_version_flag("--version", "stepaudio " STEPAUDIO_VERSION);
  std::vector<cli::Command> commands;
  cli::add_run_command(root, commands);
  cli::add_mel_command(root, commands);
  cli::add_tokenize_command(root, commands);
  cli::add_bench_command(root, commands);
  cli::add_quantize_command(root, commands);
  cli::add_serve_command(root, commands);
  cli::add_eval_command(root, commands);

  try {
    root.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli::report_parse_error(root, e, argc, argv);
  }
  try {
    for (auto& cmd : commands)
      if (cmd.app->parsed()) return cmd.run();
  } catch (const Error& e) {
    std::fprintf(stderr, "stepaudio: error [%s]: %s\n", e.code_name(),
                 cli::printable(e.what()).c_str());
    return e.code() == Errc::invalid_argument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stepaudio: error [internal]: %s\n", cli::printable(e.what()).c_str());
    return 1;
  }
  return 2;
}
