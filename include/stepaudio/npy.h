// Reading and writing NumPy .npy files (format 1.0, little-endian, C order) for the --dump
// intermediates and the reference tests. Only the dtypes we exchange are supported: float32, int32.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stepaudio {

// data: shape[0] x shape[1] x ... floats, row-major. Throws Error(io) when the file cannot be
// written.
void write_npy(const std::string& path, const float* data, const std::vector<size_t>& shape);
void write_npy(const std::string& path, const int32_t* data, const std::vector<size_t>& shape);

// Creates the --dump folder (and its parents). Throws Error(io) naming the folder and the reason
// when it cannot be made (a path through a file, no permission, ...).
void make_dump_dir(const std::string& dir);

struct NpyArray {
  std::vector<size_t> shape;
  std::string dtype;         // "<f4" or "<i4"
  std::vector<float> f32;    // filled for <f4
  std::vector<int32_t> i32;  // filled for <i4
};
// Throws Error(io) on a missing/short file, Error(invalid_argument) on an unsupported header.
NpyArray read_npy(const std::string& path);

}  // namespace stepaudio
