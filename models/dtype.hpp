#pragma once
/// Element types of tensors moved or computed by a schedule.

#include <cstdint>
#include <string_view>

namespace paratwin {

enum class DType : std::uint8_t { kBf16, kFp8, kFp32, kInt32 };

/// Bytes per element (fp8 is 1; block scales are counted by the ops that carry them).
[[nodiscard]] constexpr double dtype_bytes(DType dtype) {
  switch (dtype) {
    case DType::kBf16:
      return 2;
    case DType::kFp8:
      return 1;
    case DType::kFp32:
      return 4;
    case DType::kInt32:
      return 4;
  }
  return 0;
}
[[nodiscard]] std::string_view to_string(DType dtype);
/// Parses "bf16", "fp8", "fp32", "int32"; throws paratwin::Error naming the accepted values.
[[nodiscard]] DType parse_dtype(std::string_view text);

}  // namespace paratwin
