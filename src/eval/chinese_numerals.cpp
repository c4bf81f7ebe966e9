// chinese_numerals_to_digits (stepaudio/eval.h): Chinese numerals -> Arabic digits, so that
// "九月十九号" and "9月19号" score as the same text. Both sides of a comparison go through it, so a
// word that merely contains a numeral character (一下, 统一) changes the same way on both sides.
// The rules are docs/EVAL.md "Chinese numbers"; the integration test has a Python twin.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stepaudio/eval.h"

namespace stepaudio::eval {
namespace {

struct Numeral {
  std::string_view utf8;
  int digit;      // 0..9, or -1 for a unit
  uint64_t unit;  // 10, 100, 1000 (small), 10^4, 10^8 (big); 0 for a digit
};
constexpr Numeral kNumerals[] = {
    {"零", 0, 0},      {"〇", 0, 0},          {"一", 1, 0},   {"二", 2, 0},    {"两", 2, 0},
    {"三", 3, 0},      {"四", 4, 0},          {"五", 5, 0},   {"六", 6, 0},    {"七", 7, 0},
    {"八", 8, 0},      {"九", 9, 0},          {"十", -1, 10}, {"百", -1, 100}, {"千", -1, 1000},
    {"万", -1, 10000}, {"亿", -1, 100000000},
};

const Numeral* numeral_at(std::string_view s, size_t i) {
  for (const Numeral& n : kNumerals)
    if (s.substr(i, n.utf8.size()) == n.utf8) return &n;
  return nullptr;
}

constexpr uint64_t kWan = 10000, kYi = 100000000;

// The value of a run that contains units, or none when it is not a well-formed numeral.
// total: completed 万/亿 groups; section: the current part below 10^4; digit: the digit waiting
// for its unit (has_digit); after_zero: a 零 since the last unit (一百零五: the 5 is ones, not
// tens).
std::optional<uint64_t> parse_value(const std::vector<const Numeral*>& run) {
  uint64_t total = 0, section = 0, last_unit = 0, section_unit = 0, last_big = 0, digit = 0;
  bool has_digit = false, after_zero = false;
  for (const Numeral* n : run) {
    if (n->digit >= 0) {
      if (has_digit && digit != 0) return std::nullopt;  // two digits in a row: 三四十, 十七八
      has_digit = true;
      digit = uint64_t(n->digit);
      after_zero = after_zero || digit == 0;
      continue;
    }
    if (n->unit < kWan) {
      if (!has_digit) {
        if (n->unit != 10 || section != 0) return std::nullopt;  // only 十 may stand alone: 十九
        digit = 1;
      } else if (digit == 0) {
        return std::nullopt;  // 零十
      }
      if (section_unit != 0 && n->unit >= section_unit) return std::nullopt;  // units descend
      section += digit * n->unit;
      section_unit = last_unit = n->unit;
    } else {
      if (has_digit) section += digit;
      if (n->unit == kWan) {
        if (section == 0 || last_big == kWan) return std::nullopt;
        total += section * kWan;
      } else {
        if (last_big == kYi || (section == 0 && last_big != kWan)) return std::nullopt;
        if (total + section >= kYi) return std::nullopt;  // 亿 of a value of 亿 or more
        total = (total + section) * kYi;
      }
      section = section_unit = 0;
      last_unit = last_big = n->unit;
    }
    has_digit = after_zero = false;
    digit = 0;
  }
  if (has_digit && digit != 0) {
    // 二百五 = 250, 三千五 = 3500, 一万五 = 15000: a last digit right after a unit of 100 or more
    // counts in the next lower place; after 十 or a 零 it is the ones.
    section += !after_zero && last_unit >= 100 ? digit * (last_unit / 10) : digit;
  }
  return total + section;
}

void convert_run(const std::vector<const Numeral*>& run, std::string& out) {
  size_t start = 0;
  // 百/千/万/亿 without a digit before them start words (千万, 万一, 百姓), not numbers.
  while (start < run.size() && run[start]->digit < 0 && run[start]->unit != 10)
    out += run[start++]->utf8;
  if (start == run.size()) return;
  const std::vector<const Numeral*> rest(run.begin() + long(start), run.end());
  bool has_unit = false;
  for (const Numeral* n : rest) has_unit |= n->digit < 0;
  if (has_unit) {
    if (std::optional<uint64_t> v = parse_value(rest)) {
      out += std::to_string(*v);
      return;
    }
  }
  // Digits only (二〇二六), or an approximation that is not one number: digit by digit.
  for (const Numeral* n : rest)
    out += n->digit >= 0 ? std::string(1, char('0' + n->digit)) : std::string(n->utf8);
}

}  // namespace

std::string chinese_numerals_to_digits(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::vector<const Numeral*> run;
  size_t i = 0;
  while (i < text.size()) {
    if (const Numeral* n = numeral_at(text, i)) {
      run.push_back(n);
      i += n->utf8.size();
      continue;
    }
    if (!run.empty()) {
      convert_run(run, out);
      run.clear();
    }
    out += text[i++];  // any other byte: UTF-8 lead and continuation bytes never match a numeral
  }
  if (!run.empty()) convert_run(run, out);
  return out;
}

}  // namespace stepaudio::eval
