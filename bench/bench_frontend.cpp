// Front-end speed on one core: 1 hour of audio through decode, resample and log-mel.
//   ninja -C build bench_frontend && taskset -c 0 build/bin/bench_frontend
// The 1-hour test files (44.1 kHz stereo AAC in .m4a, 16 kHz mono 16-bit WAV) are made once with
// the ffmpeg CLI in $TMPDIR (speech-like: a tone glide + noise bursts). Each stage is reported with
// the counter x_realtime = audio seconds processed per wall second.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "stepaudio/audio.h"

using namespace stepaudio;
namespace fs = std::filesystem;

namespace {
constexpr double kSeconds = 3600;

std::string test_file(const std::string& name, const std::string& args) {
  fs::path path = fs::temp_directory_path() / name;
  if (!fs::exists(path)) {
    std::string cmd =
        "ffmpeg -nostdin -loglevel error -y -f lavfi -i "
        "\"aevalsrc=0.3*sin(2*PI*(200+300*mod(t\\,3))*t)*gt(mod(t\\,1.7)\\,0.3)+0.02*random(0):s="
        "44100:d=3600\" " +
        args + " " + path.string();
    if (std::system(cmd.c_str()) != 0) return "";
  }
  return path.string();
}

std::vector<float> synthetic_16k(double seconds) {
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0, 0.05f);
  std::vector<float> x(size_t(seconds * audio::kSampleRate));
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * std::sin(0.07f * float(i % 100000)) + g(rng);
  return x;
}

void set_realtime(benchmark::State& state, double audio_seconds) {
  state.counters["x_realtime"] =
      benchmark::Counter(audio_seconds, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_LogMel_1h(benchmark::State& state) {
  auto pcm = synthetic_16k(kSeconds);
  auto chunks = audio::plan_chunks(pcm.data(), pcm.size());
  for (auto _ : state)
    for (const auto& c : chunks)
      benchmark::DoNotOptimize(audio::log_mel(pcm.data() + c.begin, c.end - c.begin));
  set_realtime(state, kSeconds);
}

void BM_ChunkPlan_1h(benchmark::State& state) {
  auto pcm = synthetic_16k(kSeconds);
  for (auto _ : state) benchmark::DoNotOptimize(audio::plan_chunks(pcm.data(), pcm.size()));
  set_realtime(state, kSeconds);
}

void BM_Resample_44k1_to_16k_1h(benchmark::State& state) {
  std::vector<float> x(size_t(kSeconds * 44100));
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * std::sin(0.01f * float(i % 100000));
  audio::Resampler r(44100, 16000);
  for (auto _ : state) benchmark::DoNotOptimize(r.process(x.data(), x.size()));
  set_realtime(state, kSeconds);
}

// The whole front end as a request runs it: decode + resample + chunk plan + mel of every chunk.
void front_end(benchmark::State& state, const std::string& path) {
  if (path.empty()) {
    state.SkipWithError("could not make the test file with the ffmpeg CLI");
    return;
  }
  double seconds = 0;
  for (auto _ : state) {
    auto decoded = audio::decode_file(path);
    auto pcm = audio::to_16k(decoded);
    seconds = double(pcm.size()) / audio::kSampleRate;
    for (const auto& c : audio::plan_chunks(pcm.data(), pcm.size()))
      benchmark::DoNotOptimize(audio::log_mel(pcm.data() + c.begin, c.end - c.begin));
  }
  set_realtime(state, seconds);
}

void BM_FrontEnd_AAC_44k1_stereo_1h(benchmark::State& state) {
  front_end(state, test_file("stepaudio_bench_1h_44k1_stereo.m4a", "-ac 2 -c:a aac -b:a 128k"));
}

void BM_FrontEnd_WAV_16k_mono_1h(benchmark::State& state) {
  front_end(state, test_file("stepaudio_bench_1h_16k_mono.wav", "-ac 1 -ar 16000 -c:a pcm_s16le"));
}

}  // namespace

#define ONE_HOUR_BENCH(fn) \
  BENCHMARK(fn)->Unit(benchmark::kSecond)->Iterations(1)->Repetitions(3)->ReportAggregatesOnly(true)
ONE_HOUR_BENCH(BM_LogMel_1h);
ONE_HOUR_BENCH(BM_ChunkPlan_1h);
ONE_HOUR_BENCH(BM_Resample_44k1_to_16k_1h);
ONE_HOUR_BENCH(BM_FrontEnd_AAC_44k1_stereo_1h);
ONE_HOUR_BENCH(BM_FrontEnd_WAV_16k_mono_1h);

BENCHMARK_MAIN();
