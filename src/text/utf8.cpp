#include "text/utf8.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "stepaudio/error.h"

namespace stepaudio::text {

size_t utf8_char_len(std::string_view s, size_t i, size_t* invalid_len) {
  auto set_invalid = [&](size_t n) {
    if (invalid_len) *invalid_len = n;
    return size_t{0};
  };
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlongs
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return set_invalid(1);  // continuation byte, C0/C1 or F5..FF as a lead
  }
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= s.size()) return set_invalid(0);  // truncated but valid so far
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return set_invalid(k);  // maximal subpart = the bytes before this one
  }
  return need;
}

std::optional<size_t> first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Fast path over ASCII runs, 8 bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const size_t n = utf8_char_len(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

size_t append_utf8_lossy(std::string& out, std::string_view s, bool hold_tail) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t i = 0, run = 0;  // [run, i) is valid and not yet copied
  while (i < s.size()) {
    size_t bad = 0;
    const size_t n = utf8_char_len(s, i, &bad);
    if (n > 0) {
      i += n;
      continue;
    }
    out.append(s.substr(run, i - run));
    if (bad == 0) {  // valid prefix cut off by the end of s
      if (hold_tail) return s.size() - i;
      out.append(kReplacement);
      return 0;
    }
    out.append(kReplacement);
    i += bad;
    run = i;
  }
  out.append(s.substr(run));
  return 0;
}

namespace {

// Code points that NFC leaves alone whatever surrounds them: no decomposition, combining class 0,
// and never the second half of a composition. Text made only of these (ASCII, Latin-1, CJK
// ideographs, Hangul syllables, common CJK punctuation) skips utf8proc entirely. Anything else,
// e.g. a combining mark, takes the full path.
bool nfc_inert(uint32_t cp) {
  return cp < 0x300 || (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
         (cp >= 0x3000 && cp <= 0x3029) || (cp >= 0xFF01 && cp <= 0xFF5E);
}

bool nfc_quick_yes(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    // Anything unusual (4-byte, malformed, overlong) leaves the fast path; utf8proc then normalizes
    // or rejects it.
    auto cont = [&](size_t k) { return (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80; };
    uint32_t cp;
    if (b0 >= 0xC2 && b0 < 0xE0 && i + 2 <= s.size() && cont(1)) {
      cp = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      i += 2;
    } else if (b0 >= 0xE0 && b0 < 0xF0 && i + 3 <= s.size() && cont(1) && cont(2)) {
      cp = ((b0 & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
           (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
      if (cp < 0x800) return false;
      i += 3;
    } else {
      return false;
    }
    if (!nfc_inert(cp)) return false;
  }
  return true;
}

std::string nfc_utf8proc(std::string_view s) {
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
      &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0)
    throw Error(Errc::invalid_argument,
                std::string("NFC normalization failed: ") + utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(dst, &std::free);
  return std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
}

}  // namespace

std::string nfc(std::string_view s) {
  if (nfc_quick_yes(s)) return std::string(s);
  // utf8proc (2.8) wrongly composes a Hangul LV syllable with U+11A7, which is TBase itself and not
  // a trailing consonant, and drops the U+11A7. U+11A7 is a starter that composes with nothing, so
  // normalizing the text between occurrences separately is exact.
  static constexpr std::string_view kTBase = "\xE1\x86\xA7";
  std::string out;
  size_t start = 0;
  for (size_t hit; (hit = s.find(kTBase, start)) != std::string_view::npos; start = hit + 3) {
    out += nfc_utf8proc(s.substr(start, hit - start));
    out += kTBase;
  }
  out += nfc_utf8proc(s.substr(start));
  return out;
}

}  // namespace stepaudio::text
