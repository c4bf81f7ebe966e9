// Chunk planning for long recordings: the model hears at most 25 s per chunk. The official code
// cuts every 25 s, often mid-word; we cut at the quietest point (lowest short-time energy) in the
// last few seconds before the limit, so no chunk exceeds the limit and words stay whole.
#include <algorithm>
#include <cmath>

#include "stepaudio/audio.h"
#include "stepaudio/error.h"

namespace stepaudio::audio {
namespace {

// The quietest cut point in [lo, hi): the centre of the window (of `win` samples, stepped by `hop`)
// with the lowest energy; ties go to the latest window so chunks stay as long as allowed.
size_t quietest_point(const float* pcm, size_t n, size_t lo, size_t hi, size_t win, size_t hop) {
  size_t best = hi;
  double best_energy = INFINITY;
  for (size_t centre = lo; centre < hi; centre += hop) {
    size_t a = centre >= win / 2 ? centre - win / 2 : 0;
    size_t b = std::min(n, a + win);
    double e = 0;
    for (size_t i = a; i < b; ++i) e += double(pcm[i]) * pcm[i];
    if (e <= best_energy) {
      best_energy = e;
      best = centre;
    }
  }
  return best;
}

}  // namespace

std::vector<Chunk> plan_chunks(const float* pcm, size_t n, const ChunkOptions& opt) {
  if (!(opt.max_seconds > 0) || opt.max_seconds > 3600 || !(opt.search_seconds >= 0) ||
      opt.search_seconds >= opt.max_seconds || !(opt.frame_ms > 0) || opt.frame_ms > 1000)
    throw Error(Errc::invalid_argument,
                "chunk options: need 0 < max_seconds <= 3600, 0 <= search_seconds < max_seconds, "
                "0 < frame_ms <= 1000");
  const size_t max_len = size_t(opt.max_seconds * kSampleRate);
  const size_t search = size_t(opt.search_seconds * kSampleRate);
  const size_t win = std::max<size_t>(1, size_t(opt.frame_ms * kSampleRate / 1000));
  const size_t hop = 160;  // 10 ms steps: fine enough to land in a pause, cheap enough for hours
  std::vector<Chunk> chunks;
  size_t begin = 0;
  while (begin < n) {
    if (n - begin <= max_len) {
      chunks.push_back({begin, n});
      break;
    }
    size_t limit = begin + max_len;
    size_t cut = limit;
    if (search > 0) {
      // Windows centred in [limit - search, limit]; the cut is a window centre, <= limit.
      cut = quietest_point(pcm, n, limit - search, limit + 1, win, hop);
      cut = std::min(cut, limit);
    }
    chunks.push_back({begin, cut});
    begin = cut;
  }
  return chunks;
}

}  // namespace stepaudio::audio
