// `stepaudio quantize --model DIR --out FILE.gguf --type q8|q4`: one GGUF file holding the weights
// as `run --quant TYPE` would hold them, plus config and tokenizer (stepaudio/quantize.h). Loading
// it skips the conversion and reads one file; `run`/`bench --model FILE.gguf` accept it.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "options.h"
#include "stepaudio/error.h"
#include "stepaudio/model.h"
#include "stepaudio/quantize.h"

namespace stepaudio::cli {

namespace {
struct QuantizeOptions {
  std::string model, synthetic, out, type = "q4";
};
}  // namespace

void add_quantize_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app = root.add_subcommand("quantize", "Write a checkpoint as one quantized GGUF file");
  auto o = std::make_shared<QuantizeOptions>();
  auto* model = app->add_option("--model", o->model, "Step-Audio-2-mini checkpoint folder");
  app->add_option("--synthetic", o->synthetic,
                  "random model instead (measurements): step-audio-2-mini | "
                  "step-audio-2-mini-1layer | tiny")
      ->excludes(model);
  app->add_option("--out", o->out, "output file (.gguf)")->required();
  app->add_option("--type", o->type, "weights: q8 | q4 (also bf16 | f32)")
      ->check(CLI::IsMember({"q8", "q4", "bf16", "f32"}));
  commands.push_back({app, [o] {
                        if (!o->synthetic.empty())
                          quantize_synthetic_model(o->synthetic, o->out, parse_quant(o->type));
                        else if (!o->model.empty())
                          quantize_model(o->model, o->out, parse_quant(o->type));
                        else
                          throw Error(Errc::invalid_argument, "--model or --synthetic is required");
                        std::fprintf(stderr, "stepaudio: wrote %s (%s)\n", o->out.c_str(),
                                     o->type.c_str());
                        return 0;
                      }});
}

}  // namespace stepaudio::cli
