#pragma once
/// Side-by-side comparison of a predicted and a measured trace of one schedule (docs/compare.md).

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "traces/error_stats.hpp"
#include "traces/trace.hpp"

namespace paratwin {

/// One op present in both traces, matched by (rank, op).
struct OpComparison {
  int rank = 0, op = 0, layer = -1, group_size = 0;
  std::string name, kind, stream;
  double size_bytes = 0;                   ///< nccl-tests' S for communication, HBM bytes for compute
  double predicted_s = 0, measured_s = 0;  ///< busy times (op_instances.hpp)
  double relative_error = 0;
};

/// Errors of a set of ops (one kind, one collective size bucket, one layer).
struct GroupError {
  std::string key;
  ErrorStats stats;
  double predicted_s = 0, measured_s = 0;  ///< Σ busy times over the set
  /// Σ (predicted − measured) busy time of the set's ops on the measured critical path / (predicted − measured)
  /// end to end; nullopt for groups other than kinds, or when the end-to-end times are equal.
  std::optional<double> share_of_difference;
};

/// nccl-tests bandwidths of one collective call in both traces (one row per call, at its lowest rank).
struct CollectiveComparison {
  int rank = 0, op = 0, group_size = 0;
  std::string name, kind, group;
  double size_bytes = 0;  ///< nccl-tests' S
  double predicted_s = 0, measured_s = 0;
  double predicted_algbw = 0, predicted_busbw = 0, measured_algbw = 0, measured_busbw = 0;  ///< bytes/s
};

struct PathStep {
  int rank = 0, op = 0;
  std::string name, kind;
  double start_s = 0, end_s = 0;
};

struct Comparison {
  TraceMeta predicted_meta, measured_meta;
  double predicted_e2e_s = 0, measured_e2e_s = 0, e2e_relative_error = 0;
  ErrorStats all_ops;
  std::vector<OpComparison> ops;
  std::vector<GroupError> by_kind, by_collective_size, by_layer;
  std::optional<double> unexplained_share;  ///< 1 − Σ kind shares: gaps, and ops off the measured path
  std::vector<CollectiveComparison> collectives;
  std::vector<PathStep> predicted_path, measured_path;  ///< in time order
  int predicted_critical_rank = -1, measured_critical_rank = -1;
  /// Index of the first step where the two paths differ (rank or op); nullopt when they are identical.
  std::optional<std::size_t> divergence;
};

/// Compares two traces of the same schedule. Throws paratwin::Error when either is foreign or empty, when their
/// schedule hashes differ, or when their op sets differ (naming the first (rank, op) that differs).
/// `predicted_source` and `measured_source` name the traces in messages.
[[nodiscard]] Comparison compare_traces(const Trace& predicted, const Trace& measured,
                                        const std::string& predicted_source, const std::string& measured_source);

/// Label of the power-of-4 byte bucket holding `bytes` ("[1 MiB, 4 MiB)"); "0 B" for zero.
[[nodiscard]] std::string size_bucket_label(double bytes);

}  // namespace paratwin
