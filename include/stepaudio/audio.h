// The audio front end: any recording -> 16 kHz mono float PCM -> chunks of <= 25 s -> the log-mel
// features Step-Audio 2 was trained on (docs/ARCHITECTURE.md).
//
// Thread-safety: every function here is reentrant and shares no mutable state; a Resampler is
// immutable after construction and may be used from several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

namespace stepaudio::audio {

constexpr int kSampleRate = 16000;  // the model's input rate
constexpr int kNumMels = 128;       // mel bins
constexpr int kFftSize = 400;       // 25 ms window
constexpr int kHopLength = 160;     // 10 ms hop
constexpr int kRightPadding = 479;  // zero samples appended before the STFT (official recipe)
constexpr double kMaxChunkSeconds = 25.0;

// ---- decoding -------------------------------------------------------------------------------

enum class ChannelMode {
  first,  // keep channel 0, as the official pipeline does (`audio[0]` after torchaudio.load)
  mix,    // average all channels
};

struct DecodeOptions {
  ChannelMode channels = ChannelMode::first;
  // Decoding stops with Errc::too_long as soon as more than this much audio has been produced, so a
  // tiny file claiming hours of audio (a decompression bomb) never allocates more than this.
  double max_seconds = 4.0 * 3600.0;
  int max_sample_rate = 384000;  // absurd rates are rejected before any sample is decoded
  int max_channels = 64;
  // Wall-clock budget for the whole decode; Errc::too_long-free hang guard (Errc::bad_audio).
  double timeout_seconds = 600.0;
};

// Decoded PCM at the source rate, one channel (chosen by ChannelMode), floats in [-1, 1] scaled as
// torchaudio.load does (int16 / 32768, int32 / 2^31, ...).
struct DecodedAudio {
  std::vector<float> samples;
  int sample_rate = 0;  // of `samples` (the source rate)
  int source_channels = 0;
  std::string container;  // e.g. "wav", "mov,mp4,m4a,3gp,3g2,mj2"
  std::string codec;      // e.g. "pcm_s16le", "aac"
  // The file ended before the audio its header states (a cut-off upload or copy), or a read error
  // stopped decoding: what decoded is kept, as ffmpeg does, and callers report it. stated_seconds:
  // the container's duration (0 when it states none or only estimates it from the bitrate).
  bool truncated = false;
  double stated_seconds = 0;
  double duration_s() const { return sample_rate ? double(samples.size()) / sample_rate : 0.0; }
};

// Both throw stepaudio::Error: io (unreadable file), unsupported_media (not audio we know),
// bad_audio (corrupt, empty, no audio stream), too_large (rate/channels over limits),
// too_long (over max_seconds).
DecodedAudio decode_file(const std::string& path, const DecodeOptions& options = {});
DecodedAudio decode_memory(const uint8_t* data, size_t size, const DecodeOptions& options = {});

// Streaming decode: the samples (source rate, one channel, scaled as above) go to `sink` one
// decoded frame at a time and are never held whole, so memory does not grow with the recording.
// The same errors; too_long as soon as the limit is passed.
struct StreamInfo {
  int sample_rate = 0, source_channels = 0;
  std::string container, codec;
  // In the sink: the container's stated duration (0 if it states none; a hint for progress only).
  // Returned: the exact duration decoded.
  double seconds = 0;
  // Returned: as DecodedAudio's fields of the same names.
  bool truncated = false;
  double stated_seconds = 0;
};
using SampleSink = std::function<void(const StreamInfo& info, const float* samples, size_t n)>;
StreamInfo decode_file_stream(const std::string& path, const DecodeOptions& options,
                              const SampleSink& sink);
StreamInfo decode_memory_stream(const uint8_t* data, size_t size, const DecodeOptions& options,
                                const SampleSink& sink);

// ---- resampling -----------------------------------------------------------------------------

// The windowed-sinc resampler of torchaudio.transforms.Resample with its default parameters
// (sinc_interpolation with a Hann window, lowpass_filter_width 6, rolloff 0.99): same kernel
// (computed in double, stored as float32), same padding, same output length
// ceil(n * new / orig) with both rates divided by their gcd.
class Resampler {
 public:
  Resampler(int from_rate, int to_rate);
  std::vector<float> process(const float* x, size_t n) const;
  int from_rate() const { return orig_ * gcd_; }
  int to_rate() const { return new_ * gcd_; }

 private:
  friend class StreamResampler;
  bool identity() const { return orig_ == new_; }
  // Output sample `out` of a signal of `len` samples (zeros outside [0, len)), reading input sample
  // i at x[i - x_first]: the one formula both process() and StreamResampler use (bit-identical).
  float output(size_t out, const float* x, int64_t x_first, int64_t len) const;
  // Input range [first, end) that output `out` reads (before clipping to the signal).
  int64_t input_first(size_t out) const;
  int64_t input_end(size_t out) const;

  int orig_ = 1, new_ = 1, gcd_ = 1;  // rates reduced by their gcd
  int width_ = 0;                     // taps on each side, in input samples
  // kernel_[phase * taps_ + j]: weight of input sample (phase_start(phase) + j); taps_ =
  // 2*width+orig.
  int taps_ = 0;
  std::vector<float> kernel_;
  // Per phase, the first and one-past-last tap whose float32 weight is non-zero (the Hann window
  // makes the outer taps exactly 0 or below 1e-30; skipping them changes no float32 result).
  std::vector<int> tap_begin_, tap_end_;
};

// The same resampler over a signal that arrives in pieces (a recording decoded block by block):
// holds only the input the next outputs need (~2 x 6 zero crossings), and its outputs,
// concatenated, are bit-identical to Resampler::process() of the whole signal. Thread-safety: one
// stream per object; not shareable while pushing.
class StreamResampler {
 public:
  StreamResampler(int from_rate, int to_rate);
  // Appends n input samples; appends to `out` every output sample that is now final.
  void push(const float* x, size_t n, std::vector<float>& out);
  // The end of the signal: appends the remaining outputs (the right edge's zero padding).
  void finish(std::vector<float>& out);

 private:
  Resampler r_;
  std::vector<float> buf_;  // input samples [buf_first_, n_in_)
  int64_t buf_first_ = 0, n_in_ = 0;
  size_t next_out_ = 0;
};

// Convenience: decode + resample to 16 kHz.
std::vector<float> to_16k(const DecodedAudio& audio);

// ---- chunk planning -------------------------------------------------------------------------

struct ChunkOptions {
  double max_seconds = kMaxChunkSeconds;  // hard limit per chunk
  // Look for the quietest point in the last `search_seconds` before the limit; 0 gives the official
  // fixed 25 s split.
  double search_seconds = 4.0;
  double frame_ms = 25.0;  // short-time energy window
};

struct Chunk {
  size_t begin = 0, end = 0;  // sample range [begin, end) at 16 kHz
  double start_s() const { return double(begin) / kSampleRate; }
  double end_s() const { return double(end) / kSampleRate; }
};

// Splits 16 kHz PCM into consecutive chunks covering all samples, none longer than max_seconds,
// each cut (except the last) at the centre of the lowest-energy frame inside the search window.
// Deterministic. Empty input gives no chunks.
std::vector<Chunk> plan_chunks(const float* pcm, size_t n, const ChunkOptions& options = {});

// One planned chunk with its own samples.
struct PlannedChunk {
  Chunk range;
  std::vector<float> pcm;  // the 16 kHz samples [range.begin, range.end)
};

// plan_chunks() over a signal arriving in pieces: the same chunks (same cut search, same code),
// each handed out with its samples as soon as its end is decided. Holds the current chunk plus
// the search's look-ahead (max_seconds + frame_ms of audio at most), never the whole recording.
// Thread-safety: one stream per object.
class ChunkPlanner {
 public:
  explicit ChunkPlanner(const ChunkOptions& options = {});  // Error(invalid_argument) as above
  void push(const float* pcm16k, size_t n);
  void finish();  // the end of the signal: the last chunk becomes ready
  // Moves the next ready chunk into `out`; false when none is ready yet.
  bool next(PlannedChunk& out);

 private:
  void cut(bool eof);
  ChunkOptions options_;
  std::vector<float> buf_;  // samples [buf_first_, have_)
  size_t buf_first_ = 0, have_ = 0, begin_ = 0;
  std::deque<PlannedChunk> ready_;
};

// ---- log-mel --------------------------------------------------------------------------------

// 128 x frames, row-major (mel bin major, as the model's conv1 reads it).
struct LogMel {
  int frames = 0;
  std::vector<float> data;  // [kNumMels][frames]
};

// The official log_mel_spectrogram: append 479 zeros, centred STFT (reflect pad 200), periodic Hann
// 400, hop 160, drop the last frame, power, Slaney mel filters, log10(max(x, 1e-10)),
// max(x, max - 8), (x + 4) / 4. frames = (n + 479) / 160.
LogMel log_mel(const float* pcm16k, size_t n);

// Mel frames of n samples, and the number of <audio_patch> tokens of a chunk of T mel frames (the
// official compute_token_num: L = T - 2, enc = ((L + 1) / 2) / 2, N = (enc - 1) / 2 + 1).
inline int mel_frames(size_t n_samples) {
  return int((n_samples + kRightPadding) / kHopLength);
}
inline int audio_patch_tokens(int mel_frames) {
  int enc = mel_frames >= 2 ? ((mel_frames - 2 + 1) / 2) / 2 : 0;
  return enc > 0 ? (enc - 1) / 2 + 1 : 0;  // Python's floor division gives 0 for enc == 0
}

}  // namespace stepaudio::audio
