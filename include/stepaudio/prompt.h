// Step-Audio 2 prompt rendering: chat messages -> token ids + where the audio features go.
//
// Mirrors StepAudio2.apply_chat_template of the official code (see
// ../shared/data/tokenizer/prompt_format.md):
//   * role "user" is written "human"; other roles as given ("system", "assistant", ...);
//   * string content: one segment "<|BOT|>{role}\n{content}" then "<|EOT|>" unless eot = false;
//   * list content: segment "<|BOT|>{role}\n", then each part as its own segment, then "<|EOT|>"
//     unless eot = false; an audio part is <audio_start> + N x <audio_patch> + <audio_end>;
//   * no content (open turn): "<|BOT|>{role}\n";
//   * each segment is tokenized on its own and the ids are concatenated.
// The template text ("<|BOT|>human\n") may match added tokens; user text parts never do (a user
// cannot inject <|EOT|>); trusted text parts (ours, e.g. "<tts_start>") do.
// Thread-safety: free functions and value types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stepaudio/tokenizer.h"

namespace stepaudio::text {

struct Part {
  enum class Kind {
    user_text,     // text from the user: added tokens are NOT matched
    trusted_text,  // text we wrote (system prompt templates, "<tts_start>"): added tokens match
    audio,         // one audio chunk: audio_patches x <audio_patch> between start/end markers
    tokens,        // pre-tokenized ids spliced as-is
  };
  Kind kind = Kind::user_text;
  std::string text;
  size_t audio_patches = 0;
  std::vector<int32_t> ids;

  static Part user(std::string s) { return {Kind::user_text, std::move(s), 0, {}}; }
  static Part trusted(std::string s) { return {Kind::trusted_text, std::move(s), 0, {}}; }
  static Part audio(size_t n_patches) { return {Kind::audio, {}, n_patches, {}}; }
  static Part token_ids(std::vector<int32_t> v) { return {Kind::tokens, {}, 0, std::move(v)}; }
};

struct Message {
  enum class Form {
    string,  // content is a string: the text parts are joined into one segment with the header
    list,    // content is a list: every part is its own segment
    open,    // content is None: just the header (a generation prompt)
  };
  std::string role;
  Form form = Form::list;
  std::vector<Part> parts;  // string form: text parts only
  bool eot = true;          // append <|EOT|> (string and list forms)

  static Message text(std::string role, std::string content, bool trusted = false) {
    return {std::move(role),
            Form::string,
            {trusted ? Part::trusted(std::move(content)) : Part::user(std::move(content))},
            true};
  }
  static Message list(std::string role, std::vector<Part> parts) {
    return {std::move(role), Form::list, std::move(parts), true};
  }
  static Message open(std::string role) { return {std::move(role), Form::open, {}, false}; }
};

struct RenderedPrompt {
  std::vector<int32_t> ids;
  // One entry per audio part, in prompt order: the positions in `ids` of its <audio_patch> tokens
  // (consecutive, audio_patches of them), where the engine writes the encoder's output rows.
  std::vector<std::vector<int32_t>> audio_patch_positions;
};

// Throws Error(tokenizer_format) when the tokenizer lacks a needed special token (<|BOT|>, <|EOT|>,
// <audio_start>, <audio_patch>, <audio_end>), Error(invalid_argument) for a non-text part in a
// string-form message or invalid UTF-8 in a text part.
// open_assistant_turn appends "<|BOT|>assistant\n" (the generation prompt).
RenderedPrompt render_prompt(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                             bool open_assistant_turn = true);

}  // namespace stepaudio::text
