#include "backend/cuda/fp8_gemm.hpp"

#include "backend/cuda/cuda_check.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {

namespace {

using i64 = std::int64_t;

i64 ceil_div(i64 a, i64 b) {
  return (a + b - 1) / b;
}

const char* scaling_name(Fp8Scaling scaling) {
  return scaling == Fp8Scaling::kBlock ? "block (1x128 activation, 128x128 weight)" : "per-tensor";
}

}  // namespace

i64 fp8_padded_rows(Fp8Scaling scaling, i64 m) {
  return scaling == Fp8Scaling::kBlock ? ceil_div(m, 4) * 4 : m;
}

i64 fp8_activation_scale_count(Fp8Scaling scaling, i64 m, i64 k) {
  return scaling == Fp8Scaling::kBlock ? fp8_padded_rows(scaling, m) * ceil_div(k, kFp8ScaleBlock) : 1;
}

i64 fp8_weight_scale_count(Fp8Scaling scaling, i64 n, i64 k) {
  // cuBLASLt pads each n-block's row of k-block scales to a multiple of 4 floats (16 bytes).
  return scaling == Fp8Scaling::kBlock ? ceil_div(n, kFp8ScaleBlock) * (ceil_div(ceil_div(k, kFp8ScaleBlock), 4) * 4)
                                       : 1;
}

struct Fp8Gemm::Plan {
  cublasLtHandle_t lt = nullptr;  ///< the handle the algorithm was chosen with
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::size_t workspace_bytes = 0;  ///< the limit the algorithm was chosen under

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }

  void set_scales(const Fp8GemmOperands& o) const {
    // cuBLASLt's A is the weight, B the activation (see the header).
    PARATWIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &o.w_scale, sizeof(o.w_scale)));
    PARATWIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &o.x_scale, sizeof(o.x_scale)));
  }
};

Fp8Gemm::Fp8Gemm(Fp8Scaling scaling, i64 n, i64 k) : scaling_(scaling), n_(n), k_(k) {
  if (n < 1 || k < 1) fail("fp8 GEMM with n = {} and k = {}: both must be at least 1", n, k);
  if (scaling == Fp8Scaling::kBlock && k % kFp8ScaleBlock != 0) {
    fail(
        "fp8 GEMM with n = {} and k = {}: block scaling (1x128 activation, 128x128 weight) needs k to be a "
        "multiple of 128",
        n, k);
  }
  if (k % 16 != 0) fail("fp8 GEMM with n = {} and k = {}: k must be a multiple of 16 (16-byte fp8 rows)", n, k);
  PARATWIN_ASSERT(n <= INT32_MAX && k <= INT32_MAX, "fp8 GEMM n {} k {} beyond int range", n, k);
}

Fp8Gemm::~Fp8Gemm() = default;

Fp8Gemm::Plan& Fp8Gemm::plan(const Fp8GemmLaunch& launch, const Fp8GemmOperands& o, i64 m) {
  if (const auto it = plans_.find(m); it != plans_.end()) {
    PARATWIN_ASSERT(it->second->lt == launch.lt && it->second->workspace_bytes <= launch.workspace_bytes,
                    "fp8 GEMM plan reused with another cuBLASLt handle or a smaller workspace");
    return *it->second;
  }
  auto p = std::make_unique<Plan>();
  p->lt = launch.lt;
  p->workspace_bytes = launch.workspace_bytes;
  const auto u = [](i64 v) { return static_cast<std::uint64_t>(v); };
  PARATWIN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  PARATWIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)));
  PARATWIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)));
  const std::int32_t a_mode = scaling_ == Fp8Scaling::kBlock ? CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F
                                                             : CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
  const std::int32_t b_mode = scaling_ == Fp8Scaling::kBlock ? CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F
                                                             : CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
  PARATWIN_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode, sizeof(a_mode)));
  PARATWIN_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode, sizeof(b_mode)));
  p->set_scales(o);  // before the heuristic: cuBLASLt may look at the scale pointers when it picks the algorithm
  PARATWIN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_8F_E4M3, u(k_), u(n_), k_));
  PARATWIN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_8F_E4M3, u(k_), u(m), k_));
  PARATWIN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_16BF, u(n_), u(m), n_));

  cublasLtMatmulPreference_t pref = nullptr;
  PARATWIN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const auto st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &launch.workspace_bytes, sizeof(launch.workspace_bytes));
  const auto hst = st == CUBLAS_STATUS_SUCCESS ? cublasLtMatmulAlgoGetHeuristic(launch.lt, p->op, p->a, p->b, p->d,
                                                                                p->d, pref, 1, &heuristic, &found)
                                               : st;
  cublasLtMatmulPreferenceDestroy(pref);
  if (hst != CUBLAS_STATUS_SUCCESS && hst != CUBLAS_STATUS_NOT_SUPPORTED) PARATWIN_CUBLAS_CHECK(hst);
  if (found == 0) {
    fail(
        "cuBLASLt (version {}) has no fp8 GEMM for m {} n {} k {} with {} scaling (block scaling needs cuBLAS >= 12.9 "
        "on a Hopper GPU)",
        cublasLtGetVersion(), m, n_, k_, scaling_name(scaling_));
  }
  p->algo = heuristic.algo;
  return *plans_.emplace(m, std::move(p)).first->second;
}

void Fp8Gemm::run(const Fp8GemmLaunch& launch, const Fp8GemmOperands& o, i64 m) {
  if (m == 0) return;
  PARATWIN_ASSERT(m > 0 && m <= INT32_MAX, "fp8 GEMM with m = {}", m);
  const Plan& p = plan(launch, o, fp8_padded_rows(scaling_, m));
  p.set_scales(o);
  const float alpha = 1.0f, beta = 0.0f;
  PARATWIN_CUBLAS_CHECK(cublasLtMatmul(launch.lt, p.op, &alpha, o.w, p.a, o.x, p.b, &beta, o.y, p.d, o.y, p.d, &p.algo,
                                       launch.workspace, launch.workspace_bytes, launch.stream));
}

}  // namespace paratwin::cuda
