// Decoding from memory and from files, sample scaling per format, and every kind of bad input:
// each must give a typed error, never a crash, hang or unbounded allocation.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"

using namespace stepaudio;
using namespace stepaudio::audio;

namespace {

void put16(std::vector<uint8_t>& b, uint32_t v) {
  b.push_back(uint8_t(v));
  b.push_back(uint8_t(v >> 8));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
  put16(b, v & 0xffff);
  put16(b, v >> 16);
}

// A RIFF/WAVE file: format tag 1 (PCM), 3 (IEEE float), 6 (A-law), 7 (mu-law).
std::vector<uint8_t> wav(uint16_t tag, uint16_t channels, uint32_t rate, uint16_t bits,
                         const std::vector<uint8_t>& data, uint32_t claimed_data = UINT32_MAX) {
  std::vector<uint8_t> b = {'R', 'I', 'F', 'F'};
  put32(b, uint32_t(36 + data.size()));
  b.insert(b.end(), {'W', 'A', 'V', 'E', 'f', 'm', 't', ' '});
  put32(b, 16);
  put16(b, tag);
  put16(b, channels);
  put32(b, rate);
  put32(b, rate * channels * bits / 8);
  put16(b, uint16_t(channels * bits / 8));
  put16(b, bits);
  b.insert(b.end(), {'d', 'a', 't', 'a'});
  put32(b, claimed_data == UINT32_MAX ? uint32_t(data.size()) : claimed_data);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

Errc decode_error(const std::vector<uint8_t>& file, DecodeOptions opt = {}) {
  try {
    decode_memory(file.data(), file.size(), opt);
  } catch (const Error& e) {
    EXPECT_GT(std::strlen(e.what()), 10u);  // a message that says what was wrong
    return e.code();
  }
  ADD_FAILURE() << "decoding succeeded";
  return Errc::internal;
}

}  // namespace

TEST(Decode, Int16StereoScalingAndChannels) {
  std::vector<int16_t> s = {1000, -2000, -32768, 32767, 0, 16384};  // 3 frames x 2 channels
  auto file = wav(1, 2, 22050, 16, bytes_of(s));
  auto first = decode_memory(file.data(), file.size());
  EXPECT_EQ(first.sample_rate, 22050);
  EXPECT_EQ(first.source_channels, 2);
  ASSERT_EQ(first.samples, (std::vector<float>{1000 / 32768.f, -1.f, 0.f}));
  DecodeOptions mix;
  mix.channels = ChannelMode::mix;
  auto mixed = decode_memory(file.data(), file.size(), mix);
  ASSERT_EQ(mixed.samples.size(), 3u);
  EXPECT_FLOAT_EQ(mixed.samples[0], (1000 - 2000) / 65536.f);
  EXPECT_FLOAT_EQ(mixed.samples[1], (-32768 + 32767) / 65536.f);
  EXPECT_FLOAT_EQ(mixed.samples[2], 16384 / 65536.f);
}

TEST(Decode, AllWavSampleFormats) {
  // u8, s24, s32, f32, f64, A-law, mu-law: value -> expected float (torchaudio scaling).
  auto one = [](uint16_t tag, uint16_t bits, std::vector<uint8_t> data) {
    auto file = wav(tag, 1, 16000, bits, data);
    return decode_memory(file.data(), file.size()).samples;
  };
  EXPECT_EQ(one(1, 8, {0, 128, 255}), (std::vector<float>{-1.f, 0.f, 127 / 128.f}));
  EXPECT_EQ(one(1, 24, {0x00, 0x00, 0x80, 0x00, 0x00, 0x40}), (std::vector<float>{-1.f, 0.5f}));
  EXPECT_EQ(one(1, 32, bytes_of(std::vector<int32_t>{INT32_MIN, 1 << 30})),
            (std::vector<float>{-1.f, 0.5f}));
  EXPECT_EQ(one(3, 32, bytes_of(std::vector<float>{0.25f, -0.75f})),
            (std::vector<float>{0.25f, -0.75f}));
  EXPECT_EQ(one(3, 64, bytes_of(std::vector<double>{0.125, -0.5})),
            (std::vector<float>{0.125f, -0.5f}));
  // G.711: A-law 0xD5 and mu-law 0xFF both encode (near) zero; 0x2A / 0x80 are large magnitudes.
  auto alaw = one(6, 8, {0xD5, 0x2A});
  auto mulaw = one(7, 8, {0xFF, 0x80});
  EXPECT_NEAR(alaw[0], 0.0f, 1e-3f);
  EXPECT_GT(std::fabs(alaw[1]), 0.5f);
  EXPECT_NEAR(mulaw[0], 0.0f, 1e-3f);
  EXPECT_GT(std::fabs(mulaw[1]), 0.5f);
}

TEST(Decode, FileAndMemoryAgree) {
  std::vector<int16_t> s(16000);
  for (size_t i = 0; i < s.size(); ++i) s[i] = int16_t(10000 * std::sin(0.01 * double(i)));
  auto file = wav(1, 1, 16000, 16, bytes_of(s));
  auto path = (std::filesystem::temp_directory_path() / "sa_decode_test.wav").string();
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(file.data()), std::streamsize(file.size()));
  auto a = decode_file(path);
  auto b = decode_memory(file.data(), file.size());
  EXPECT_EQ(a.samples, b.samples);
  EXPECT_EQ(a.codec, "pcm_s16le");
  EXPECT_EQ(to_16k(a).size(), 16000u);
  std::remove(path.c_str());
}

TEST(DecodeBadInput, EmptyTruncatedRandomText) {
  EXPECT_EQ(decode_error({}), Errc::bad_audio);
  auto file = wav(1, 1, 16000, 16, std::vector<uint8_t>(200, 0));
  EXPECT_EQ(decode_error(std::vector<uint8_t>(file.begin(), file.begin() + 20)),
            Errc::unsupported_media);
  std::mt19937 rng(5);
  std::vector<uint8_t> noise(4096);
  for (auto& v : noise) v = uint8_t(rng());
  Errc e = decode_error(noise);
  EXPECT_TRUE(e == Errc::unsupported_media || e == Errc::bad_audio);
  std::string text = "Hello, this is not audio at all.\nJust a text file with some lines.\n";
  EXPECT_EQ(decode_error(std::vector<uint8_t>(text.begin(), text.end())), Errc::unsupported_media);
}

TEST(DecodeBadInput, NonFiniteFloatSamples) {
  EXPECT_EQ(decode_error(wav(3, 1, 16000, 32, bytes_of(std::vector<float>{0.1f, NAN, 0.2f}))),
            Errc::bad_audio);
  EXPECT_EQ(decode_error(wav(3, 1, 16000, 64, bytes_of(std::vector<double>{1e300, 0.0}))),
            Errc::bad_audio);
}

TEST(DecodeBadInput, ZeroLengthStream) {
  EXPECT_EQ(decode_error(wav(1, 1, 16000, 16, {})), Errc::bad_audio);
}

TEST(DecodeBadInput, AbsurdRateAndChannels) {
  std::vector<uint8_t> data(64, 0);
  EXPECT_EQ(decode_error(wav(1, 1, 2000000000u, 16, data)), Errc::too_large);
  EXPECT_EQ(decode_error(wav(1, 1000, 16000, 16, std::vector<uint8_t>(4000, 0))), Errc::too_large);
}

TEST(DecodeBadInput, OverMaxDurationStopsEarly) {
  std::vector<uint8_t> data(size_t(16000) * 2 * 60, 0);  // 60 s of 16-bit silence
  auto file = wav(1, 1, 16000, 16, data);
  DecodeOptions opt;
  opt.max_seconds = 5;
  EXPECT_EQ(decode_error(file, opt), Errc::too_long);
}

TEST(DecodeBadInput, HeaderClaimingHoursIsBoundedByTheData) {
  // A 1 kB file whose header claims 4 GB of audio: decoding yields what is there, no more.
  auto file = wav(1, 1, 16000, 16, std::vector<uint8_t>(1000, 1), 0xFFFFFF00u);
  auto audio = decode_memory(file.data(), file.size());
  EXPECT_EQ(audio.samples.size(), 500u);
}

TEST(DecodeBadInput, MissingFileAndBadOptions) {
  try {
    decode_file("/nonexistent/recording.m4a");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::io);
  }
  DecodeOptions bad;
  bad.max_seconds = -1;
  auto file = wav(1, 1, 16000, 16, std::vector<uint8_t>(100, 0));
  EXPECT_EQ(decode_error(file, bad), Errc::invalid_argument);
}
