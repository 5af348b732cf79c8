#pragma once
/// The shapes of GEMM ops, shared by the layer builders and the bench sweep (models/bench_schedule.cpp), which times
/// the shapes the layers declare.

#include <cstddef>
#include <cstdint>

#include "models/schedule.hpp"

namespace paratwin::build {

/// Y [m × n] = X [m × k] · W [k × n].
inline ComputeShape gemm_shape(std::int64_t m, std::int64_t n, std::int64_t k) {
  ComputeShape s;
  s.m = m;
  s.n = n;
  s.k = k;
  return s;
}

/// `groups` GEMMs of `rows_per_group` rows each, every one n × k with its own weight (MLA's per-head absorb GEMMs,
/// equally loaded experts).
inline ComputeShape grouped_gemm_shape(std::int64_t groups, std::int64_t rows_per_group, std::int64_t n,
                                       std::int64_t k) {
  ComputeShape s = gemm_shape(groups * rows_per_group, n, k);
  s.group_rows.assign(static_cast<std::size_t>(groups), rows_per_group);
  return s;
}

}  // namespace paratwin::build
