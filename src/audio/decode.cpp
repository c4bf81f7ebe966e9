// Decoding any container/codec FFmpeg knows into float PCM of one channel, from a file or from
// memory (uploads never touch the disk). Every FFmpeg handle is owned by a unique_ptr with its
// deleter; every failure becomes a typed stepaudio::Error.
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/error.h>
}

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"
#include "util/log.h"

namespace stepaudio::audio {
namespace {

std::string av_error_string(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

struct FormatCloser {
  void operator()(AVFormatContext* ctx) const { avformat_close_input(&ctx); }
};
struct CodecFreer {
  void operator()(AVCodecContext* ctx) const { avcodec_free_context(&ctx); }
};
struct PacketFreer {
  void operator()(AVPacket* pkt) const { av_packet_free(&pkt); }
};
struct FrameFreer {
  void operator()(AVFrame* frame) const { av_frame_free(&frame); }
};
struct IoFreer {
  void operator()(AVIOContext* io) const {
    if (io) av_freep(&io->buffer);  // the buffer may have been reallocated by FFmpeg
    avio_context_free(&io);
  }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using IoPtr = std::unique_ptr<AVIOContext, IoFreer>;

// FFmpeg logs to stderr by default; keep it quiet unless we are debugging.
void init_ffmpeg_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    av_log_set_level(util::log_level() == util::LogLevel::debug ? AV_LOG_WARNING : AV_LOG_QUIET);
  });
}

// An in-memory file for avio: read and seek over a caller-owned buffer.
struct MemoryReader {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;

  static int read(void* opaque, uint8_t* buf, int buf_size) {
    auto* self = static_cast<MemoryReader*>(opaque);
    size_t left = self->size - self->pos;
    if (left == 0) return AVERROR_EOF;
    size_t n = std::min(left, size_t(buf_size));
    std::memcpy(buf, self->data + self->pos, n);
    self->pos += n;
    return int(n);
  }
  static int64_t seek(void* opaque, int64_t offset, int whence) {
    auto* self = static_cast<MemoryReader*>(opaque);
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
      case AVSEEK_SIZE:
        return int64_t(self->size);
      case SEEK_SET:
        base = 0;
        break;
      case SEEK_CUR:
        base = int64_t(self->pos);
        break;
      case SEEK_END:
        base = int64_t(self->size);
        break;
      default:
        return AVERROR(EINVAL);
    }
    int64_t target = base + offset;
    if (target < 0 || target > int64_t(self->size)) return AVERROR(EINVAL);
    self->pos = size_t(target);
    return target;
  }
};

// Wall-clock guard: FFmpeg polls this during blocking I/O and long probes.
struct Deadline {
  std::chrono::steady_clock::time_point until;
  static int expired(void* opaque) {
    return std::chrono::steady_clock::now() > static_cast<Deadline*>(opaque)->until ? 1 : 0;
  }
};

// Appends the frame's samples (any FFmpeg sample format, packed or planar) as floats scaled like
// torchaudio: integers divided by 2^(bits-1), unsigned 8-bit centred at 128.
void append_frame(const AVFrame* frame, int channels, ChannelMode mode, std::vector<float>& out) {
  const auto fmt = static_cast<AVSampleFormat>(frame->format);
  const bool planar = av_sample_fmt_is_planar(fmt);
  const int n = frame->nb_samples;
  auto sample = [&](int ch, int i) -> double {
    const uint8_t* base = planar ? frame->extended_data[ch] : frame->extended_data[0];
    size_t index = planar ? size_t(i) : size_t(i) * channels + ch;
    switch (av_get_packed_sample_fmt(fmt)) {
      case AV_SAMPLE_FMT_U8:
        return (double(base[index]) - 128.0) / 128.0;
      case AV_SAMPLE_FMT_S16: {
        int16_t v;
        std::memcpy(&v, base + index * 2, 2);
        return v / 32768.0;
      }
      case AV_SAMPLE_FMT_S32: {
        int32_t v;
        std::memcpy(&v, base + index * 4, 4);
        return v / 2147483648.0;
      }
      case AV_SAMPLE_FMT_S64: {
        int64_t v;
        std::memcpy(&v, base + index * 8, 8);
        return double(v) / 9223372036854775808.0;
      }
      case AV_SAMPLE_FMT_FLT: {
        float v;
        std::memcpy(&v, base + index * 4, 4);
        return v;
      }
      case AV_SAMPLE_FMT_DBL: {
        double v;
        std::memcpy(&v, base + index * 8, 8);
        return v;
      }
      default:
        return 0.0;
    }
  };
  const size_t start = out.size();
  out.resize(start + size_t(n));
  bool finite = true;
  for (int i = 0; i < n; ++i) {
    double v;
    if (mode == ChannelMode::first) {
      v = sample(0, i);
    } else {
      v = 0;
      for (int ch = 0; ch < channels; ++ch) v += sample(ch, i);
      v /= channels;
    }
    finite &= std::isfinite(float(v));
    out[start + i] = float(v);
  }
  // Float formats can carry NaN/inf (a corrupt float WAV): they would poison every mel frame.
  if (!finite) throw Error(Errc::bad_audio, "the audio holds non-finite (NaN or infinite) samples");
}

bool known_sample_format(int fmt) {
  switch (av_get_packed_sample_fmt(static_cast<AVSampleFormat>(fmt))) {
    case AV_SAMPLE_FMT_U8:
    case AV_SAMPLE_FMT_S16:
    case AV_SAMPLE_FMT_S32:
    case AV_SAMPLE_FMT_S64:
    case AV_SAMPLE_FMT_FLT:
    case AV_SAMPLE_FMT_DBL:
      return true;
    default:
      return false;
  }
}

// Shared body of decode_file/decode_memory once the format context is open.
// With a sink, samples go to it frame by frame and result.samples stays empty.
// `decoded` (may be null) receives the stream's description with the exact decoded duration.
DecodedAudio decode_opened(AVFormatContext* fmt, const std::string& what, const DecodeOptions& opt,
                           const SampleSink& sink, StreamInfo* decoded = nullptr) {
  int err = avformat_find_stream_info(fmt, nullptr);
  if (err < 0)
    throw Error(Errc::bad_audio, what + ": cannot read stream info (" + av_error_string(err) + ")");
  const AVCodec* codec = nullptr;
  int stream_index = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (stream_index == AVERROR_STREAM_NOT_FOUND)
    throw Error(Errc::bad_audio, what + ": the container has no audio stream");
  if (stream_index < 0 || !codec)
    throw Error(Errc::unsupported_media, what + ": no decoder for its audio stream");
  AVStream* stream = fmt->streams[stream_index];
  const AVCodecParameters* par = stream->codecpar;
  if (par->sample_rate <= 0 || par->sample_rate > opt.max_sample_rate)
    throw Error(Errc::too_large, what + ": sample rate " + std::to_string(par->sample_rate) +
                                     " Hz is outside 1.." + std::to_string(opt.max_sample_rate));
  if (par->ch_layout.nb_channels <= 0 || par->ch_layout.nb_channels > opt.max_channels)
    throw Error(Errc::too_large, what + ": " + std::to_string(par->ch_layout.nb_channels) +
                                     " channels is outside 1.." + std::to_string(opt.max_channels));

  CodecPtr dec(avcodec_alloc_context3(codec));
  if (!dec) throw Error(Errc::internal, "out of memory allocating a decoder");
  if ((err = avcodec_parameters_to_context(dec.get(), par)) < 0 ||
      (err = avcodec_open2(dec.get(), codec, nullptr)) < 0)
    throw Error(Errc::bad_audio, what + ": cannot open the " + codec->name + " decoder (" +
                                     av_error_string(err) + ")");

  DecodedAudio result;
  result.container = fmt->iformat->name;
  result.codec = codec->name;
  result.sample_rate = dec->sample_rate > 0 ? dec->sample_rate : par->sample_rate;
  result.source_channels = par->ch_layout.nb_channels;
  StreamInfo info{result.sample_rate, result.source_channels, result.container, result.codec, 0.0};
  if (stream->duration > 0 && stream->time_base.den > 0)
    info.seconds = double(stream->duration) * av_q2d(stream->time_base);
  else if (fmt->duration > 0)
    info.seconds = double(fmt->duration) / AV_TIME_BASE;
  size_t total = 0;          // samples decoded (the sink may have taken them)
  std::vector<float> block;  // one frame's samples on their way to the sink
  // Stop as soon as the duration limit is passed: a bomb never allocates more than this.
  const double limit_samples = opt.max_seconds * result.sample_rate;

  PacketPtr pkt(av_packet_alloc());
  FramePtr frame(av_frame_alloc());
  if (!pkt || !frame) throw Error(Errc::internal, "out of memory allocating packets");
  int bad_packets = 0;
  bool read_error = false;
  std::string last_error;
  auto drain = [&]() {
    while (true) {
      int r = avcodec_receive_frame(dec.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) {
        ++bad_packets;
        last_error = av_error_string(r);
        return;
      }
      const int channels = frame->ch_layout.nb_channels;
      if (frame->sample_rate != result.sample_rate || channels <= 0 ||
          channels > opt.max_channels || !known_sample_format(frame->format)) {
        av_frame_unref(frame.get());
        throw Error(Errc::bad_audio, what + ": the audio stream changes rate or format mid-stream");
      }
      std::vector<float>& to = sink ? block : result.samples;
      const size_t before = to.size();
      append_frame(frame.get(), channels, opt.channels, to);
      av_frame_unref(frame.get());
      total += to.size() - before;
      if (sink && !block.empty()) {
        sink(info, block.data(), block.size());
        block.clear();
      }
      if (double(total) > limit_samples)
        throw Error(Errc::too_long, what + ": longer than the maximum of " +
                                        std::to_string(int(opt.max_seconds)) + " s");
    }
  };
  Deadline* deadline = static_cast<Deadline*>(fmt->interrupt_callback.opaque);
  while (true) {
    if (deadline && Deadline::expired(deadline))  // a slow codec, not only slow I/O
      throw Error(Errc::bad_audio, what + ": decoding timed out");
    err = av_read_frame(fmt, pkt.get());
    if (err == AVERROR_EOF) break;
    if (err == AVERROR_EXIT) throw Error(Errc::bad_audio, what + ": decoding timed out");
    if (err < 0) {
      // A read error after some audio is a truncated file: keep what decoded (as ffmpeg does).
      last_error = av_error_string(err);
      read_error = true;
      break;
    }
    if (pkt->stream_index == stream_index) {
      int s = avcodec_send_packet(dec.get(), pkt.get());
      if (s < 0 && s != AVERROR(EAGAIN)) {
        ++bad_packets;  // a corrupt packet: skip it, as ffmpeg does
        last_error = av_error_string(s);
      }
    }
    av_packet_unref(pkt.get());
    drain();
    if (bad_packets > 1000 && total == 0)
      throw Error(Errc::bad_audio, what + ": no decodable audio (" + last_error + ")");
  }
  avcodec_send_packet(dec.get(), nullptr);  // flush
  drain();
  if (total == 0)
    throw Error(Errc::bad_audio, what + ": no audio samples decoded" +
                                     (last_error.empty() ? "" : " (" + last_error + ")"));
  // Cut short: a read error, or clearly less audio than the header states. A duration estimated
  // from the bitrate (MP3 without a Xing header) is no promise, and AAC priming or codec delay
  // move the end by a few frames: 0.25 s or 2% of slack.
  const double got = double(total) / result.sample_rate;
  const bool stated =
      info.seconds > 0 && fmt->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE;
  result.stated_seconds = stated ? info.seconds : 0.0;
  result.truncated =
      read_error || (stated && got < info.seconds - std::max(0.25, 0.02 * info.seconds));
  // FFmpeg's WAV reader trims the stated data size to the file, so a cut WAV states what it holds:
  // the RIFF size (bytes 4..7, 0 or 0xffffffff from recorders that stream) still tells.
  if (!result.truncated && std::strcmp(fmt->iformat->name, "wav") == 0 && par->block_align > 0) {
    const int64_t size = avio_size(fmt->pb);
    if (size > 0 && avio_seek(fmt->pb, 4, SEEK_SET) == 4) {
      const uint32_t riff = avio_rl32(fmt->pb);
      if (riff != 0 && riff != 0xffffffffu && int64_t(riff) + 8 > size) {
        result.truncated = true;
        result.stated_seconds =
            got + double(int64_t(riff) + 8 - size) / (double(par->block_align) * par->sample_rate);
      }
    }
  }
  if (decoded) {
    *decoded = info;
    decoded->seconds = got;
    decoded->truncated = result.truncated;
    decoded->stated_seconds = result.stated_seconds;
  }
  if (bad_packets)
    SA_DEBUG("%s: skipped %d corrupt packets (%s)", what.c_str(), bad_packets, last_error.c_str());
  return result;
}

void open_error(int err, const std::string& what) {
  if (err == AVERROR(ENOENT) || err == AVERROR(EACCES) || err == AVERROR(EISDIR))
    throw Error(Errc::io, what + ": cannot open (" + av_error_string(err) + ")");
  if (err == AVERROR_EXIT) throw Error(Errc::bad_audio, what + ": decoding timed out");
  throw Error(Errc::unsupported_media,
              what + ": not a recognised audio file (" + av_error_string(err) + ")");
}

void check_options(const DecodeOptions& opt) {
  if (!(opt.max_seconds > 0) || !(opt.timeout_seconds > 0) || opt.max_sample_rate <= 0 ||
      opt.max_channels <= 0)
    throw Error(Errc::invalid_argument, "decode options: limits must be positive");
}

Deadline make_deadline(const DecodeOptions& opt) {
  return {std::chrono::steady_clock::now() +
          std::chrono::milliseconds(int64_t(std::min(opt.timeout_seconds, 1e7) * 1000))};
}

}  // namespace

namespace {
// Only the audio containers we support may be opened (README "stepaudio mel"). FFmpeg would
// otherwise also take playlists and indirection formats (ffconcat, HLS, image2, ...) that open
// further files or URLs named inside the bytes: an upload reading the server's own files.
constexpr const char* kContainers =
    "wav,w64,mp3,mov,mp4,m4a,3gp,3g2,mj2,flac,ogg,matroska,webm,caf,aac,aiff";

// avformat_open_input with the container allow-list, and the protocols a context may open for
// itself (the file itself for a path; none for memory, whose bytes come through custom I/O).
int open_input(AVFormatContext** fmt, const char* path, const char* protocols) {
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "format_whitelist", kContainers, 0);
  av_dict_set(&opts, "protocol_whitelist", protocols, 0);
  const int err = avformat_open_input(fmt, path, nullptr, &opts);
  av_dict_free(&opts);
  return err;
}

DecodedAudio decode_file_impl(const std::string& path, const DecodeOptions& options,
                              const SampleSink& sink, StreamInfo* decoded = nullptr) {
  check_options(options);
  init_ffmpeg_logging();
  Deadline deadline = make_deadline(options);
  AVFormatContext* raw = avformat_alloc_context();
  if (!raw) throw Error(Errc::internal, "out of memory");
  raw->interrupt_callback = {&Deadline::expired, &deadline};
  int err = open_input(&raw, path.c_str(), "file");  // frees raw on failure
  if (err < 0) open_error(err, path);
  FormatPtr fmt(raw);
  return decode_opened(fmt.get(), path, options, sink, decoded);
}

DecodedAudio decode_memory_impl(const uint8_t* data, size_t size, const DecodeOptions& options,
                                const SampleSink& sink, StreamInfo* decoded = nullptr) {
  check_options(options);
  init_ffmpeg_logging();
  if (size == 0) throw Error(Errc::bad_audio, "audio upload is empty");
  Deadline deadline = make_deadline(options);
  MemoryReader reader{data, size};
  constexpr int kIoBuffer = 64 * 1024;
  auto* buffer = static_cast<uint8_t*>(av_malloc(kIoBuffer));
  if (!buffer) throw Error(Errc::internal, "out of memory");
  IoPtr io(avio_alloc_context(buffer, kIoBuffer, 0, &reader, &MemoryReader::read, nullptr,
                              &MemoryReader::seek));
  if (!io) {
    av_free(buffer);
    throw Error(Errc::internal, "out of memory");
  }
  AVFormatContext* raw = avformat_alloc_context();
  if (!raw) throw Error(Errc::internal, "out of memory");
  raw->pb = io.get();
  raw->flags |= AVFMT_FLAG_CUSTOM_IO;
  raw->interrupt_callback = {&Deadline::expired, &deadline};
  int err = open_input(&raw, nullptr, "none");
  if (err < 0) open_error(err, "audio upload");
  FormatPtr fmt(raw);  // closed before io (declared later, destroyed first)
  return decode_opened(fmt.get(), "audio upload", options, sink, decoded);
}
}  // namespace

DecodedAudio decode_file(const std::string& path, const DecodeOptions& options) {
  return decode_file_impl(path, options, {});
}
DecodedAudio decode_memory(const uint8_t* data, size_t size, const DecodeOptions& options) {
  return decode_memory_impl(data, size, options, {});
}
StreamInfo decode_file_stream(const std::string& path, const DecodeOptions& options,
                              const SampleSink& sink) {
  if (!sink) throw Error(Errc::invalid_argument, "decode_file_stream needs a sink");
  StreamInfo info;
  decode_file_impl(path, options, sink, &info);
  return info;
}
StreamInfo decode_memory_stream(const uint8_t* data, size_t size, const DecodeOptions& options,
                                const SampleSink& sink) {
  if (!sink) throw Error(Errc::invalid_argument, "decode_memory_stream needs a sink");
  StreamInfo info;
  decode_memory_impl(data, size, options, sink, &info);
  return info;
}

}  // namespace stepaudio::audio
