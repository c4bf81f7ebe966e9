// Subcommands of the stepaudio binary. Each file cli/cmd_*.cpp registers one subcommand with its
// options and the action to run when it is chosen. Commands use the public API (include/) only.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace stepaudio::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;  // exit code
};

void add_mel_command(CLI::App& root, std::vector<Command>& commands);
void add_tokenize_command(CLI::App& root, std::vector<Command>& commands);
void add_run_command(CLI::App& root, std::vector<Command>& commands);
void add_bench_command(CLI::App& root, std::vector<Command>& commands);
void add_quantize_command(CLI::App& root, std::vector<Command>& commands);
void add_serve_command(CLI::App& root, std::vector<Command>& commands);
void add_eval_command(CLI::App& root, std::vector<Command>& commands);

}  // namespace stepaudio::cli
