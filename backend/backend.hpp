#pragma once
/// The backend interface: something that executes a schedule and returns a trace. No CUDA or SimGrid type appears
/// here; backends are made by factories in their own folders (sim/sim_backend.hpp, backend/cuda/cuda_backend.hpp).

#include <memory>
#include <string_view>

#include "models/schedule.hpp"
#include "topology/placement.hpp"
#include "traces/trace.hpp"

namespace paratwin {

class Backend {
 public:
  Backend() = default;
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  Backend(Backend&&) = delete;
  Backend& operator=(Backend&&) = delete;

  [[nodiscard]] virtual std::string_view name() const = 0;
  /// Executes `schedule` on the ranks placed by `placement` and returns one event per op of every rank.
  [[nodiscard]] virtual Trace run(const Schedule& schedule, const Placement& placement) = 0;
};

}  // namespace paratwin
