// UTF-8 helpers for the tokenizer: strict validation, lossy repair, NFC normalization.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace stepaudio::text {

// Length of the valid UTF-8 character starting at s[i] (1-4), or 0 when the bytes there are not a
// complete valid character. `*invalid_len` (when non-null and the result is 0) receives the length
// of the maximal invalid subpart (>= 1), or 0 when the bytes are a valid but truncated prefix that
// runs to the end of `s` (more bytes may complete it).
size_t utf8_char_len(std::string_view s, size_t i, size_t* invalid_len = nullptr);

// Byte offset of the first invalid UTF-8 byte, or nullopt when `s` is valid. Overlong forms,
// surrogates (U+D800..DFFF) and code points above U+10FFFF are invalid.
std::optional<size_t> first_invalid_utf8(std::string_view s);

// Appends `s` to `out`, replacing each maximal invalid subpart with U+FFFD. When `hold_tail` is
// true, a valid but incomplete character at the very end is not appended; its length is returned
// (0 otherwise), so a stream can retry once more bytes arrive.
size_t append_utf8_lossy(std::string& out, std::string_view s, bool hold_tail);

// NFC of valid UTF-8 (utf8proc; Error(invalid_argument) otherwise). Text made only of characters
// NFC cannot change (ASCII, CJK ideographs, Hangul syllables, ...) is returned as is, quickly.
std::string nfc(std::string_view s);

}  // namespace stepaudio::text
