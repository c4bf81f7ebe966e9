// The tasks over a message-level chat port instead of a loaded engine: what a gateway node
// (`stepaudio serve --backend openai://...`, docs/REMOTE.md) runs. The pipeline is the local one
// (the same prompts, chunking, no-speech and repetition guards, combination of chunk answers and
// summary rules; pipeline/task_assemble.h holds the shared parts), only the model calls differ:
// each question about a speech chunk becomes one chat request of system + the chunk's audio + the
// question, which the remote server runs (and prefix-caches) itself.
//
//   MyCompleter c;  // implements ChatCompleter (server/openai_client.h: over HTTP)
//   stepaudio::Understanding u = stepaudio::understand(c, audio::decode_file("call.m4a"), {});
//
// What differs from local inference (docs/REMOTE.md):
// - Labels: a chat server gives log-probabilities of generated tokens only, not of a given
//   answer, so each label is scored by its answer's FIRST token among the top_logprobs of a
//   one-token answer (Understanding::label_scoring "first_token"); a label whose first token is
//   not among them gets the least listed logprob (an upper bound). A backend that gives no
//   logprobs: the answer is generated and matched to a label, scores one-hot ("one_hot").
// - Confidence: from the logprobs of the transcript's tokens, as locally; 0 with
//   confidence_measured = false when the backend gives none. Tokens whose bytes look like an
//   audio or tts token ("<audio_...>", "<tts_...>") are not counted, as locally.
// - The repetition guard runs on the streamed tokens (their bytes stand for their ids) and ends
//   the stream when a loop is found; without per-token logprobs it cannot run.
// - Text summaries of long transcripts estimate tokens as bytes / 3 (no tokenizer on a gateway).
//
// Thread-safety: understand() runs on the calling thread (a chunk's questions go out concurrently
// from helper threads) and may be called concurrently; the completer must be thread-safe.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "stepaudio/chat.h"
#include "stepaudio/tasks.h"

namespace stepaudio {

class ChatCompleter {
 public:
  virtual ~ChatCompleter() = default;
  virtual std::string model_id() const = 0;
  // Runs one chat generation. Audio parts are 16 kHz PCM (the completer encodes them for its
  // wire). on_delta gets the text and the tokens' logprobs as they are generated (the deltas add
  // up to the result; logprobs only when options.logprobs and the backend gives them: a backend
  // without logprobs leaves ChatResult::logprobs empty). `stop` (optional, e.g. raised from
  // on_delta) ends the generation early without error: the result holds what came, finish_reason
  // "stop". Throws Error(canceled) when *cancel is raised, and the backend's errors as Error
  // (Errc::backend_unavailable, Errc::backend_error, or the input error the backend names).
  virtual ChatResult complete(const std::vector<ChatMessage>& messages, const ChatOptions& options,
                              const ChatDeltaFn& on_delta, const std::atomic<bool>* cancel,
                              const std::atomic<bool>* stop = nullptr) const = 0;
};

// understand() of tasks.h with every model call a chat request to `completer` (see above).
// Throws Error(too_long) over max_audio_seconds, Error(canceled), and the completer's errors.
Understanding understand(const ChatCompleter& completer, audio::DecodedAudio decoded,
                         const TaskOptions& options, const TaskProgressFn& progress = {},
                         const std::atomic<bool>* cancel = nullptr);

// Label scores from the alternatives of an answer's first token (bytes and logprob, best first):
// each label's answer text (LabelQuestion::text) takes the longest alternative that is a
// non-empty prefix of it, else the least logprob listed; normalized over the set. nullopt when
// `top` is empty.
std::optional<LabelScores> score_labels_first_token(
    const LabelQuestion& q, const std::vector<ChatTokenLogprob::Alternative>& top);

// The label a generated answer names (the fallback without logprobs): the label whose answer
// text, or name, the answer starts with (case and surrounding space and punctuation ignored),
// else the one it mentions first; nullopt when none. Scores one-hot on it.
std::optional<LabelScores> match_label(const LabelQuestion& q, const std::string& answer);

// A generated token of a remote backend counts as transcript text unless its bytes are an audio
// or tts control token ("<audio_...>", "<tts_...>"), as Tokenizer::first_non_text_id() splits.
bool is_text_token(const std::string& bytes);

}  // namespace stepaudio
