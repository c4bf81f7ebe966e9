#include "ops/dnnl_matmul.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(STEPAUDIO_HAVE_DNNL)
#include <dnnl.hpp>

#include <algorithm>
#include <memory>
#include <vector>

#include "ops/scratch.h"
#include "util/log.h"

extern "C" void omp_set_num_threads(int);  // libgomp, oneDNN's runtime (linked in CMake)
#endif

namespace stepaudio::ops::dnnl_gemm {

#if defined(STEPAUDIO_HAVE_DNNL)
namespace {
using dt = dnnl::memory::data_type;
using Dims = dnnl::memory::dims;
using dim = dnnl::memory::dim;

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// rows x cols, unit stride along the rows (column-major) or the columns (row-major).
dnnl::memory::desc desc(dt t, dim rows, dim cols, dim ld, bool col_major) {
  return dnnl::memory::desc({rows, cols}, t, col_major ? Dims{1, ld} : Dims{ld, 1});
}

// Per-thread state: a stream and the primitives of the last shapes used, compiled for their exact
// shapes and strides. Why fixed shapes: oneDNN 2.6 then picks its brgemm kernels
// (`brg:avx512_core_bf16`), 4-12% faster than the `gemm:jit` that runtime dimensions get at our
// prefill/encoder chunk shapes (M 155-500, N 128, K 1280-18944; docs/PERF.md), and brgemm needs a
// dense c, hence the c staging below. A shape compiles in ~0.3-0.9 ms; a prefill or encoder pass
// uses a handful (one per K and tail), so the LRU bound is never the working set.
struct Shape {
  bool bf16, bt;
  dim M, N, K, lda, ldb;
  bool operator==(const Shape&) const = default;
};
struct ThreadState {
  static constexpr size_t kCached = 32;
  struct Entry {
    Shape shape;
    dnnl::matmul prim;
    uint64_t used;
  };
  dnnl::stream stream{cpu_engine()};
  std::vector<Entry> cache;
  uint64_t tick = 0;

  dnnl::matmul& get(const Shape& s) {
    for (Entry& e : cache)
      if (e.shape == s) {
        e.used = ++tick;
        return e.prim;
      }
    const dt in = s.bf16 ? dt::bf16 : dt::f32;
    const auto pd = dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(desc(in, s.M, s.K, s.lda, false), desc(in, s.K, s.N, s.ldb, s.bt),
                           desc(dt::f32, s.M, s.N, s.N, false)),
        cpu_engine());
    if (cache.size() == kCached)
      cache.erase(std::min_element(cache.begin(), cache.end(),
                                   [](const Entry& a, const Entry& b) { return a.used < b.used; }));
    cache.push_back({s, dnnl::matmul(pd), ++tick});
    return cache.back().prim;
  }
};

// Set when oneDNN refused a primitive (e.g. a CPU it has no bf16 kernel for): from then on the
// built-in kernels run, without an exception per call.
std::atomic<bool> g_failed{false};
}  // namespace

bool enabled() {
  static const bool on = [] {
    const char* e = std::getenv("STEPAUDIO_DNNL");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on && !g_failed.load(std::memory_order_relaxed);
}

bool matmul(bool bf16, size_t M, size_t N, size_t K, Operand a, Operand b, float* c, size_t ldc) {
  // Destroyed when the thread exits (pools come and go with sessions); for the main thread that is
  // before the static engine, as thread-local destructors run first.
  static thread_local std::unique_ptr<ThreadState> st;
  const dt in = bf16 ? dt::bf16 : dt::f32;
  try {
    if (!st) {
      omp_set_num_threads(1);  // this thread's OpenMP team: itself (see the header)
      st = std::make_unique<ThreadState>();
    }
    const bool bt = b.rs == 1 && b.cs != 1;  // b(k, n) at n * cs + k
    const auto d = [](size_t v) { return static_cast<dim>(v); };
    const Shape shape{bf16, bt, d(M), d(N), d(K), d(a.rs), d(bt ? b.cs : b.rs)};
    dnnl::matmul& prim = st->get(shape);
    // c rows ldc apart (a column chunk of a wider y): computed densely, then copied.
    float* dense = ldc == N ? c : scratch_array<float>(ScratchSlot::gemm_out, M * N);
    dnnl::memory am(desc(in, d(M), d(K), d(a.rs), false), cpu_engine(), const_cast<void*>(a.data));
    dnnl::memory bm(desc(in, d(K), d(N), shape.ldb, bt), cpu_engine(), const_cast<void*>(b.data));
    dnnl::memory cm(desc(dt::f32, d(M), d(N), d(N), false), cpu_engine(), dense);
    prim.execute(st->stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    st->stream.wait();
    if (dense != c)
      for (size_t m = 0; m < M; ++m) std::memcpy(c + m * ldc, dense + m * N, N * sizeof(float));
    return true;
  } catch (const dnnl::error& e) {
    if (!g_failed.exchange(true))
      SA_WARN("oneDNN matmul unavailable (%s), using the built-in kernels", e.what());
    return false;
  }
}
#else
bool enabled() {
  return false;
}
bool matmul(bool, size_t, size_t, size_t, Operand, Operand, float*, size_t) {
  return false;
}
#endif

}  // namespace stepaudio::ops::dnnl_gemm
