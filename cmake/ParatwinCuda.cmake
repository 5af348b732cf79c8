# CUDA/NCCL detection. PARATWIN_ENABLE_CUDA=AUTO turns the CUDA backend on when nvcc and nccl.h are found;
# ON makes their absence an error; OFF skips it. Sets PARATWIN_HAVE_CUDA.
set(PARATWIN_HAVE_CUDA OFF)
if(NOT PARATWIN_ENABLE_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    find_package(CUDAToolkit)
  endif()
  find_path(NCCL_INCLUDE_DIR NAMES nccl.h HINTS $ENV{NCCL_HOME}/include ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
  find_library(NCCL_LIBRARY NAMES nccl HINTS $ENV{NCCL_HOME}/lib ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(PARATWIN_HAVE_CUDA ON)
  elseif(PARATWIN_ENABLE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "PARATWIN_ENABLE_CUDA=ON but nvcc (${CMAKE_CUDA_COMPILER}), the CUDA toolkit or NCCL "
                        "(nccl.h: ${NCCL_INCLUDE_DIR}, libnccl: ${NCCL_LIBRARY}) was not found")
  endif()
endif()

if(PARATWIN_HAVE_CUDA)
  # Hopper only: wgmma/TMA need sm_90a. CMake 3.25 cannot spell "90a" in CUDA_ARCHITECTURES, so pass -gencode.
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  # CMake 3.25 cannot pass C++20 to nvcc 13 (no CUDA20 dialect flags known); the .cu files are C++17.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  enable_language(CUDA)
  set(PARATWIN_CUDA_GENCODE "-gencode=arch=compute_90a,code=sm_90a")
  if(NOT TARGET paratwin_nccl)
    add_library(paratwin_nccl UNKNOWN IMPORTED)
    set_target_properties(paratwin_nccl PROPERTIES IMPORTED_LOCATION "${NCCL_LIBRARY}"
                                                   INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
  endif()
endif()
