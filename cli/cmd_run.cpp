// `stepaudio run` (issue 4): understand one recording. Until the engine lands it checks the model
// folder and says how to get the checkpoint.
#include <cstdio>
#include <filesystem>
#include <string>

#include "commands.h"
#include "stepaudio/error.h"

namespace stepaudio::cli {

void add_run_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app =
      root.add_subcommand("run", "Understand one recording (transcribe, summarize, analyze)");
  auto model = std::make_shared<std::string>();
  auto audio = std::make_shared<std::string>();
  app->add_option("--model", *model, "Step-Audio-2-mini checkpoint folder (or .gguf)")->required();
  app->add_option("--audio", *audio, "recording to process")->required();
  commands.push_back({app, [model, audio] {
                        namespace fs = std::filesystem;
                        if (!fs::exists(fs::path(*model) / "config.json"))
                          throw Error(Errc::model_format,
                                      "no Step-Audio-2-mini checkpoint at '" + *model +
                                          "'. Get it with: git lfs install && git clone "
                                          "https://huggingface.co/stepfun-ai/Step-Audio-2-mini " +
                                          *model);
                        throw Error(Errc::invalid_argument, "the engine is not built yet");
                        return 1;
                      }});
}

}  // namespace stepaudio::cli
