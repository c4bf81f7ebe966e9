#include "stepaudio/dev_inputs.h"

#include "stepaudio/error.h"
#include "stepaudio/npy.h"

namespace stepaudio {

MelChunk read_mel_npy(const std::string& path) {
  NpyArray a = read_npy(path);
  if (a.dtype != "<f4" || a.shape.size() != 2)
    throw Error(Errc::invalid_argument, path + ": expected a float32 [n_mels][T] array");
  MelChunk c;
  c.n_mels = a.shape[0];
  c.n_frames = a.shape[1];
  c.data = std::move(a.f32);
  return c;
}

std::vector<int32_t> read_ids_npy(const std::string& path) {
  NpyArray a = read_npy(path);
  if (a.dtype != "<i4" || a.shape.size() != 1)
    throw Error(Errc::invalid_argument, path + ": expected an int32 1-D array");
  return a.i32;
}

}  // namespace stepaudio
