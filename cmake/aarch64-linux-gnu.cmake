# Cross toolchain for 64-bit ARM Linux (Debian: g++-aarch64-linux-gnu; libc in /usr/aarch64-linux-gnu).
#   cmake -S cross -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Binaries run on this x86 machine under qemu user mode (Debian: qemu-user): CMake uses the emulator
# below for ctest and gtest discovery. -cpu max enables every ARMv8/v9 extension qemu models
# (ASIMDDP among them); tests that need another CPU model call qemu themselves.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(STEPAUDIO_AARCH64_SYSROOT /usr/aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(CMAKE_FIND_ROOT_PATH ${STEPAUDIO_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(STEPAUDIO_QEMU_AARCH64 qemu-aarch64)
if(STEPAUDIO_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${STEPAUDIO_QEMU_AARCH64} -L ${STEPAUDIO_AARCH64_SYSROOT} -cpu max)
endif()
