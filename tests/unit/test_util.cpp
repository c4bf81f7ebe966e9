#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "stepaudio/error.h"
#include "stepaudio/npy.h"

using namespace stepaudio;

TEST(Npy, RoundTripsFloatAndInt) {
  auto dir = std::filesystem::temp_directory_path();
  std::string fpath = (dir / "sa_test_f.npy").string(), ipath = (dir / "sa_test_i.npy").string();
  std::vector<float> f = {1.5f, -2.0f, 3.25f, 0.0f, 1e-7f, 7.0f};
  write_npy(fpath, f.data(), {2, 3});
  auto a = read_npy(fpath);
  EXPECT_EQ(a.dtype, "<f4");
  EXPECT_EQ(a.shape, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(a.f32, f);
  std::vector<int32_t> i = {151688, -1, 7};
  write_npy(ipath, i.data(), {3});
  auto b = read_npy(ipath);
  EXPECT_EQ(b.shape, (std::vector<size_t>{3}));
  EXPECT_EQ(b.i32, i);
  std::remove(fpath.c_str());
  std::remove(ipath.c_str());
}

TEST(Npy, MissingFileIsIoError) {
  try {
    read_npy("/nonexistent/x.npy");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::io);
    EXPECT_STREQ(e.code_name(), "io_error");
  }
}
