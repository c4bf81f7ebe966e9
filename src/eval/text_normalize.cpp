// normalize_text (stepaudio/eval.h): the one normalization applied to references and hypotheses
// before scoring, so that writing conventions (width, case, punctuation, numeral forms) are not
// counted as recognition errors. The rules are docs/EVAL.md "Normalization"; the integration test
// re-implements them in Python, so a change here must change both.
#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "code_points.h"
#include "stepaudio/error.h"
#include "stepaudio/eval.h"
#include "text/utf8.h"

namespace stepaudio::eval {
namespace {

using detail::append_utf8;
using detail::code_points;
using detail::is_letter;

// NFKC with Unicode case folding (utf8proc folds while decomposing, then composes).
std::string nfkc_casefold(std::string_view valid_utf8) {
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(valid_utf8.data()),
                   static_cast<utf8proc_ssize_t>(valid_utf8.size()), &dst,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                                  UTF8PROC_COMPAT | UTF8PROC_CASEFOLD));
  if (n < 0)  // only on allocation failure: the input was repaired to valid UTF-8 first
    throw Error(Errc::internal, std::string("NFKC failed: ") + utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(dst, &std::free);
  return std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
}

bool is_digit(char32_t cp) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp)) == UTF8PROC_CATEGORY_ND;
}

enum class Action { keep, space, drop };

Action classify(char32_t cp) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_CC:
      return Action::space;
    case UTF8PROC_CATEGORY_CF:
      return Action::drop;
    default:
      return Action::keep;
  }
}

}  // namespace

std::string normalize_text(std::string_view text) {
  std::string valid;
  text::append_utf8_lossy(valid, text, /*hold_tail=*/false);
  const std::vector<char32_t> cps = code_points(chinese_numerals_to_digits(nfkc_casefold(valid)));
  std::string out;
  out.reserve(valid.size());
  bool pending_space = false;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t cp = cps[i];
    const char32_t prev = i > 0 ? cps[i - 1] : 0, next = i + 1 < cps.size() ? cps[i + 1] : 0;
    const bool inside_word = prev && next && is_letter(prev) && is_letter(next);
    const bool inside_number = prev && next && is_digit(prev) && is_digit(next);
    if ((cp == U'\'' || cp == U'\u2019') && inside_word) continue;  // don't -> dont
    if (cp == U',' && inside_number) continue;                      // 1,000 -> 1000
    Action a = classify(cp);
    if (cp == U'.' && inside_number) a = Action::keep;  // 3.5 stays one number
    if (a == Action::drop) continue;
    if (a == Action::space) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    append_utf8(out, cp);
  }
  return out;
}

}  // namespace stepaudio::eval
