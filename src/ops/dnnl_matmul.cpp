#include "ops/dnnl_matmul.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(STEPAUDIO_HAVE_DNNL)
#include <dnnl.hpp>

#include <memory>

#include "util/log.h"

extern "C" void omp_set_num_threads(int);  // libgomp, oneDNN's runtime (linked in CMake)
#endif

namespace stepaudio::ops::dnnl_gemm {

#if defined(STEPAUDIO_HAVE_DNNL)
namespace {
using dt = dnnl::memory::data_type;
using Dims = dnnl::memory::dims;
using dim = dnnl::memory::dim;
constexpr dim kRt = DNNL_RUNTIME_DIM_VAL;

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// Per-thread state: a stream and one primitive per (input type, layout of b), created with
// runtime dimensions and leading strides, so every shape (prompts and audio lengths differ in M)
// reuses it: no JIT compilation per shape and no cache to bound. (Runtime strides in
// both dimensions would select oneDNN's reference kernel: the unit stride must be known.)
struct ThreadState {
  dnnl::stream stream{cpu_engine()};
  dnnl::matmul prim[2][2];  // [bf16][b column-major]
  bool made[2][2] = {};
};

// rows x cols, unit stride along the rows (column-major) or the columns (row-major).
dnnl::memory::desc desc(dt t, dim rows, dim cols, dim ld, bool col_major) {
  return dnnl::memory::desc({rows, cols}, t, col_major ? Dims{1, ld} : Dims{ld, 1});
}

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
    dnnl::matmul& prim = st->prim[bf16][bt];
    if (!st->made[bf16][bt]) {
      const auto pd = dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(desc(in, kRt, kRt, kRt, false), desc(in, kRt, kRt, kRt, bt),
                             desc(dt::f32, kRt, kRt, kRt, false)),
          cpu_engine());
      prim = dnnl::matmul(pd);
      st->made[bf16][bt] = true;
    }
    const auto d = [](size_t v) { return static_cast<dim>(v); };
    dnnl::memory am(desc(in, d(M), d(K), d(a.rs), false), cpu_engine(), const_cast<void*>(a.data));
    dnnl::memory bm(desc(in, d(K), d(N), d(bt ? b.cs : b.rs), bt), cpu_engine(),
                    const_cast<void*>(b.data));
    dnnl::memory cm(desc(dt::f32, d(M), d(N), d(ldc), false), cpu_engine(), c);
    prim.execute(st->stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    st->stream.wait();
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
