#pragma once
/// nccl-tests' CUDACHECK/NCCLCHECK habit (file:line, and ncclGetLastError for NCCL), but throwing
/// paratwin::Error instead of exiting, so the engine can abort every communicator and report.

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "topology/error.hpp"

#define PARATWIN_CUDA_CHECK(call)                                                                              \
  do {                                                                                                         \
    const cudaError_t paratwin_err_ = (call);                                                                  \
    if (paratwin_err_ != cudaSuccess) {                                                                        \
      ::paratwin::fail("{}:{}: CUDA error {} ({}) in {}", __FILE__, __LINE__, cudaGetErrorName(paratwin_err_), \
                       cudaGetErrorString(paratwin_err_), #call);                                              \
    }                                                                                                          \
  } while (false)

#define PARATWIN_NCCL_CHECK(comm_for_error, call)                                                                  \
  do {                                                                                                             \
    const ncclResult_t paratwin_res_ = (call);                                                                     \
    if (paratwin_res_ != ncclSuccess && paratwin_res_ != ncclInProgress) {                                         \
      const char* paratwin_last_ = ncclGetLastError(comm_for_error);                                               \
      ::paratwin::fail("{}:{}: NCCL error {} ({}) in {}{}{}", __FILE__, __LINE__, static_cast<int>(paratwin_res_), \
                       ncclGetErrorString(paratwin_res_), #call, paratwin_last_ != nullptr ? ": " : "",            \
                       paratwin_last_ != nullptr ? paratwin_last_ : "");                                           \
    }                                                                                                              \
  } while (false)

#define PARATWIN_CUBLAS_CHECK(call)                                                                             \
  do {                                                                                                          \
    const cublasStatus_t paratwin_st_ = (call);                                                                 \
    if (paratwin_st_ != CUBLAS_STATUS_SUCCESS) {                                                                \
      ::paratwin::fail("{}:{}: cuBLAS error {} ({}) in {}", __FILE__, __LINE__, static_cast<int>(paratwin_st_), \
                       cublasGetStatusString(paratwin_st_), #call);                                             \
    }                                                                                                           \
  } while (false)
