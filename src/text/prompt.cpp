// Step-Audio 2 chat template (StepAudio2.apply_chat_template): see include/stepaudio/prompt.h.
#include "stepaudio/prompt.h"

#include "stepaudio/error.h"

namespace stepaudio::text {

namespace {

struct Specials {
  int32_t bot, eot;
  int32_t audio_start = -1, audio_patch = -1, audio_end = -1;
};

void append(std::vector<int32_t>& out, const std::vector<int32_t>& ids) {
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace

RenderedPrompt render_prompt(const Tokenizer& tok, const std::vector<Message>& messages,
                             bool open_assistant_turn) {
  // Ids by string, never hard-coded; the special tokens are emitted as ids directly so a missing
  // one is an error instead of silently becoming plain text.
  Specials sp{tok.require_token("<|BOT|>"), tok.require_token("<|EOT|>")};
  RenderedPrompt r;

  // "<|BOT|>{role}\n" + following text, as one tokenizer call. The role is encoded like user text
  // so that a role string can never smuggle in an added token.
  auto header_and = [&](const std::string& role, std::vector<TextPiece> tail) {
    r.ids.push_back(sp.bot);
    std::vector<TextPiece> pieces{{role == "user" ? std::string_view("human") : role, false},
                                  {"\n", true}};
    pieces.insert(pieces.end(), tail.begin(), tail.end());
    append(r.ids, tok.encode(pieces));
  };

  for (const auto& msg : messages) {
    switch (msg.form) {
      case Message::Form::open:
        header_and(msg.role, {});
        continue;
      case Message::Form::string: {
        std::vector<TextPiece> content;
        for (const auto& p : msg.parts) {
          if (p.kind != Part::Kind::user_text && p.kind != Part::Kind::trusted_text)
            throw Error(Errc::invalid_argument,
                        "a string-form message may hold only text parts (role " + msg.role + ")");
          content.push_back({p.text, p.kind == Part::Kind::trusted_text});
        }
        header_and(msg.role, std::move(content));
        break;
      }
      case Message::Form::list:
        header_and(msg.role, {});
        for (const auto& p : msg.parts) {
          switch (p.kind) {
            case Part::Kind::user_text:
            case Part::Kind::trusted_text:
              append(r.ids, tok.encode(p.text, p.kind == Part::Kind::trusted_text));
              break;
            case Part::Kind::audio: {
              if (sp.audio_start < 0) {
                sp.audio_start = tok.require_token("<audio_start>");
                sp.audio_patch = tok.require_token("<audio_patch>");
                sp.audio_end = tok.require_token("<audio_end>");
              }
              r.ids.push_back(sp.audio_start);
              auto& pos = r.audio_patch_positions.emplace_back();
              pos.reserve(p.audio_patches);
              for (size_t k = 0; k < p.audio_patches; ++k) {
                pos.push_back(static_cast<int32_t>(r.ids.size()));
                r.ids.push_back(sp.audio_patch);
              }
              r.ids.push_back(sp.audio_end);
              break;
            }
            case Part::Kind::tokens:
              append(r.ids, p.ids);
              break;
          }
        }
        break;
    }
    if (msg.eot) r.ids.push_back(sp.eot);
  }
  if (open_assistant_turn) header_and("assistant", {});
  return r;
}

}  // namespace stepaudio::text
