#include "models/dtype.hpp"

#include <array>
#include <string>
#include <utility>

#include "topology/error.hpp"

namespace paratwin {

namespace {
constexpr std::array<std::pair<DType, std::string_view>, 4> kNames = {{
    {DType::kBf16, "bf16"},
    {DType::kFp8, "fp8"},
    {DType::kFp32, "fp32"},
    {DType::kInt32, "int32"},
}};
}  // namespace

std::string_view to_string(DType dtype) {
  for (const auto& [value, name] : kNames) {
    if (value == dtype) return name;
  }
  return "unknown";
}

DType parse_dtype(std::string_view text) {
  for (const auto& [value, name] : kNames) {
    if (name == text) return value;
  }
  fail("dtype '{}' is not supported: use one of bf16, fp8, fp32, int32", std::string(text));
}

}  // namespace paratwin
