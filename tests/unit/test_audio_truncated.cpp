// A recording cut short still decodes as far as it goes, and says so (DecodedAudio::truncated),
// for a cut WAV (FFmpeg trims its stated size to the file: the RIFF size tells), a cut FLAC and
// MP3 (the header states the duration), and from memory as from a file. Intact files, including
// every real recording of ../shared/data, are never flagged.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "stepaudio/audio.h"

using namespace stepaudio;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_all(const fs::path& p, const uint8_t* data, size_t n) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(data), std::streamsize(n));
}

// 5 s of a 440 Hz tone at 16 kHz, 16-bit mono, as a complete WAV.
std::vector<uint8_t> tone_wav() {
  const uint32_t rate = 16000, n = 5 * rate;
  std::vector<uint8_t> b;
  b.reserve(44 + 2 * n);
  auto put = [&](uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) b.push_back(uint8_t(v >> (8 * i)));
  };
  auto tag = [&](const char* t) {
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t(t[i]));
  };
  tag("RIFF"), put(36 + 2 * n, 4), tag("WAVE"), tag("fmt ");
  put(16, 4), put(1, 2), put(1, 2), put(rate, 4), put(2 * rate, 4), put(2, 2), put(16, 2);
  tag("data"), put(2 * n, 4);
  for (uint32_t i = 0; i < n; ++i)
    put(uint16_t(int16_t(8000 * std::sin(2 * M_PI * 440 * i / rate))), 2);
  return b;
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("stepaudio-trunc-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST(AudioTruncated, CutWavFromMemoryAndFile) {
  const std::vector<uint8_t> whole = tone_wav();
  const audio::DecodedAudio full = audio::decode_memory(whole.data(), whole.size());
  EXPECT_FALSE(full.truncated);
  EXPECT_NEAR(full.duration_s(), 5.0, 1e-9);

  // 44-byte header + 2 s of samples: 3 s missing.
  const size_t cut = 44 + 2 * 2 * 16000;
  const audio::DecodedAudio part = audio::decode_memory(whole.data(), cut);
  EXPECT_TRUE(part.truncated);
  EXPECT_NEAR(part.duration_s(), 2.0, 1e-9);
  EXPECT_NEAR(part.stated_seconds, 5.0, 1e-6);
  // The samples that decoded are the whole file's first ones.
  ASSERT_EQ(part.samples.size(), 32000u);
  for (size_t i = 0; i < part.samples.size(); i += 997) EXPECT_EQ(part.samples[i], full.samples[i]);

  TempDir dir;
  write_all(dir.path / "cut.wav", whole.data(), cut);
  const audio::DecodedAudio file = audio::decode_file((dir.path / "cut.wav").string());
  EXPECT_TRUE(file.truncated);
  EXPECT_NEAR(file.stated_seconds, 5.0, 1e-6);
  // The streaming decoder reports the same.
  size_t streamed = 0;
  const audio::StreamInfo info = audio::decode_file_stream(
      (dir.path / "cut.wav").string(), {},
      [&](const audio::StreamInfo&, const float*, size_t n) { streamed += n; });
  EXPECT_TRUE(info.truncated);
  EXPECT_EQ(streamed, 32000u);
  EXPECT_NEAR(info.seconds, 2.0, 1e-9);
}

TEST(AudioTruncated, StreamingWavWithUnknownSizeIsNotFlagged) {
  // Recorders that write while recording leave 0 or 0xffffffff in the RIFF size.
  std::vector<uint8_t> b = tone_wav();
  for (uint32_t riff : {0u, 0xffffffffu}) {
    for (int i = 0; i < 4; ++i) b[4 + i] = uint8_t(riff >> (8 * i));
    const audio::DecodedAudio d = audio::decode_memory(b.data(), 44 + 32000);
    EXPECT_FALSE(d.truncated) << riff;
  }
}

TEST(AudioTruncated, CutFlacAndMp3ViaTheFfmpegCli) {
  if (std::system("ffmpeg -version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no ffmpeg CLI";
  TempDir dir;
  const std::vector<uint8_t> whole = tone_wav();
  write_all(dir.path / "tone.wav", whole.data(), whole.size());
  for (const char* ext : {"flac", "mp3"}) {
    const fs::path enc = dir.path / (std::string("tone.") + ext);
    const std::string cmd = "ffmpeg -nostdin -loglevel error -y -i " +
                            (dir.path / "tone.wav").string() + " " + enc.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const std::vector<uint8_t> bytes = read_all(enc);
    const audio::DecodedAudio full = audio::decode_memory(bytes.data(), bytes.size());
    EXPECT_FALSE(full.truncated) << ext;
    const audio::DecodedAudio part = audio::decode_memory(bytes.data(), bytes.size() * 2 / 5);
    EXPECT_TRUE(part.truncated) << ext;
    EXPECT_LT(part.duration_s(), 3.5) << ext;
    EXPECT_NEAR(part.stated_seconds, full.duration_s(), 0.2) << ext;
  }
}

TEST(AudioTruncated, NoRealRecordingIsFlagged) {
  const fs::path audio_dir = fs::path(STEPAUDIO_SHARED_DATA) / "audio";
  if (!fs::is_directory(audio_dir)) GTEST_SKIP() << audio_dir << " is missing";
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(audio_dir)) {
    if (!e.is_regular_file()) continue;
    const std::vector<uint8_t> bytes = read_all(e.path());
    try {
      const audio::DecodedAudio d = audio::decode_memory(bytes.data(), bytes.size());
      EXPECT_FALSE(d.truncated) << e.path() << ": " << d.duration_s() << " s of "
                                << d.stated_seconds;
      ++n;
    } catch (const std::exception&) {
      // Not audio (a README, a license): only decodable files are checked.
    }
  }
  EXPECT_GT(n, 20u);
}
