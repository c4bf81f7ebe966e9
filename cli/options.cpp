#include "options.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "stepaudio/error.h"
#include "stepaudio/quantize.h"

namespace stepaudio::cli {

namespace {
std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}

// CLI11 converts after validating, so a validator sees the raw text: parse it the same way.
bool to_number(const std::string& s, double* x) {
  if (s.empty()) return false;
  char* end = nullptr;
  *x = std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}
}  // namespace

CLI::Validator in_range(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        double x = 0;
        if (!to_number(s, &x)) return "'" + s + "' is not a number";
        if (!(x >= lo && x <= hi)) return s + " is outside " + num(lo) + ".." + num(hi);
        return {};
      },
      num(lo) + ".." + num(hi), "range");
}

CLI::Validator above(double lo) {
  return CLI::Validator(
      [lo](std::string& s) -> std::string {
        double x = 0;
        if (!to_number(s, &x)) return "'" + s + "' is not a number";
        if (!(x > lo)) return s + " must be greater than " + num(lo);
        return {};
      },
      "> " + num(lo), "above");
}

CLI::Validator thread_count() {
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  // Tests of thread-count invariance split work 3 ways on 2-core machines: they raise the cap.
  if (const char* env = std::getenv("STEPAUDIO_MAX_THREADS"))
    hw = std::max(hw, unsigned(std::clamp(std::atoi(env), 1, 4096)));
  return CLI::Validator(
      [hw](std::string& s) -> std::string {
        double x = 0;
        if (!to_number(s, &x) || x != double(long(x))) return "'" + s + "' is not a whole number";
        if (x < 0) return s + " is negative (0 uses every core)";
        if (x > hw)
          return s + " is more than this machine's " + std::to_string(hw) +
                 " hardware threads (0 uses every core)";
        return {};
      },
      "0.." + std::to_string(hw), "threads");
}

bool given(const CLI::App& app, const char* option) {
  const CLI::Option* o = app.get_option_no_throw(option);
  return o && o->count() > 0;
}

void refuse_given(const CLI::App& app, std::initializer_list<const char*> options,
                  const std::string& why) {
  for (const char* name : options)
    if (given(app, name)) throw Error(Errc::invalid_argument, std::string(name) + " " + why);
}

void refuse_contradicting_quant(const CLI::App& app, const std::string& model_path,
                                const std::string& quant) {
  const bool gguf = model_path.size() > 5 && model_path.ends_with(".gguf");
  if (!gguf || !given(app, "--quant")) return;
  const Quant held = gguf_file_quant(model_path);
  if (held != parse_quant(quant))
    throw Error(Errc::invalid_argument,
                "--quant " + quant + " contradicts " + model_path + ", which holds " +
                    quant_name(held) +
                    " weights (a .gguf file is used as stored: drop --quant, "
                    "or quantize the checkpoint folder again)");
}

std::string printable(const std::string& text) {
  std::string out;
  auto escape = [&](unsigned char c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    out += buf;
  };
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f)
        escape(c);
      else
        out += char(c);
      ++i;
      continue;
    }
    // A well-formed multi-byte sequence (no overlongs, no surrogates, <= U+10FFFF) is kept whole,
    // unless it encodes a C1 control (U+0080..U+009F).
    const size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    bool ok = n > 0 && c <= 0xf4 && i + n <= text.size();
    uint32_t cp = ok ? c & (0x7f >> n) : 0;
    for (size_t k = 1; ok && k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(text[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = cp << 6 | (cc & 0x3f);
    }
    ok = ok && !(n == 3 && cp < 0x800) && !(n == 4 && (cp < 0x10000 || cp > 0x10ffff)) &&
         !(cp >= 0xd800 && cp <= 0xdfff) && !(cp >= 0x80 && cp <= 0x9f);
    if (!ok) {
      escape(c);
      ++i;
      continue;
    }
    out.append(text, i, n);
    i += n;
  }
  return out;
}

int report_parse_error(const CLI::App& root, const CLI::ParseError& e, int argc, char** argv) {
  // --help and --version are not failures: CLI11 prints them (exit 0).
  if (dynamic_cast<const CLI::CallForHelp*>(&e) || dynamic_cast<const CLI::CallForAllHelp*>(&e) ||
      dynamic_cast<const CLI::CallForVersion*>(&e))
    return root.exit(e);
  std::string names;
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; }))
    names += (names.empty() ? "" : ", ") + sub->get_name();
  const CLI::App* chosen = nullptr;
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->parsed()) chosen = sub;
  std::string message = e.what();
  if (!chosen) {
    // No subcommand was recognised: the first word is not a command (or there is none).
    const std::string first = argc > 1 ? argv[1] : "";
    if (first.empty())
      message = "a command is needed: one of " + names;
    else if (first[0] != '-')
      message = "unknown command '" + first + "'; the commands are " + names;
    else
      message = "unknown option " + first + " before the command; the commands are " + names;
  }
  std::fprintf(stderr, "stepaudio: error [invalid_argument]: %s (see: stepaudio %s--help)\n",
               printable(message).c_str(), chosen ? (chosen->get_name() + " ").c_str() : "");
  return 2;
}

}  // namespace stepaudio::cli
