#include "stepaudio/npy.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "stepaudio/error.h"

namespace stepaudio {
namespace {

void write_raw(const std::string& path, const char* descr, const void* data, size_t elem_size,
               const std::vector<size_t>& shape) {
  std::string dims;
  size_t count = 1;
  for (size_t d : shape) {
    dims += std::to_string(d) + ",";
    count *= d;
  }
  if (shape.size() > 1) dims.pop_back();  // (3,) for 1-D, (3,4) otherwise
  std::string header =
      "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64,
  // ending in '\n'.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(Errc::io, "cannot write " + path);
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(reinterpret_cast<const char*>(magic), 8);
  uint16_t hlen = static_cast<uint16_t>(header.size());
  unsigned char le[2] = {static_cast<unsigned char>(hlen & 0xff),
                         static_cast<unsigned char>(hlen >> 8)};
  out.write(reinterpret_cast<const char*>(le), 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(count * elem_size));
  if (!out) throw Error(Errc::io, "short write to " + path);
}

}  // namespace

void write_npy(const std::string& path, const float* data, const std::vector<size_t>& shape) {
  write_raw(path, "<f4", data, sizeof(float), shape);
}

void write_npy(const std::string& path, const int32_t* data, const std::vector<size_t>& shape) {
  write_raw(path, "<i4", data, sizeof(int32_t), shape);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::io, "cannot open " + path);
  char magic[10];
  if (!in.read(magic, 10) || std::memcmp(magic, "\x93NUMPY", 6) != 0 || magic[6] != 1)
    throw Error(Errc::invalid_argument, path + ": not a version-1 .npy file");
  size_t hlen = static_cast<unsigned char>(magic[8]) | (static_cast<unsigned char>(magic[9]) << 8);
  std::string header(hlen, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(hlen)))
    throw Error(Errc::io, path + ": truncated header");
  NpyArray arr;
  if (header.find("'<f4'") != std::string::npos)
    arr.dtype = "<f4";
  else if (header.find("'<i4'") != std::string::npos)
    arr.dtype = "<i4";
  else
    throw Error(Errc::invalid_argument, path + ": only <f4 and <i4 are supported");
  if (header.find("'fortran_order': True") != std::string::npos)
    throw Error(Errc::invalid_argument, path + ": Fortran order is not supported");
  size_t open = header.find('('), close = header.find(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    throw Error(Errc::invalid_argument, path + ": no shape in header");
  size_t count = 1;
  std::string dims = header.substr(open + 1, close - open - 1);
  for (size_t pos = 0; pos < dims.size();) {
    size_t comma = dims.find(',', pos);
    std::string tok =
        dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (tok.find_first_not_of(' ') != std::string::npos) {
      arr.shape.push_back(std::stoul(tok));
      count *= arr.shape.back();
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  char* dst;
  if (arr.dtype == "<f4") {
    arr.f32.resize(count);
    dst = reinterpret_cast<char*>(arr.f32.data());
  } else {
    arr.i32.resize(count);
    dst = reinterpret_cast<char*>(arr.i32.data());
  }
  if (!in.read(dst, static_cast<std::streamsize>(count * 4)))
    throw Error(Errc::io, path + ": truncated data");
  return arr;
}

void make_dump_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw Error(Errc::io, "cannot create the dump folder '" + dir + "' (" + ec.message() + ")");
}

}  // namespace stepaudio
