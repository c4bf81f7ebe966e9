// `stepaudio mel`: the audio front end alone, for checks. Writes the log-mel of each chunk as .npy
// (float32, 128 x T) and one JSON line per chunk on stdout.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "options.h"
#include "stepaudio/audio.h"
#include "stepaudio/error.h"
#include "stepaudio/npy.h"

namespace stepaudio::cli {
namespace {

struct MelArgs {
  std::string audio, out, pcm_out, channel = "first", chunking = "pause";
  double max_seconds = 4 * 3600;
};

// FILE.npy -> FILE.<i>.npy (FILE.npy itself when there is a single chunk).
std::string chunk_path(const std::string& out, size_t index, size_t count) {
  if (count == 1) return out;
  std::string stem = out;
  if (stem.size() > 4 && stem.compare(stem.size() - 4, 4, ".npy") == 0)
    stem.resize(stem.size() - 4);
  return stem + "." + std::to_string(index) + ".npy";
}

int run_mel(const MelArgs& a) {
  audio::DecodeOptions opt;
  opt.channels = a.channel == "mix" ? audio::ChannelMode::mix : audio::ChannelMode::first;
  opt.max_seconds = a.max_seconds;
  audio::DecodedAudio decoded = audio::decode_file(a.audio, opt);
  std::vector<float> pcm = audio::to_16k(decoded);
  if (!a.pcm_out.empty()) write_npy(a.pcm_out, pcm.data(), {pcm.size()});
  audio::ChunkOptions chunking;
  if (a.chunking == "fixed") chunking.search_seconds = 0;
  auto chunks = audio::plan_chunks(pcm.data(), pcm.size(), chunking);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto& c = chunks[i];
    audio::LogMel mel = audio::log_mel(pcm.data() + c.begin, c.end - c.begin);
    std::string path = chunk_path(a.out, i, chunks.size());
    write_npy(path, mel.data.data(), {size_t(audio::kNumMels), size_t(mel.frames)});
    nlohmann::json line = {{"chunk", i},
                           {"path", path},
                           {"start", c.start_s()},
                           {"end", c.end_s()},
                           {"samples", c.end - c.begin},
                           {"frames", mel.frames},
                           {"audio_patch_tokens", audio::audio_patch_tokens(mel.frames)}};
    std::printf("%s\n", line.dump().c_str());
  }
  return 0;
}

}  // namespace

void add_mel_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app =
      root.add_subcommand("mel", "The audio front end alone: recording -> log-mel .npy per chunk");
  auto args = std::make_shared<MelArgs>();
  app->add_option("--audio", args->audio, "recording (any format FFmpeg decodes)")->required();
  app->add_option("--out", args->out,
                  "output FILE.npy (several chunks: FILE.0.npy, FILE.1.npy, ...)")
      ->required();
  app->add_option("--channel", args->channel, "first (as the official pipeline) or mix")
      ->check(CLI::IsMember({"first", "mix"}));
  app->add_option("--chunking", args->chunking,
                  "pause (cut at the quietest point) or fixed (every 25 s)")
      ->check(CLI::IsMember({"pause", "fixed"}));
  app->add_option("--max-seconds", args->max_seconds, "refuse recordings longer than this")
      ->check(above(0));
  app->add_option("--pcm-out", args->pcm_out, "also write the 16 kHz mono PCM as .npy (float32)");
  commands.push_back({app, [args] { return run_mel(*args); }});
}

}  // namespace stepaudio::cli
