// The synthetic tiny model (make_synthetic_model("tiny")) as an Engine, with a byte-level
// tokenizer that covers its 512 ids: what end-to-end unit tests of chat() and understand() run on
// without a checkpoint.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "stepaudio/audio.h"
#include "stepaudio/model.h"
#include "stepaudio/pipeline.h"
#include "tokenizer_fixtures.h"

namespace stepaudio::test {

// A byte-level tokenizer whose ids cover the synthetic tiny model's 512: the 256 bytes, the
// fixture's merges, filler text tokens up to 499, and the Step specials where the tiny model has
// them (<audio_patch> 500, <|EOT|> 501). Ids >= 500 are not text.
inline std::shared_ptr<const text::Tokenizer> tiny_model_tokenizer() {
  static auto tok = [] {
    nlohmann::json j = tiny_tokenizer_json();
    nlohmann::json& vocab = j["model"]["vocab"];
    for (int id = int(vocab.size()); id < 500; ++id) vocab["tok" + std::to_string(id)] = id;
    nlohmann::json added = nlohmann::json::array();
    const std::pair<int, const char*> specials[] = {{500, "<audio_patch>"},
                                                    {501, "<|EOT|>"},
                                                    {502, "<|BOT|>"},
                                                    {503, "<audio_start>"},
                                                    {504, "<audio_end>"}};
    for (auto [id, t] : specials)
      added.push_back({{"id", id}, {"content", t}, {"special", true}, {"normalized", false}});
    for (int id = 505; id < 512; ++id)
      added.push_back({{"id", id},
                       {"content", "<audio_" + std::to_string(id) + ">"},
                       {"special", false},
                       {"normalized", false}});
    j["added_tokens"] = added;
    return text::Tokenizer::from_json(j.dump(), "tiny-model.json");
  }();
  return tok;
}

inline Engine tiny_engine() {
  Engine e;
  e.model = make_synthetic_model("tiny", 5);
  e.tokenizer = tiny_model_tokenizer();
  e.model_id = "tiny";
  return e;
}

// A steady tone (about -13 dBFS) at the model's rate: audio the energy check counts as speech.
inline std::vector<float> tone(double seconds) {
  std::vector<float> x(size_t(seconds * audio::kSampleRate));
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * std::sin(0.05f * float(i));
  return x;
}

}  // namespace stepaudio::test
