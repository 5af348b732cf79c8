#pragma once
/// The trace event of one op as both backends record it (here, in the backend API, because neither backend may
/// include the other): the op's identity and what its body says; each backend sets the times it measured or simulated.

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <variant>

#include "models/dtype.hpp"
#include "models/efficiency_size.hpp"
#include "models/schedule.hpp"
#include "topology/rank_layout.hpp"
#include "traces/trace.hpp"

namespace paratwin {

/// The event of `op` on `rank` (on `node`) without its start and end: compute events carry what `paratwin calibrate`
/// needs to fit the efficiency curves (size, dtype, causal), collectives their group ("attn_cp[2]") and size, p2p ops
/// a group of 2.
[[nodiscard]] inline Event op_event(const Op& op, int rank, int node) {
  Event e;
  e.rank = rank;
  e.node = node;
  e.op = op.index;
  e.name = op.name;
  e.stream = std::string(to_string(op.stream));
  e.layer = op.layer;
  if (const auto* c = std::get_if<ComputeOp>(&op.body)) {
    e.kind = std::string(to_string(c->kind));
    e.bytes = static_cast<std::int64_t>(std::llround(c->bytes));
    e.flops = c->flops;
    e.size = efficiency_curve_size(*c);
    e.dtype = std::string(to_string(c->dtype));
    e.causal = c->shape.causal;
  } else if (const auto* cl = std::get_if<CollectiveOp>(&op.body)) {
    e.kind = std::string(to_string(cl->kind));
    e.group = fmt::format("{}[{}]", family_key(cl->family), cl->group_index);
    e.group_size = cl->group_size;
    e.bytes = cl->bytes;
  } else {
    const auto& p = std::get<P2POp>(op.body);
    e.kind = p.is_send ? "send" : "recv";
    e.group_size = 2;
    e.bytes = p.bytes;
  }
  return e;
}

}  // namespace paratwin
