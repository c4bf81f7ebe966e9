// Per-thread scratch memory for the kernels' temporary arrays (bf16 copies of activations,
// dequantized weight panels). Why: a std::vector per call zero-fills its memory and, above glibc's
// mmap threshold, page-faults every page in again on each call; at the encoder's shapes that was
// ~10% of a GEMM (clear_page + memset in `perf`). A slot keeps the largest block it was asked for
// (up to kScratchKeepBytes; larger requests get a block that is freed when the slot is next used)
// for the thread's lifetime, uninitialised.
// Thread-safety: thread-local. The pointer stays valid until the same thread asks for the same slot
// again; other threads may use it meanwhile (e.g. pool workers filling the caller's buffer).
#pragma once

#include <cstddef>

namespace stepaudio::ops {

// model_logits: the decoder's shared lm_head output when several sessions step together (model/
// session.cpp), taken on the calling thread around a matmul whose own slots are distinct.
enum class ScratchSlot { gemm_activations, gemm_panel, gemm_out, model_logits, kCount };
inline constexpr size_t kScratchKeepBytes = size_t{64} << 20;

// At least `bytes` of 64-byte aligned memory for this thread's `slot`.
void* scratch(ScratchSlot slot, size_t bytes);

template <class T>
T* scratch_array(ScratchSlot slot, size_t n) {
  return static_cast<T*>(scratch(slot, n * sizeof(T)));
}

}  // namespace stepaudio::ops
