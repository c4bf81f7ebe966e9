// What every subcommand shares about its command line: range checks whose messages read as
// sentences (CLI11's own print the limits of a double as 300 digits), the thread-count check, the
// "this option has no effect here" check, and the mapping of every parse failure to the CLI's one
// error shape (`stepaudio: error [code]: message`, exit 2).
#pragma once

#include <CLI/CLI.hpp>
#include <initializer_list>
#include <string>

namespace stepaudio::cli {

// lo <= value <= hi ("--max-tokens: 0 is outside 1..1048576").
CLI::Validator in_range(double lo, double hi);
// value > lo (strictly): "must be greater than 0".
CLI::Validator above(double lo);
// 0 (all cores) .. this machine's hardware threads: more threads than cores only slows the
// kernels down (1000 threads turned a 0.9 s run into 63 s), negative is meaningless.
// STEPAUDIO_MAX_THREADS=N raises the cap (tests that split work 3 ways on 2 cores).
CLI::Validator thread_count();

// Throws Error(invalid_argument) naming the first of `options` that was given on the command line,
// with `why` (e.g. "only applies with --task"): options that would be silently ignored.
void refuse_given(const CLI::App& app, std::initializer_list<const char*> options,
                  const std::string& why);

// True when the option was given on the command line (or by its environment variable).
bool given(const CLI::App& app, const char* option);

// A .gguf file is used as stored: an explicit --quant that names another type is refused (before
// the model loads) instead of silently ignored.
void refuse_contradicting_quant(const CLI::App& app, const std::string& model_path,
                                const std::string& quant);

// `text` as one printable line: control characters (newlines, escape sequences from a hostile
// model file's tensor names...) and bytes that are not UTF-8 become \xNN; valid UTF-8 stays.
std::string printable(const std::string& text);

// Prints a parse failure in the CLI's error shape (help and --version print as CLI11 does) and
// returns the exit code: 0 for help/version, 2 for every bad command line.
int report_parse_error(const CLI::App& root, const CLI::ParseError& e, int argc, char** argv);

}  // namespace stepaudio::cli
