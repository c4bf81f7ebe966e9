// Chunk planning for long recordings: the model hears at most 25 s per chunk. The official code
// cuts every 25 s, often mid-word; we cut at the quietest point (lowest short-time energy) in the
// last few seconds before the limit, so no chunk exceeds the limit and words stay whole.
// plan_chunks() (whole signal) and ChunkPlanner (a signal arriving in pieces) share next_cut(), so
// they give the same chunks by construction.
#include <algorithm>
#include <cmath>
#include <optional>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"

namespace stepaudio::audio {
namespace {

struct PlanParams {
  size_t max_len, search, win, hop;
};

PlanParams params(const ChunkOptions& opt) {
  if (!(opt.max_seconds > 0) || opt.max_seconds > 3600 || !(opt.search_seconds >= 0) ||
      opt.search_seconds >= opt.max_seconds || !(opt.frame_ms > 0) || opt.frame_ms > 1000)
    throw Error(Errc::invalid_argument,
                "chunk options: need 0 < max_seconds <= 3600, 0 <= search_seconds < max_seconds, "
                "0 < frame_ms <= 1000");
  // hop: 10 ms steps, fine enough to land in a pause, cheap enough for hours.
  return {size_t(opt.max_seconds * kSampleRate), size_t(opt.search_seconds * kSampleRate),
          std::max<size_t>(1, size_t(opt.frame_ms * kSampleRate / 1000)), 160};
}

// The quietest cut point in [lo, hi): the centre of the window (of `win` samples, stepped by `hop`)
// with the lowest energy; ties go to the latest window so chunks stay as long as allowed. Sample i
// of the signal (n samples) is x[i - x_first].
size_t quietest_point(const float* x, size_t x_first, size_t n, size_t lo, size_t hi, size_t win,
                      size_t hop) {
  size_t best = hi;
  double best_energy = INFINITY;
  for (size_t centre = lo; centre < hi; centre += hop) {
    size_t a = centre >= win / 2 ? centre - win / 2 : 0;
    size_t b = std::min(n, a + win);
    double e = 0;
    for (size_t i = a; i < b; ++i) e += double(x[i - x_first]) * x[i - x_first];
    if (e <= best_energy) {
      best_energy = e;
      best = centre;
    }
  }
  return best;
}

// Where the chunk starting at `begin` ends, given samples [x_first, have) of the signal; `eof`:
// have is the signal's length. Empty when more samples are needed to decide. Reads samples from
// begin + max_len - search - win/2 (clamped to 0) to begin + max_len + win only.
std::optional<size_t> next_cut(const PlanParams& p, const float* x, size_t x_first, size_t have,
                               bool eof, size_t begin) {
  const size_t limit = begin + p.max_len;
  if (eof && have - begin <= p.max_len) return have;  // the last chunk
  // Not the last, and every window the search may read is present (its end is <= limit + win).
  if (!eof && have <= limit + p.win) return std::nullopt;
  if (p.search == 0) return limit;
  // Windows centred in [limit - search, limit]; the cut is a window centre, <= limit.
  const size_t cut = quietest_point(x, x_first, have, limit - p.search, limit + 1, p.win, p.hop);
  return std::min(cut, limit);
}

}  // namespace

std::vector<Chunk> plan_chunks(const float* pcm, size_t n, const ChunkOptions& opt) {
  const PlanParams p = params(opt);
  std::vector<Chunk> chunks;
  for (size_t begin = 0; begin < n;) {
    const size_t cut = *next_cut(p, pcm, 0, n, /*eof=*/true, begin);
    chunks.push_back({begin, cut});
    begin = cut;
  }
  return chunks;
}

ChunkPlanner::ChunkPlanner(const ChunkOptions& options) : options_(options) {
  params(options);  // validates
}

void ChunkPlanner::push(const float* pcm, size_t n) {
  buf_.insert(buf_.end(), pcm, pcm + n);
  have_ += n;
  cut(false);
}

void ChunkPlanner::finish() {
  cut(true);
}

void ChunkPlanner::cut(bool eof) {
  const PlanParams p = params(options_);
  while (begin_ < have_) {
    const std::optional<size_t> end = next_cut(p, buf_.data(), buf_first_, have_, eof, begin_);
    if (!end) break;
    PlannedChunk c;
    c.range = {begin_, *end};
    c.pcm.assign(buf_.begin() + (begin_ - buf_first_), buf_.begin() + (*end - buf_first_));
    ready_.push_back(std::move(c));
    begin_ = *end;
    // Keep the look-behind the next search may read (windows reach win/2 before their centre, and
    // centres may lie before the chunk's start when search is close to max_seconds).
    const size_t reach = p.max_len > p.search + p.win ? 0 : p.search + p.win - p.max_len;
    const size_t keep = begin_ > reach ? begin_ - reach : 0;
    if (keep > buf_first_) {
      buf_.erase(buf_.begin(), buf_.begin() + (keep - buf_first_));
      buf_first_ = keep;
    }
  }
}

bool ChunkPlanner::next(PlannedChunk& out) {
  if (ready_.empty()) return false;
  out = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

}  // namespace stepaudio::audio
