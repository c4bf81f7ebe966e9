// Tokenizer speed (docs/PERF.md "## Tokenizer"): load of the full reference tokenizer.json, and
// encode/decode throughput in MB/s (bytes of UTF-8 text) on Chinese and English text built by
// repeating the real transcripts of ../shared/data/manifest.jsonl to ~1 MB.
//   build/bench/bench_tokenizer --benchmark_counters_tabular=true
// Needs ../shared/data (or STEPAUDIO_SHARED_DATA); exits with a message when absent.
#include <benchmark/benchmark.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "stepaudio/tokenizer.h"

namespace fs = std::filesystem;
using stepaudio::text::Tokenizer;

namespace {

fs::path shared_data() {
  if (const char* env = std::getenv("STEPAUDIO_SHARED_DATA")) return env;
  return STEPAUDIO_SHARED_DATA;
}

const std::string& tokenizer_json() {
  static const std::string text = [] {
    std::string out;
    gzFile f =
        gzopen((shared_data() / "tokenizer/reference_qwen3_tokenizer.json.gz").c_str(), "rb");
    if (!f) return out;
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    gzclose(f);
    return out;
  }();
  return text;
}

// The file, unpacked once to the temp folder so load() measures the real path (read + parse).
const std::string& tokenizer_path() {
  static const std::string path = [] {
    const auto p = fs::temp_directory_path() / "stepaudio_bench_tokenizer.json";
    std::ofstream(p, std::ios::binary) << tokenizer_json();
    return p.string();
  }();
  return path;
}

const std::shared_ptr<const Tokenizer>& tokenizer() {
  static const auto tok = Tokenizer::load(tokenizer_path());
  return tok;
}

// ~1 MB of transcripts in one language, one transcript per line.
const std::string& corpus(const std::string& lang) {
  static std::map<std::string, std::string> cache;
  auto& text = cache[lang];
  if (!text.empty()) return text;
  std::vector<std::string> lines;
  std::ifstream in(shared_data() / "manifest.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    if (j["lang"].is_string() && j["lang"] == lang && j["reference"].is_string())
      lines.push_back(j["reference"]);
  }
  while (text.size() < (1 << 20) && !lines.empty())
    for (const auto& l : lines) text += l + "\n";
  return text;
}

void BM_LoadTokenizerJson(benchmark::State& state) {
  tokenizer_path();
  for (auto _ : state) benchmark::DoNotOptimize(Tokenizer::load(tokenizer_path()));
  state.counters["file_MB"] = static_cast<double>(tokenizer_json().size()) / 1e6;
}

void encode(benchmark::State& state, const std::string& lang) {
  const auto& text = corpus(lang);
  const auto& tok = tokenizer();
  size_t n_ids = 0;
  for (auto _ : state) n_ids = tok->encode(text).size();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n_ids);
  state.counters["text_MB"] = static_cast<double>(text.size()) / 1e6;
}

// First encode with an empty word cache (a freshly loaded tokenizer for each iteration).
void encode_cold(benchmark::State& state, const std::string& lang) {
  const auto& text = corpus(lang);
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = Tokenizer::from_json(tokenizer_json(), "bench");
    state.ResumeTiming();
    benchmark::DoNotOptimize(tok->encode(text));
    state.PauseTiming();
    tok.reset();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

void decode(benchmark::State& state, const std::string& lang) {
  const auto& text = corpus(lang);
  const auto& tok = tokenizer();
  const auto ids = tok->encode(text);
  for (auto _ : state) benchmark::DoNotOptimize(tok->decode(ids));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

void BM_EncodeChinese(benchmark::State& s) {
  encode(s, "zh");
}
void BM_EncodeEnglish(benchmark::State& s) {
  encode(s, "en");
}
void BM_EncodeColdChinese(benchmark::State& s) {
  encode_cold(s, "zh");
}
void BM_EncodeColdEnglish(benchmark::State& s) {
  encode_cold(s, "en");
}
void BM_DecodeChinese(benchmark::State& s) {
  decode(s, "zh");
}
void BM_DecodeEnglish(benchmark::State& s) {
  decode(s, "en");
}

}  // namespace

BENCHMARK(BM_LoadTokenizerJson)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK(BM_EncodeChinese)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeEnglish)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeColdChinese)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_EncodeColdEnglish)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_DecodeChinese)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeEnglish)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  if (!fs::exists(shared_data() / "tokenizer/reference_qwen3_tokenizer.json.gz")) {
    std::fprintf(stderr, "bench_tokenizer: shared data absent at %s\n", shared_data().c_str());
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
