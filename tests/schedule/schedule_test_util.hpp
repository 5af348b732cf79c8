#pragma once
// Builders of small schedules for the schedule tests.

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "models/model_spec.hpp"
#include "models/schedule_builder.hpp"
#include "models/schedule_checks.hpp"
#include "tests/topology/layout_test_util.hpp"

namespace paratwin::test {

/// A context-parallel layout; its data parallelism, if any, is DP-attention.
inline ParallelConfig cp_config(int tp, int cp, int ep = 1, int pp = 1, int dp = 1) {
  return make_config(tp, pp, dp, dp > 1, cp, ep);
}

inline ScheduleOptions prefill(std::int64_t tokens, int layers, CpSplit split = CpSplit::kRoundRobin,
                               CpAlgorithm algo = CpAlgorithm::kAllGather) {
  ScheduleOptions o;
  o.phase = Phase::kPrefill;
  o.prompt_tokens = tokens;
  o.layers = layers;
  o.cp_split = split;
  o.cp_algorithm = algo;
  return o;
}

inline double total_flops(const Schedule& s) {
  double sum = 0;
  for (const auto& ops : s.ranks) {
    for (const auto& op : ops) {
      if (const auto* c = std::get_if<ComputeOp>(&op.body)) sum += c->flops;
    }
  }
  return sum;
}

/// FLOPs of the ops whose kind is in `kinds`, on one rank.
inline double rank_flops(const Schedule& s, int rank, std::initializer_list<ComputeKind> kinds) {
  double sum = 0;
  for (const auto& op : s.ranks[static_cast<std::size_t>(rank)]) {
    if (const auto* c = std::get_if<ComputeOp>(&op.body)) {
      for (const auto k : kinds) {
        if (c->kind == k) sum += c->flops;
      }
    }
  }
  return sum;
}

/// The op named `name` among `ops` (one rank's), or null.
inline const Op* find_op(const std::vector<Op>& ops, const std::string& name) {
  const auto it = std::find_if(ops.begin(), ops.end(), [&](const Op& op) { return op.name == name; });
  return it == ops.end() ? nullptr : &*it;
}

/// The op named `name` among `ops` (one rank's); REQUIREs that there is one.
inline const Op& require_op(const std::vector<Op>& ops, const std::string& name) {
  const Op* op = find_op(ops, name);
  INFO(name);
  REQUIRE(op != nullptr);
  return *op;
}

}  // namespace paratwin::test
