#pragma once
/// The report of `paratwin plan`: the ranked table, the Pareto front, the rejection counts (text), and the same as
/// JSON and CSV. Timings of the run itself stay out of the JSON "ranking" and "pareto" arrays and of the CSV, so
/// two runs of one plan (any --jobs, any MPI size) give identical ones.

#include <string>

#include "planner/planner.hpp"

namespace paratwin::cli {

struct PlanReportContext {
  const plan::PlanRequest& request;
  const plan::PlanResult& result;
  int jobs = 1;       ///< worker processes per rank
  int mpi_ranks = 1;  ///< MPI ranks that shared the work
};

[[nodiscard]] std::string plan_report_text(const PlanReportContext& context);
[[nodiscard]] std::string plan_report_json(const PlanReportContext& context);
[[nodiscard]] std::string plan_report_csv(const PlanReportContext& context);

}  // namespace paratwin::cli
