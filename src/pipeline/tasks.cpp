// understand(): the tasks of issue 6 on one recording (see include/stepaudio/tasks.h for the
// sharing and memory design). Per group of speech chunks:
//   prefix  = <|BOT|>system\n{system}<|EOT|><|BOT|>human\n{audio chunks}<|EOT|>   (prefilled once)
//   branches: transcription  = prefix + <|BOT|>assistant\n (the official ASR prompt, 1-chunk group)
//             emotion/urgency = prefix + <|BOT|>human\n{question}<|EOT|><|BOT|>assistant\n, labels
//                               scored in one batched pass; the reason continues the urgency branch
//             tone, summary   = prefix + their question, generated
// A group with several chunks transcribes each chunk with its own one-chunk prompt (segments keep
// chunk times) from the rows already encoded; its summary is then a text-only pass over the
// transcript, hierarchical when the transcript exceeds the context.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "pipeline/guards.h"
#include "stepaudio/error.h"
#include "stepaudio/npy.h"
#include "stepaudio/prompt.h"
#include "stepaudio/session.h"
#include "stepaudio/tasks.h"
#include "stepaudio/tokenizer.h"

namespace stepaudio {

Task parse_task(const std::string& name) {
  if (name == "transcribe") return Task::transcribe;
  if (name == "summarize") return Task::summarize;
  if (name == "analyze") return Task::analyze;
  if (name == "transcribe_and_summarize") return Task::transcribe_and_summarize;
  throw Error(Errc::invalid_argument, "unknown task \"" + name +
                                          "\" (transcribe, summarize, analyze, "
                                          "transcribe_and_summarize)");
}

const char* task_name(Task t) {
  switch (t) {
    case Task::transcribe:
      return "transcribe";
    case Task::summarize:
      return "summarize";
    case Task::analyze:
      return "analyze";
    case Task::transcribe_and_summarize:
      return "transcribe_and_summarize";
  }
  return "?";
}

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string replace_all(std::string s, const std::string& key, const std::string& value) {
  for (size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size()))
    s.replace(at, key.size(), value);
  return s;
}

std::string language_name(const std::string& code) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"zh", "Chinese"},    {"en", "English"}, {"ja", "Japanese"}, {"ko", "Korean"},
      {"fr", "French"},     {"de", "German"},  {"es", "Spanish"},  {"it", "Italian"},
      {"pt", "Portuguese"}, {"ru", "Russian"}, {"ar", "Arabic"},   {"nl", "Dutch"},
      {"he", "Hebrew"},     {"el", "Greek"},   {"th", "Thai"},     {"hi", "Hindi"}};
  for (auto& [c, n] : kNames)
    if (code == c) return n;
  return "the language of the recording";
}

std::string new_request_id() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  const uint64_t x = (uint64_t(rd()) << 32) ^ rd() ^ (counter++ << 48);
  char buf[32];
  std::snprintf(buf, sizeof buf, "req_%016llx", static_cast<unsigned long long>(x));
  return buf;
}

struct ChunkInfo {
  audio::Chunk range;
  size_t patches = 0;
  bool speech = false;
};

// One request's state: the engine, the options and the running result.
class Runner {
 public:
  Runner(const Engine& e, const TaskOptions& o, Understanding& u, const TaskProgressFn& progress,
         const std::atomic<bool>* cancel)
      : e_(e),
        tok_(*e.tokenizer),
        o_(o),
        p_(o.prompts ? *o.prompts : default_prompts()),
        u_(u),
        progress_(progress),
        cancel_(cancel) {}

  void run(std::vector<float> pcm);

 private:
  bool wants_transcript() const { return o_.task != Task::analyze; }
  bool wants_summary() const {
    return o_.task == Task::summarize || o_.task == Task::transcribe_and_summarize;
  }
  bool wants_analysis() const {
    return o_.task == Task::analyze || o_.task == Task::transcribe_and_summarize;
  }
  void report(const std::string& stage) {
    if (progress_) progress_({stage, total_work_ ? 100.0 * double(done_work_) / total_work_ : 0});
  }
  void check_cancel() const {
    if (cancel_ && cancel_->load(std::memory_order_relaxed))
      throw Error(Errc::canceled, "request canceled");
  }

  std::vector<int32_t> render(const std::vector<text::Message>& msgs, bool open_assistant) const {
    return text::render_prompt(tok_, msgs, open_assistant).ids;
  }
  // "<|BOT|>human\n{q}<|EOT|><|BOT|>assistant\n", or just the assistant header when q is empty.
  std::vector<int32_t> question_suffix(const std::string& q) const {
    if (q.empty()) return render({}, true);
    return render({text::Message::text("human", q, /*trusted=*/false)}, true);
  }
  void append(DecodeSession& s, const std::vector<int32_t>& ids,
              const std::vector<AudioEmbedding>& audio = {}) {
    const auto t0 = Clock::now();
    s.append(ids, audio);
    u_.prefill_ms += ms_since(t0);
    u_.prompt_tokens += ids.size();
  }
  struct Generated {
    std::vector<int32_t> text_ids;
    double sum_logprob = 0;
    bool repetition = false;
    std::string text;
  };
  Generated generate(DecodeSession& s, size_t max_tokens);
  LabelScores score_labels(DecodeSession& branch, const LabelQuestion& q, const std::string& name,
                           const std::vector<int32_t>& prompt);
  std::string summarize_text(const std::string& transcript, int depth);
  void enforce_summary();

  const Engine& e_;
  const text::Tokenizer& tok_;
  const TaskOptions& o_;
  const PromptSet& p_;
  Understanding& u_;
  const TaskProgressFn& progress_;
  const std::atomic<bool>* cancel_;
  size_t total_work_ = 0, done_work_ = 0;
  std::string summary_lang_;
  nlohmann::json dump_scores_ = nlohmann::json::array();
  size_t group_index_ = 0;

 public:
  ~Runner() {
    if (o_.dump_dir.empty()) return;
    try {
      std::filesystem::create_directories(o_.dump_dir);
      std::FILE* f =
          std::fopen((std::filesystem::path(o_.dump_dir) / "label_scores.json").c_str(), "w");
      if (!f) return;
      const std::string s = dump_scores_.dump(1);
      std::fwrite(s.data(), 1, s.size(), f);
      std::fclose(f);
    } catch (...) {  // a debugging aid must not turn a result into a failure
    }
  }
};

Runner::Generated Runner::generate(DecodeSession& s, size_t max_tokens) {
  check_cancel();
  pipeline::RepetitionDetector rep(o_.repeat_ngram_max, o_.repeat_count, o_.repeat_single);
  SessionGenerateOptions g;
  g.max_new_tokens = std::min(max_tokens, s.capacity() + 1 - s.pos());
  g.cancel = cancel_;
  bool loop = false;
  g.on_token = [&](int32_t id, float) {
    if (rep.push(id)) loop = true;
    return !loop;
  };
  u_.prompt_tokens_unshared += s.pos();  // a separate run would prefill this whole prompt
  GenerateResult r = s.generate(g);
  u_.generate_ms += r.generate_ms;
  u_.completion_tokens += r.tokens.size();
  Generated out;
  out.repetition = loop;
  size_t keep = loop ? rep.keep() : r.tokens.size();
  for (size_t i = 0; i < keep; ++i) {
    const int32_t id = r.tokens[i];
    if (id < tok_.first_non_text_id() && id != tok_.eos_id()) {
      out.text_ids.push_back(id);
      out.sum_logprob += r.logprobs[i];
    }
  }
  out.text = tok_.decode(out.text_ids, /*skip_special=*/true);
  if (loop) u_.repetition_detected = true;
  return out;
}

LabelScores Runner::score_labels(DecodeSession& branch, const LabelQuestion& q,
                                 const std::string& name, const std::vector<int32_t>& prompt) {
  std::vector<std::vector<int32_t>> cands;
  for (const std::string& l : q.labels) {
    std::vector<int32_t> ids = tok_.encode(q.text.at(l));
    ids.push_back(tok_.eos_id());  // a complete answer, not a prefix of a longer one
    cands.push_back(std::move(ids));
  }
  // Decoder rows of the batched pass: the distinct proper prefixes (the trie's inner nodes).
  std::set<std::vector<int32_t>> inner;
  for (const auto& c : cands) {
    for (size_t k = 1; k < c.size(); ++k) inner.emplace(c.begin(), c.begin() + k);
    u_.prompt_tokens_unshared += branch.pos() + c.size() - 1;  // one run per label
  }
  u_.prompt_tokens += inner.size();
  const auto t0 = Clock::now();
  std::vector<ContinuationScore> sc = branch.score(cands);
  u_.prefill_ms += ms_since(t0);
  std::vector<double> lp;
  for (const auto& c : sc) lp.push_back(c.logprob);
  std::vector<double> p = normalize_logprobs(lp);
  LabelScores out;
  for (size_t i = 0; i < q.labels.size(); ++i) out.scores[q.labels[i]] = p[i];
  out.label = q.labels[std::max_element(p.begin(), p.end()) - p.begin()];
  if (!o_.dump_dir.empty())
    dump_scores_.push_back({{"name", name},
                            {"group", group_index_},
                            {"labels", q.labels},
                            {"prompt_ids", prompt},
                            {"candidates", cands},
                            {"logprobs", lp},
                            {"probs", p}});
  return out;
}

// Text-only summary: one pass when the transcript fits the context, else summaries of pieces that
// fit, joined and summarized again (each level shrinks the text to ~target_length per piece).
std::string Runner::summarize_text(const std::string& transcript, int depth) {
  const bool chars = pipeline::counts_characters(summary_lang_);
  const std::string unit = chars ? "characters" : "words";
  const size_t cap = chars ? o_.target_length * 3 / 2 + 8 : o_.target_length * 2 + 8;
  auto question = [&](const std::string& t) {
    std::string q = replace_all(p_.summarize_text_question, "{target_length}",
                                std::to_string(o_.target_length));
    q = replace_all(q, "{unit}", unit);
    q = replace_all(q, "{language}", language_name(summary_lang_));
    return replace_all(q, "{transcript}", t);
  };
  const size_t ctx = o_.max_context ? o_.max_context : model_info(*e_.model).max_positions;
  std::vector<int32_t> ids = render({text::Message::text("system", p_.summarize_text_system, false),
                                     text::Message::text("human", question(transcript), false)},
                                    true);
  if (ids.size() + cap <= ctx || depth >= 6) {
    if (ids.size() + cap > ctx) {  // give up on hierarchy: keep the head that fits
      ids.resize(ctx > cap + 8 ? ctx - cap - 8 : 0);
      std::vector<int32_t> tail = render({}, true);
      ids.insert(ids.end(), tail.begin(), tail.end());
    }
    DecodeSession s(e_.model, ids.size() + cap, o_.threads);
    append(s, ids);
    return generate(s, cap).text;
  }
  u_.hierarchical_summary = true;
  // Split on whitespace-separated pieces sized to half the context (in tokens, measured).
  const size_t budget = ctx / 2;
  std::vector<std::string> pieces(1);
  size_t piece_tokens = 0;
  std::vector<std::string> words;
  for (size_t i = 0; i < transcript.size();) {  // split after spaces and CJK sentence ends
    size_t j = transcript.find_first_of(" \n", i);
    j = j == std::string::npos ? transcript.size() : j + 1;
    words.push_back(transcript.substr(i, j - i));
    i = j;
  }
  for (const std::string& w : words) {
    size_t n = tok_.encode(w).size();
    if (piece_tokens + n > budget && !pieces.back().empty())
      pieces.emplace_back(), piece_tokens = 0;
    pieces.back() += w;
    piece_tokens += n;
  }
  std::string joined;
  for (const std::string& piece : pieces) {
    check_cancel();
    joined += (joined.empty() ? "" : " ") + summarize_text(piece, depth + 1);
  }
  return summarize_text(joined, depth + 1);
}

void Runner::enforce_summary() {
  const bool chars = pipeline::counts_characters(summary_lang_);
  u_.summary_unit = chars ? "characters" : "words";
  // Leading/trailing whitespace is not part of the answer.
  auto b = u_.summary.find_first_not_of(" \n\t"), e = u_.summary.find_last_not_of(" \n\t");
  u_.summary = b == std::string::npos ? "" : u_.summary.substr(b, e - b + 1);
  if (pipeline::text_length(u_.summary, chars) > o_.target_length) {
    u_.summary = pipeline::truncate_text(u_.summary, o_.target_length, chars);
    u_.summary_truncated = true;
  }
  u_.summary_length = pipeline::text_length(u_.summary, chars);
  u_.summary_language = pipeline::detect_language(u_.summary);
  u_.summary_language_mismatch = u_.summary_language != "und" && summary_lang_ != "und" &&
                                 u_.summary_language != summary_lang_;
}

void Runner::run(std::vector<float> pcm) {
  const Model& model = *e_.model;
  const ModelInfo info = model_info(model);
  u_.duration_s = double(pcm.size()) / audio::kSampleRate;

  // Chunks and the energy check, before any model work.
  std::vector<ChunkInfo> chunks;
  for (const audio::Chunk& c : audio::plan_chunks(pcm.data(), pcm.size(), o_.chunking)) {
    ChunkInfo ci{c, size_t(audio::audio_patch_tokens(audio::mel_frames(c.end - c.begin))), false};
    ci.speech = ci.patches > 0 && pipeline::active_seconds(pcm.data() + c.begin, c.end - c.begin,
                                                           o_.speech_dbfs) >= o_.min_speech_seconds;
    chunks.push_back(ci);
  }
  // Groups of consecutive speech chunks whose prompt fits the context with room for the answers.
  const size_t ctx = o_.max_context ? o_.max_context : info.max_positions;
  const size_t reserve = 256 + std::max({o_.max_transcript_tokens, o_.target_length * 2 + 8,
                                         o_.max_reason_tokens + 64});
  std::vector<std::vector<size_t>> groups;
  size_t group_tokens = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!chunks[i].speech) continue;
    const size_t need = chunks[i].patches + 2;
    if (need + reserve + 64 > ctx)
      throw Error(Errc::invalid_argument, "the model's context (" + std::to_string(ctx) +
                                              " positions) cannot hold one audio chunk");
    if (groups.empty() || group_tokens + need + reserve + 64 > ctx) {
      groups.emplace_back();
      group_tokens = 0;
    }
    groups.back().push_back(i);
    group_tokens += need;
  }
  u_.groups = groups.size();
  u_.no_speech = groups.empty();
  for (const ChunkInfo& c : chunks)
    if (!c.speech) {
      Segment seg;
      seg.start = c.range.start_s();
      seg.end = c.range.end_s();
      seg.no_speech = true;
      u_.segments.push_back(seg);
    }
  if (u_.no_speech) {
    // Nothing for the model to hear: report that instead of asking it (it would hallucinate).
    u_.emotion.label = "neutral";
    for (const auto& l : p_.emotion.labels) u_.emotion.scores[l] = l == "neutral" ? 1.0 : 0.0;
    u_.urgency.label = "low";
    for (const auto& l : p_.urgency.labels) u_.urgency.scores[l] = l == "low" ? 1.0 : 0.0;
    u_.tone = wants_analysis() ? "silent" : "";
    u_.urgency_reason = wants_analysis() ? "No speech was detected in the recording." : "";
    report("done");
    return;
  }

  total_work_ = 0;
  for (const auto& g : groups) total_work_ += 2 * g.size() + (wants_analysis() ? 4 : 0) + 1;
  total_work_ += wants_summary() ? 1 : 0;

  struct GroupAnalysis {
    LabelScores emotion, urgency;
    std::string tone, reason;
    double weight = 0;
  };
  std::vector<GroupAnalysis> analyses;
  const std::vector<int32_t> assistant_open = render({}, true);
  std::string group_summary;

  for (const auto& g : groups) {
    check_cancel();
    // Mel + encode this group's chunks (freed at the end of the iteration).
    std::vector<MelChunk> mels;
    auto t0 = Clock::now();
    for (size_t ci : g) {
      const audio::Chunk& c = chunks[ci].range;
      audio::LogMel mel = audio::log_mel(pcm.data() + c.begin, c.end - c.begin);
      if (!o_.dump_dir.empty()) {
        std::filesystem::create_directories(o_.dump_dir);
        write_npy(
            (std::filesystem::path(o_.dump_dir) / ("mel_" + std::to_string(ci) + ".npy")).string(),
            mel.data.data(), {size_t(audio::kNumMels), size_t(mel.frames)});
      }
      mels.push_back({std::move(mel.data), size_t(audio::kNumMels), size_t(mel.frames)});
    }
    u_.mel_ms += ms_since(t0);
    report("mel");
    t0 = Clock::now();
    std::vector<AudioEmbedding> audio = encode_audio(model, mels, o_.threads, {}, cancel_);
    mels.clear();
    mels.shrink_to_fit();
    u_.encode_ms += ms_since(t0);
    done_work_ += g.size();
    report("encode");
    for (const auto& a : audio) u_.audio_tokens += a.n_rows;

    std::vector<text::Part> parts;
    for (size_t ci : g) parts.push_back(text::Part::audio(chunks[ci].patches));
    const std::vector<int32_t> prefix = render(
        {text::Message::text("system", p_.system), text::Message::list("human", parts)}, false);
    DecodeSession shared(e_.model, prefix.size(), o_.threads);
    append(shared, prefix, audio);

    // Transcription: per chunk (segments keep the chunk times).
    if (wants_transcript()) {
      const std::vector<int32_t> suffix = question_suffix(p_.transcribe_question);
      for (size_t k = 0; k < g.size(); ++k) {
        const ChunkInfo& c = chunks[g[k]];
        const size_t cap_tokens = o_.max_transcript_tokens;
        DecodeSession branch = [&] {
          if (g.size() == 1) return shared.fork(shared.pos() + suffix.size() + cap_tokens);
          const std::vector<int32_t> one =
              render({text::Message::text("system", p_.system),
                      text::Message::list("human", {text::Part::audio(c.patches)})},
                     false);
          DecodeSession s(e_.model, one.size() + suffix.size() + cap_tokens, o_.threads);
          append(s, one, {audio[k]});
          return s;
        }();
        append(branch, suffix);
        Generated t = generate(branch, cap_tokens);
        Segment seg;
        seg.start = c.range.start_s();
        seg.end = c.range.end_s();
        seg.text = t.text;
        seg.repetition_stopped = t.repetition;
        seg.tokens = t.text_ids.size();
        seg.sum_logprob = t.sum_logprob;
        seg.confidence = seg.tokens ? std::exp(seg.sum_logprob / double(seg.tokens)) : 0.0;
        u_.segments.push_back(seg);
        done_work_ += 1;
        report("transcribe");
      }
    } else {
      done_work_ += g.size();
    }
    audio.clear();
    audio.shrink_to_fit();

    if (wants_analysis()) {
      check_cancel();
      GroupAnalysis a;
      for (size_t ci : g) a.weight += double(chunks[ci].range.end - chunks[ci].range.begin);
      // Emotion and urgency: the question after the audio, labels scored in one batched pass.
      std::vector<int32_t> scored_prompt;  // prefix + question, for the dump
      auto label_branch = [&](const LabelQuestion& q, size_t extra) {
        const std::vector<int32_t> suffix = question_suffix(q.question);
        scored_prompt = prefix;
        scored_prompt.insert(scored_prompt.end(), suffix.begin(), suffix.end());
        size_t label_tokens = 0;
        for (const auto& l : q.labels) label_tokens += tok_.encode(q.text.at(l)).size() + 1;
        DecodeSession b = shared.fork(shared.pos() + suffix.size() + label_tokens + extra);
        append(b, suffix);
        return b;
      };
      {
        DecodeSession b = label_branch(p_.emotion, 0);
        a.emotion = score_labels(b, p_.emotion, "emotion", scored_prompt);
      }
      done_work_ += 1;
      report("analyze");
      {
        std::string reason_q = p_.urgency_reason_question;
        const size_t reason_room = tok_.encode(reason_q).size() + 32 + o_.max_reason_tokens;
        DecodeSession b = label_branch(p_.urgency, reason_room);
        a.urgency = score_labels(b, p_.urgency, "urgency", scored_prompt);
        done_work_ += 1;
        report("analyze");
        // The reason continues the urgency branch with the chosen answer in place.
        std::vector<int32_t> cont = tok_.encode(p_.urgency.text.at(a.urgency.label));
        cont.push_back(tok_.eos_id());
        const std::vector<int32_t> q =
            question_suffix(replace_all(reason_q, "{urgency}", a.urgency.label));
        cont.insert(cont.end(), q.begin(), q.end());
        append(b, cont);
        a.reason = generate(b, o_.max_reason_tokens).text;
        done_work_ += 1;
        report("analyze");
      }
      {
        const std::vector<int32_t> suffix = question_suffix(p_.tone_question);
        DecodeSession b = shared.fork(shared.pos() + suffix.size() + o_.max_tone_tokens);
        append(b, suffix);
        a.tone = generate(b, o_.max_tone_tokens).text;
        done_work_ += 1;
        report("analyze");
      }
      analyses.push_back(std::move(a));
    }

    // Summary with the audio present, when the whole recording is this one group.
    if (wants_summary() && groups.size() == 1) {
      std::string transcript;
      for (const Segment& s : u_.segments) transcript += s.text;
      summary_lang_ = o_.language != "auto" ? o_.language : pipeline::detect_language(transcript);
      const bool chars = pipeline::counts_characters(summary_lang_);
      const size_t cap = chars ? o_.target_length * 3 / 2 + 8 : o_.target_length * 2 + 8;
      std::string q =
          replace_all(p_.summarize_question, "{target_length}", std::to_string(o_.target_length));
      q = replace_all(q, "{unit}", chars ? "characters" : "words");
      q = replace_all(q, "{language}", language_name(summary_lang_));
      const std::vector<int32_t> suffix = question_suffix(q);
      DecodeSession b = shared.fork(shared.pos() + suffix.size() + cap);
      append(b, suffix);
      group_summary = generate(b, cap).text;
    }
    done_work_ += 1;
    report("group");
    ++group_index_;
  }

  // Results over the whole recording.
  std::sort(u_.segments.begin(), u_.segments.end(),
            [](const Segment& a, const Segment& b) { return a.start < b.start; });
  size_t n_tokens = 0;
  double sum_lp = 0;
  for (const Segment& s : u_.segments) {
    if (s.text.empty()) continue;
    if (!u_.transcription.empty() &&
        !pipeline::counts_characters(pipeline::detect_language(s.text)))
      u_.transcription += ' ';
    u_.transcription += s.text;
    n_tokens += s.tokens;
    sum_lp += s.sum_logprob;
  }
  // Overall confidence: exp of the mean log-probability over every transcript token.
  u_.confidence = n_tokens ? std::exp(sum_lp / double(n_tokens)) : 0.0;
  u_.language = pipeline::detect_language(u_.transcription);

  if (!analyses.empty()) {
    // Duration-weighted mean of the groups' label distributions.
    double wsum = 0;
    for (const auto& a : analyses) wsum += a.weight;
    auto combine = [&](const LabelQuestion& q, auto pick) {
      LabelScores out;
      for (const auto& l : q.labels) {
        double p = 0;
        for (const auto& a : analyses) p += a.weight / wsum * pick(a).scores.at(l);
        out.scores[l] = p;
      }
      out.label = std::max_element(out.scores.begin(), out.scores.end(), [](auto& x, auto& y) {
                    return x.second < y.second;
                  })->first;
      return out;
    };
    u_.emotion =
        combine(p_.emotion, [](const GroupAnalysis& a) -> const LabelScores& { return a.emotion; });
    u_.urgency =
        combine(p_.urgency, [](const GroupAnalysis& a) -> const LabelScores& { return a.urgency; });
    u_.urgency_score = u_.urgency.scores["medium"] * 0.5 + u_.urgency.scores["high"];
    // Tone and reason of the group that speaks most for the final urgency label.
    const GroupAnalysis* best = &analyses[0];
    for (const auto& a : analyses)
      if (a.urgency.scores.at(u_.urgency.label) > best->urgency.scores.at(u_.urgency.label))
        best = &a;
    u_.tone = best->tone;
    u_.urgency_reason = best->reason;
  }

  if (wants_summary()) {
    if (summary_lang_.empty()) summary_lang_ = o_.language != "auto" ? o_.language : u_.language;
    if (groups.size() == 1) {
      u_.summary = group_summary;
    } else {
      report("summarize");
      u_.summary = summarize_text(u_.transcription, 0);
    }
    done_work_ += 1;
    enforce_summary();
  }
  done_work_ = total_work_;
  report("done");
}
}  // namespace

Understanding understand(const Engine& engine, audio::DecodedAudio decoded,
                         const TaskOptions& options, const TaskProgressFn& progress,
                         const std::atomic<bool>* cancel) {
  const auto t0 = Clock::now();
  if (decoded.duration_s() > options.max_audio_seconds)
    throw Error(Errc::too_long, "the recording lasts " + std::to_string(decoded.duration_s()) +
                                    " s, over the maximum of " +
                                    std::to_string(options.max_audio_seconds) + " s");
  const std::string& lang = options.language;
  if (lang != "auto" && !(lang.size() == 2 && std::islower(static_cast<unsigned char>(lang[0])) &&
                          std::islower(static_cast<unsigned char>(lang[1]))))
    throw Error(
        Errc::invalid_argument,
        "language must be \"auto\" or an ISO 639-1 code such as \"en\", not \"" + lang + "\"");
  if (options.target_length == 0)
    throw Error(Errc::invalid_argument, "target_length must be at least 1");
  Understanding u;
  u.id = new_request_id();
  u.model = engine.model_id;
  u.task = options.task;
  const PromptSet& prompts = options.prompts ? *options.prompts : default_prompts();
  u.prompts_source = prompts.source;
  u.prompts_version = prompts.version;
  // 16 kHz sources are taken over without a copy; others are resampled and the source freed.
  std::vector<float> pcm = decoded.sample_rate == audio::kSampleRate ? std::move(decoded.samples)
                                                                     : audio::to_16k(decoded);
  std::vector<float>().swap(decoded.samples);
  Runner(engine, options, u, progress, cancel).run(std::move(pcm));
  u.total_ms = ms_since(t0);
  return u;
}

}  // namespace stepaudio
