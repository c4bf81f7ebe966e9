// Label scoring for a remote backend (stepaudio/remote.h): from a one-token answer's
// top_logprobs, or, without logprobs, from the generated answer's words.
#include <algorithm>
#include <cctype>
#include <limits>

#include "stepaudio/remote.h"
#include "stepaudio/session.h"

namespace stepaudio {

namespace {
LabelScores normalized(const LabelQuestion& q, const std::vector<double>& lp) {
  const std::vector<double> p = normalize_logprobs(lp);
  LabelScores out;
  for (size_t i = 0; i < q.labels.size(); ++i) out.scores[q.labels[i]] = p[i];
  out.label = q.labels[size_t(std::max_element(p.begin(), p.end()) - p.begin())];
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The answer without leading space/punctuation, lower-cased (ASCII).
std::string trimmed(const std::string& s) {
  size_t b = 0;
  while (b < s.size() && (std::isspace(static_cast<unsigned char>(s[b])) ||
                          std::ispunct(static_cast<unsigned char>(s[b]))))
    ++b;
  return lower(s.substr(b));
}

bool starts_with_word(const std::string& text, const std::string& word) {
  if (word.empty() || text.compare(0, word.size(), word) != 0) return false;
  return text.size() == word.size() || !std::isalnum(static_cast<unsigned char>(text[word.size()]));
}
}  // namespace

std::optional<LabelScores> score_labels_first_token(
    const LabelQuestion& q, const std::vector<ChatTokenLogprob::Alternative>& top) {
  if (top.empty() || q.labels.empty()) return std::nullopt;
  double floor = std::numeric_limits<double>::infinity();
  for (const auto& t : top) floor = std::min(floor, t.logprob);
  std::vector<double> lp;
  for (const std::string& label : q.labels) {
    const auto it = q.text.find(label);
    const std::string& answer = it == q.text.end() ? label : it->second;
    // The longest listed token that begins the answer: a tokenizer splits the answer's start into
    // its longest vocabulary entry, so that is the first token the model would emit for it.
    size_t best_len = 0;
    double best = floor;
    for (const auto& t : top)
      if (!t.bytes.empty() && t.bytes.size() > best_len && answer.starts_with(t.bytes)) {
        best_len = t.bytes.size();
        best = t.logprob;
      }
    lp.push_back(best);
  }
  return normalized(q, lp);
}

std::optional<LabelScores> match_label(const LabelQuestion& q, const std::string& answer) {
  const std::string a = trimmed(answer);
  auto one_hot = [&](const std::string& chosen) {
    LabelScores out;
    out.label = chosen;
    for (const auto& l : q.labels) out.scores[l] = l == chosen ? 1.0 : 0.0;
    return out;
  };
  for (const std::string& l : q.labels) {
    const auto it = q.text.find(l);
    if ((it != q.text.end() && starts_with_word(a, trimmed(it->second))) ||
        starts_with_word(a, lower(l)))
      return one_hot(l);
  }
  size_t first = std::string::npos;
  std::string chosen;
  for (const std::string& l : q.labels) {
    const size_t at = a.find(lower(l));
    if (at < first) first = at, chosen = l;
  }
  if (chosen.empty()) return std::nullopt;
  return one_hot(chosen);
}

bool is_text_token(const std::string& bytes) {
  if (bytes.size() < 3 || bytes.front() != '<' || bytes.back() != '>') return true;
  return !(bytes.starts_with("<audio_") || bytes.starts_with("<tts_"));
}

}  // namespace stepaudio
