#pragma once
/// Which launch the CUDA backend runs for the MoE experts' GEMMs (`paratwin run --moe-gemm`, CudaOptions::moe_gemm),
/// as SGLang's `--moe-runner-backend` picks its MoE runner. Part of the backend API (no CUDA type), so that the CLI
/// checks the flag in every build; the per-shape rule behind kAuto is backend/cuda_plan/moe_gemm_rule.hpp.

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace paratwin {

enum class MoeGemmChoice {
  kAuto,           ///< the per-shape rule (cuda_plan::auto_moe_gemm_method)
  kCublasStreams,  ///< one cuBLAS GEMM per expert over the rank's side streams (GroupedGemmMethod::kConcurrent)
  kHopperKernel,   ///< the backend's persistent Hopper kernel (kPersistentKernel), cuBLAS streams where it cannot run
};

/// The flag's spelling of each choice, in enum order.
inline constexpr std::array<std::string_view, 3> kMoeGemmChoiceNames = {"auto", "cublas-streams", "hopper-kernel"};

[[nodiscard]] constexpr std::string_view moe_gemm_choice_name(MoeGemmChoice choice) {
  return kMoeGemmChoiceNames[static_cast<std::size_t>(choice)];
}

/// The choice spelled `name`; nullopt for any other spelling.
[[nodiscard]] constexpr std::optional<MoeGemmChoice> parse_moe_gemm_choice(std::string_view name) {
  for (std::size_t i = 0; i < kMoeGemmChoiceNames.size(); ++i) {
    if (kMoeGemmChoiceNames[i] == name) return static_cast<MoeGemmChoice>(i);
  }
  return std::nullopt;
}

}  // namespace paratwin
