// stepaudio::chat (include/stepaudio/chat.h): messages -> log-mels -> rendered prompt -> encoder ->
// prefill -> one generated branch in the scheduler's batch, its text released by a ChatTextStream.
#include "stepaudio/chat.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "model/sampler.h"
#include "pipeline/chat_text.h"
#include "stepaudio/error.h"
#include "stepaudio/prompt.h"
#include "stepaudio/tokenizer.h"
#include "text/utf8.h"

namespace stepaudio {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed))
    throw Error(Errc::canceled, "request canceled");
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", s);
  return buf;
}

// The messages as the template renders them; each audio part's log-mel goes to `mels` (prompt
// order) and its PCM is freed.
std::vector<text::Message> to_template(std::vector<ChatMessage>& messages,
                                       std::vector<MelChunk>& mels, ChatResult& res) {
  std::vector<text::Message> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    ChatMessage& m = messages[i];
    if (m.role.empty()) throw Error(Errc::invalid_argument, "a message without a role");
    if (m.form == ChatMessage::Form::open) {
      if (!m.parts.empty())
        throw Error(Errc::invalid_argument, "an open message (no content) holds parts");
      out.push_back(text::Message::open(m.role));
      continue;
    }
    text::Message t;
    t.role = m.role;
    t.form = m.form == ChatMessage::Form::string ? text::Message::Form::string
                                                 : text::Message::Form::list;
    t.eot = m.eot;
    for (ChatPart& p : m.parts) {
      if (p.kind == ChatPart::Kind::text) {
        t.parts.push_back(text::Part::user(std::move(p.text)));  // added tokens never match
        continue;
      }
      const std::string where = "message " + std::to_string(i) + ": an audio part";
      const double seconds = double(p.pcm16k.size()) / audio::kSampleRate;
      if (p.pcm16k.empty()) throw Error(Errc::invalid_argument, where + " is empty");
      if (p.pcm16k.size() > size_t(kMaxChatAudioSeconds * audio::kSampleRate))
        throw Error(Errc::invalid_argument, where + " holds " + seconds_text(seconds) +
                                                " s; one part takes at most " +
                                                seconds_text(kMaxChatAudioSeconds) +
                                                " s (split longer audio into several parts)");
      audio::LogMel mel = audio::log_mel(p.pcm16k.data(), p.pcm16k.size());
      const size_t patches = size_t(audio::audio_patch_tokens(mel.frames));
      if (patches == 0)
        throw Error(Errc::invalid_argument,
                    where + " of " + seconds_text(seconds) + " s is too short for the encoder");
      std::vector<float>().swap(p.pcm16k);
      res.audio_seconds += seconds;
      res.audio_tokens += patches;
      mels.push_back({std::move(mel.data), size_t(audio::kNumMels), size_t(mel.frames)});
      t.parts.push_back(text::Part::audio(patches));
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::string lossy(std::string_view bytes) {
  std::string out;
  text::append_utf8_lossy(out, bytes, /*hold_tail=*/false);
  return out;
}

// A model's vocabulary may be padded past the tokenizer's last token (Step-Audio-2-mini has 158720
// rows): such an id, however improbable, gets no bytes rather than failing the request.
std::string bytes_of(const text::Tokenizer& tok, int32_t id) {
  if (id < 0 || size_t(id) >= tok.vocab_size()) return {};
  try {
    return std::string(tok.token_bytes(id));
  } catch (const Error&) {
    return {};
  }
}

ChatTokenLogprob token_logprob(const text::Tokenizer& tok, const DecodeSession& s, int32_t id,
                               size_t top) {
  ChatTokenLogprob e;
  e.id = id;
  e.bytes = bytes_of(tok, id);
  e.text = lossy(e.bytes);
  e.logprob = s.logprob(id);
  for (const TokenLogprob& t : top_logprobs(s.logits(), top)) {
    std::string b = bytes_of(tok, t.id);
    e.top.push_back({t.id, b, lossy(b), t.logprob});
  }
  return e;
}

// The one branch's end, handed from the scheduler's thread to the caller.
struct Done {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  GenerateResult result;
  std::exception_ptr error;
};

void wait_done(Scheduler& sched, Done& d) {
  if (sched.threaded()) {
    std::unique_lock<std::mutex> lk(d.mu);
    d.cv.wait(lk, [&] { return d.done; });
    return;
  }
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(d.mu);
      if (d.done) return;
    }
    if (!sched.drive()) {
      std::lock_guard<std::mutex> lk(d.mu);
      if (d.done) return;
      throw Error(Errc::internal, "chat: waiting for a branch that is not generating");
    }
  }
}

}  // namespace

ChatResult chat(const Engine& engine, std::vector<ChatMessage> messages, const ChatOptions& o,
                const ChatDeltaFn& on_delta, const std::atomic<bool>* cancel) {
  if (messages.empty()) throw Error(Errc::invalid_argument, "chat needs at least one message");
  if (o.top_logprobs > 0 && !o.logprobs)
    throw Error(Errc::invalid_argument, "top_logprobs needs logprobs");
  model::Sampler validate(o.sampling);  // bad sampling options fail before any model work
  (void)validate;
  const text::Tokenizer& tok = *engine.tokenizer;
  pipeline::ChatTextStream stream(tok, o.stop);
  check_cancel(cancel);

  ChatResult res;
  auto t0 = Clock::now();
  std::vector<MelChunk> mels;
  const std::vector<text::Message> rendered = to_template(messages, mels, res);
  messages.clear();
  res.mel_ms = ms_since(t0);
  // A last turn left open (no content, or no <|EOT|>) is the one the model continues.
  const bool last_closed = rendered.back().form != text::Message::Form::open && rendered.back().eot;
  const text::RenderedPrompt prompt =
      text::render_prompt(tok, rendered, o.add_generation_prompt && last_closed);
  res.prompt_tokens = prompt.ids.size();

  const size_t limit = model_info(*engine.model).max_positions;
  const size_t ctx = o.max_context ? std::min(o.max_context, limit) : limit;
  if (prompt.ids.size() >= ctx)
    throw Error(Errc::invalid_argument, "the messages take " + std::to_string(prompt.ids.size()) +
                                            " positions; the context holds " + std::to_string(ctx) +
                                            " (prompt and answer)");
  const size_t max_new = o.max_new_tokens ? o.max_new_tokens : ctx - prompt.ids.size();
  if (prompt.ids.size() + max_new > ctx)
    throw Error(Errc::invalid_argument, "the context holds " + std::to_string(ctx) +
                                            " positions: " + std::to_string(prompt.ids.size()) +
                                            " in the messages + " + std::to_string(max_new) +
                                            " to generate do not fit");

  std::unique_ptr<Scheduler> own;
  Scheduler* sched = o.scheduler;
  if (!sched) {
    own = std::make_unique<Scheduler>(SchedulerOptions{.threaded = false});
    sched = own.get();
  }
  std::vector<AudioEmbedding> audio;
  if (!mels.empty()) {
    t0 = Clock::now();
    // Each encoder block is a pause point: the other branches of the batch keep decoding.
    sched->run_yielding([&](const std::function<void()>& yield) {
      audio = encode_audio(*engine.model, mels, o.threads, {}, cancel, yield);
    });
    mels.clear();
    res.encode_ms = ms_since(t0);
  }
  check_cancel(cancel);
  DecodeSession session(engine.model, prompt.ids.size() + max_new, o.threads);
  t0 = Clock::now();
  sched->append(session, prompt.ids, audio);
  audio.clear();
  res.prefill_ms = ms_since(t0);
  check_cancel(cancel);

  // The branch's callbacks run on the scheduler's thread; this thread touches `res` and the
  // stream again only after `done` (under its mutex).
  const int32_t eos = tok.eos_id();
  std::vector<ChatTokenLogprob> unsent;  // logprobs of tokens whose text is not released yet
  SessionGenerateOptions g;
  g.max_new_tokens = max_new;
  g.sampling = o.sampling;
  g.cancel = cancel;
  g.on_token = [&](int32_t id, float) {
    if (id == eos) return true;  // the branch ends on it; it is neither text nor a logprob
    if (o.logprobs) unsent.push_back(token_logprob(tok, session, id, o.top_logprobs));
    ChatDelta d;
    d.text = stream.push(id);
    if (!d.text.empty() || stream.stopped()) {
      res.logprobs.insert(res.logprobs.end(), unsent.begin(), unsent.end());
      d.logprobs = std::move(unsent);
      unsent.clear();
      if (on_delta && (!d.text.empty() || !d.logprobs.empty())) on_delta(d);
    }
    return !stream.stopped();
  };
  Done done;
  sched->generate(session, g, [&done](GenerateResult r, std::exception_ptr e) {
    std::lock_guard<std::mutex> lk(done.mu);
    done.result = std::move(r);
    done.error = e;
    done.done = true;
    done.cv.notify_all();
  });
  wait_done(*sched, done);
  if (done.error) std::rethrow_exception(done.error);

  ChatDelta tail;
  tail.text = stream.finish();
  res.logprobs.insert(res.logprobs.end(), unsent.begin(), unsent.end());
  tail.logprobs = std::move(unsent);
  if (on_delta && (!tail.text.empty() || !tail.logprobs.empty())) on_delta(tail);
  res.text = stream.text();
  res.tokens = std::move(done.result.tokens);
  res.completion_tokens = res.tokens.size();
  res.finish_reason = stream.stopped() || done.result.stopped_at_eos ? "stop" : "length";
  res.stop_string = stream.stop_string();
  res.generate_ms = done.result.generate_ms;
  return res;
}

}  // namespace stepaudio
