#include "pipeline/guards.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <sstream>

namespace stepaudio::pipeline {

double active_seconds(const float* pcm, size_t n, double dbfs) {
  constexpr size_t kFrame = 400;  // 25 ms at 16 kHz
  const double threshold = std::pow(10.0, dbfs / 20.0);
  size_t active = 0;
  for (size_t b = 0; b < n; b += kFrame) {
    const size_t e = std::min(n, b + kFrame);
    double s = 0;
    for (size_t i = b; i < e; ++i) s += double(pcm[i]) * pcm[i];
    if (std::sqrt(s / double(e - b)) > threshold) active += e - b;
  }
  return double(active) / 16000.0;
}

bool RepetitionDetector::push(int32_t id) {
  ids_.push_back(id);
  const size_t L = ids_.size();
  auto same = [&](size_t a, size_t b, size_t len) {  // ids_[a, a+len) == ids_[b, b+len)
    return std::equal(ids_.begin() + a, ids_.begin() + a + len, ids_.begin() + b);
  };
  if (single_ > 1 && L >= single_ &&
      std::all_of(ids_.end() - single_, ids_.end(), [&](int32_t x) { return x == id; })) {
    keep_ = L - single_ + 1;
    return true;
  }
  for (size_t g = 2; g <= max_ngram_; ++g) {
    if (L < g * count_) break;
    // A run of one id is the single-id rule's business (it allows longer runs: "!!!!", "----").
    if (std::all_of(ids_.end() - g, ids_.end(), [&](int32_t x) { return x == id; })) continue;
    bool loop = true;
    for (size_t r = 1; r < count_ && loop; ++r) loop = same(L - g, L - g * (r + 1), g);
    if (loop) {
      keep_ = L - g * (count_ - 1);
      return true;
    }
  }
  return false;
}

namespace {
// Decodes UTF-8 leniently (invalid bytes become U+FFFD).
std::vector<char32_t> code_points(const std::string& s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return out;
}
bool is_space(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x3000 || c == 0xA0;
}
bool is_punct(char32_t c) {
  return (c < 0x80 && !std::isalnum(static_cast<int>(c)) && !is_space(c)) ||
         (c >= 0x3000 && c <= 0x303F) || (c >= 0xFF00 && c <= 0xFF0F) ||
         (c >= 0xFF1A && c <= 0xFF20) || (c >= 0x2000 && c <= 0x206F);
}
}  // namespace

std::string detect_language(const std::string& text) {
  std::map<std::string, size_t> script;
  size_t latin = 0;
  for (char32_t c : code_points(text)) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0x24F))
      ++latin;
    else if (c >= 0x3040 && c <= 0x30FF)
      ++script["ja"];  // kana decides Japanese over Chinese
    else if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF))
      ++script["han"];
    else if (c >= 0xAC00 && c <= 0xD7AF)
      ++script["ko"];
    else if (c >= 0x0400 && c <= 0x04FF)
      ++script["ru"];
    else if (c >= 0x0600 && c <= 0x06FF)
      ++script["ar"];
    else if (c >= 0x0590 && c <= 0x05FF)
      ++script["he"];
    else if (c >= 0x0370 && c <= 0x03FF)
      ++script["el"];
    else if (c >= 0x0E00 && c <= 0x0E7F)
      ++script["th"];
    else if (c >= 0x0900 && c <= 0x097F)
      ++script["hi"];
  }
  if (script["ja"] > 0 && script["ja"] * 5 >= script["han"]) {
    script["ja"] += script["han"];
    script["han"] = 0;
  }
  std::string best = "und";
  size_t best_n = 0;
  for (auto& [k, v] : script)
    if (v > best_n) best = k == "han" ? "zh" : k, best_n = v;
  if (latin <= best_n) return best_n ? best : "und";
  // Latin script: count common function words.
  static const std::array<std::pair<const char*, const char*>, 7> kWords = {{
      {"en", " the and is are of to in that it you was for with this have not "},
      {"es", " el la los las de que y es en un una por con para no se "},
      {"fr", " le la les de des et est un une que pas pour dans qui je vous "},
      {"de", " der die das und ist nicht ein eine ich sie zu mit den von "},
      {"it", " il la di che e non un una per sono della gli le "},
      {"pt", " o a os as de que e não um uma para com é do da "},
      {"nl", " de het een en van is niet ik dat op te zijn "},
  }};
  std::map<std::string, size_t> hits;
  std::istringstream in(text);
  for (std::string w; in >> w;) {
    std::string lw;
    for (char ch : w)
      if (std::isalpha(static_cast<unsigned char>(ch)) || (static_cast<unsigned char>(ch) >= 0x80))
        lw += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lw.empty()) continue;
    for (auto& [lang, list] : kWords)
      if (std::string(list).find(" " + lw + " ") != std::string::npos) ++hits[lang];
  }
  std::string lang = "en";  // Latin script without evidence: the most likely one
  size_t n = 0;
  for (auto& [k, v] : hits)
    if (v > n || (v == n && k == "en")) lang = k, n = v;
  return lang;
}

bool counts_characters(const std::string& lang) {
  return lang == "zh" || lang == "ja" || lang == "ko" || lang == "th";
}

size_t text_length(const std::string& text, bool characters) {
  if (characters) {
    size_t n = 0;
    for (char32_t c : code_points(text)) n += !is_space(c) && !is_punct(c);
    return n;
  }
  std::istringstream in(text);
  size_t n = 0;
  for (std::string w; in >> w;) ++n;
  return n;
}

std::string truncate_text(const std::string& text, size_t max_units, bool characters) {
  if (text_length(text, characters) <= max_units) return text;
  if (!characters) {
    std::istringstream in(text);
    std::string out;
    size_t n = 0;
    for (std::string w; n < max_units && in >> w; ++n) out += (n ? " " : "") + w;
    return out;
  }
  // Keep whole code points up to the max_units-th counted character.
  size_t n = 0, i = 0;
  while (i < text.size()) {
    unsigned char c = text[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    std::vector<char32_t> cp = code_points(text.substr(i, len));
    const bool counted = !cp.empty() && !is_space(cp[0]) && !is_punct(cp[0]);
    if (counted && n == max_units) break;
    n += counted;
    i += len;
  }
  return text.substr(0, i);
}

}  // namespace stepaudio::pipeline
