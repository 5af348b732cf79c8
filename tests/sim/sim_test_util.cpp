#include "tests/sim/sim_test_util.hpp"

#include <fmt/format.h>

#include <catch2/catch.hpp>

#include "topology/rank_layout.hpp"

namespace paratwin::test {

Cluster h200_cluster(int nodes, int gpus_per_node) {
  Cluster c;
  c.name = "test-h200";
  c.nodes = nodes;
  c.gpus_per_node = gpus_per_node;
  c.gpu = GpuSpec{"H200-SXM", 141e9, 989.4e12, 1978.9e12, 4.8e12};
  c.scale_up.kind = "nvswitch";
  c.scale_up.bandwidth_bytes_per_s = 450e9;
  c.scale_up.latency_s = 0.6e-6;
  c.scale_up.nvls = false;
  c.scale_out.nics_per_node = gpus_per_node;
  c.scale_out.nic_bandwidth_bytes_per_s = 50e9;
  c.scale_out.latency_s = 2.7e-6;
  c.scale_out.topology = ScaleOutTopology::kRailOptimized;
  c.scale_out.oversubscription = 1.0;
  return c;
}

Placement place(int world, const Cluster& cluster) {
  ParallelConfig config;
  config.tp_size = world;
  return Placement(RankLayout(config), cluster);
}

ScheduleMaker::ScheduleMaker(int ranks) {
  schedule_.meta.model = "hand-made";
  schedule_.meta.config.tp_size = ranks;
  schedule_.ranks.resize(static_cast<std::size_t>(ranks));
}

Op& ScheduleMaker::add(int rank, Stream stream, std::vector<int> deps, int layer, const std::string& name) {
  auto& ops = schedule_.ranks[static_cast<std::size_t>(rank)];
  Op op;
  op.index = static_cast<int>(ops.size());
  op.name = name.empty() ? fmt::format("op{}", op.index) : fmt::format("{}#{}", name, op.index);
  op.stream = stream;
  op.layer = layer;
  op.deps = std::move(deps);
  ops.push_back(std::move(op));
  return ops.back();
}

int ScheduleMaker::compute(int rank, const ComputeOp& body, std::vector<int> deps, int layer, const std::string& name) {
  Op& op = add(rank, Stream::kCompute, std::move(deps), layer, name.empty() ? "compute" : name);
  op.body = body;
  return op.index;
}

std::vector<int> ScheduleMaker::collective(const std::vector<int>& ranks, CollectiveKind kind, std::int64_t bytes,
                                           const std::vector<std::vector<int>>& deps, int layer, DType dtype) {
  std::vector<int> out;
  const std::int64_t instance = next_instance_++;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    Op& op =
        add(ranks[i], Stream::kComm, deps.empty() ? std::vector<int>{} : deps[i], layer, std::string(to_string(kind)));
    CollectiveOp c;
    c.kind = kind;
    c.family = GroupFamily::kTp;
    c.group_index = ranks.front();  // one group per first rank in these tests
    c.group_size = static_cast<int>(ranks.size());
    c.dtype = dtype;
    c.bytes = bytes;
    c.instance = instance;
    op.body = c;
    out.push_back(op.index);
  }
  return out;
}

std::vector<int> ScheduleMaker::all_to_all(const std::vector<int>& ranks,
                                           const std::vector<std::vector<std::int64_t>>& send, int layer,
                                           const std::vector<std::vector<int>>& deps) {
  std::vector<int> out;
  const std::int64_t instance = next_instance_++;
  const std::size_t n = ranks.size();
  for (std::size_t i = 0; i < n; ++i) {
    Op& op = add(ranks[i], Stream::kComm, deps.empty() ? std::vector<int>{} : deps[i], layer, "all_to_all");
    CollectiveOp c;
    c.kind = CollectiveKind::kAllToAll;
    c.family = GroupFamily::kMoeEp;
    c.group_index = ranks.front();
    c.group_size = static_cast<int>(n);
    c.send_bytes = send[i];
    c.recv_bytes.resize(n);
    for (std::size_t j = 0; j < n; ++j) c.recv_bytes[j] = send[j][i];
    for (const auto b : c.send_bytes) c.bytes += b;
    c.instance = instance;
    op.body = c;
    out.push_back(op.index);
  }
  return out;
}

std::pair<int, int> ScheduleMaker::send_recv(int src, int dst, std::int64_t bytes, std::vector<int> src_deps,
                                             std::vector<int> dst_deps, int layer) {
  const std::int64_t match = next_match_++;
  Op& s = add(src, Stream::kComm, std::move(src_deps), layer, "send");
  s.body = P2POp{true, dst, bytes, DType::kBf16, match};
  const int si = s.index;
  Op& r = add(dst, Stream::kComm, std::move(dst_deps), layer, "recv");
  r.body = P2POp{false, src, bytes, DType::kBf16, match};
  return {si, r.index};
}

ComputeOp gemm(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype) {
  ComputeOp op;
  op.kind = ComputeKind::kGemm;
  op.shape.m = m;
  op.shape.n = n;
  op.shape.k = k;
  op.dtype = dtype;
  op.flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  op.bytes = dtype_bytes(dtype) * static_cast<double>(m * k + k * n + m * n);
  return op;
}

ComputeOp cost(double flops, double bytes, ComputeKind kind) {
  ComputeOp op;
  op.kind = kind;
  op.flops = flops;
  op.bytes = bytes;
  return op;
}

SimOptions alpha_beta() {
  SimOptions options;
  options.nccl_model = false;
  return options;
}

const Event& event(const Trace& trace, int rank, int op) {
  for (const Event& e : trace.events) {
    if (e.rank == rank && e.op == op) return e;
  }
  FAIL("no event for rank " << rank << " op " << op);
  throw std::logic_error("unreachable");
}

Schedule deepseek_like_prefill(int world, int tp, int layers, std::int64_t tokens) {
  ScheduleMaker maker(world);
  const int cp = world / tp;
  const std::int64_t local = tokens / cp;  // tokens per CP rank
  const std::int64_t hidden = 7168;
  const double dlocal = static_cast<double>(local);
  const double dhidden = static_cast<double>(hidden);
  for (int layer = 0; layer < layers; ++layer) {
    // Attention: projections, CP all-gather of the compressed KV (576 bf16 per token), attention, output proj.
    std::vector<int> qkv(static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) {
      maker.compute(r, cost(0, 4.0 * dlocal * dhidden, ComputeKind::kRmsNorm), {}, layer, "rmsnorm");
      qkv[static_cast<std::size_t>(r)] = maker.compute(r, gemm(local, (1536 + 576) / 1, hidden), {}, layer, "qkv");
    }
    for (int t = 0; t < tp; ++t) {
      std::vector<int> group;
      std::vector<std::vector<int>> deps;
      for (int c = 0; c < cp; ++c) {
        group.push_back(c * tp + t);
        deps.push_back({qkv[static_cast<std::size_t>(c * tp + t)]});
      }
      if (cp > 1) maker.collective(group, CollectiveKind::kAllGather, local * 576 * 2, deps, layer);
    }
    for (int r = 0; r < world; ++r) {
      const auto& ops = maker.get().ranks[static_cast<std::size_t>(r)];
      const int last_comm = cp > 1 ? static_cast<int>(ops.size()) - 1 : qkv[static_cast<std::size_t>(r)];
      ComputeOp attn;
      attn.kind = ComputeKind::kSparseAttention;
      attn.shape.q_tokens = local;
      attn.shape.kv_tokens = tokens;
      attn.shape.topk = 2048;
      attn.flops = 2.0 * dlocal * 2048 * (128 / tp) * (576 + 512);
      attn.bytes = static_cast<double>(tokens) * 656;
      const int a = maker.compute(r, attn, {last_comm}, layer, "attention");
      maker.compute(r, gemm(local, hidden, 128 * 128 / tp), {a}, layer, "o_proj");
    }
    for (int g = 0; g < cp; ++g) {
      std::vector<int> group;
      std::vector<std::vector<int>> deps;
      for (int t = 0; t < tp; ++t) {
        const int r = g * tp + t;
        group.push_back(r);
        deps.push_back({static_cast<int>(maker.get().ranks[static_cast<std::size_t>(r)].size()) - 1});
      }
      if (tp > 1) maker.collective(group, CollectiveKind::kAllReduce, local * hidden * 2, deps, layer);
    }
    // MoE over EP groups of min(world, 64) consecutive ranks: route, dispatch, grouped GEMM, combine (uniform).
    const int ep = std::min(world, 64);
    const std::int64_t per_peer_dispatch = local * 8 * 7408 / ep;
    const std::int64_t per_peer_combine = local * 8 * 14336 / ep;
    std::vector<int> route(static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) {
      route[static_cast<std::size_t>(r)] =
          maker.compute(r, cost(0, dlocal * dhidden * 2.0, ComputeKind::kMoeRoute), {}, layer, "route");
    }
    const std::vector<std::vector<std::int64_t>> dispatch(
        static_cast<std::size_t>(ep), std::vector<std::int64_t>(static_cast<std::size_t>(ep), per_peer_dispatch));
    const std::vector<std::vector<std::int64_t>> combine(
        static_cast<std::size_t>(ep), std::vector<std::int64_t>(static_cast<std::size_t>(ep), per_peer_combine));
    for (int g = 0; g < world / ep; ++g) {
      std::vector<int> group;
      std::vector<std::vector<int>> deps;
      for (int i = 0; i < ep; ++i) {
        group.push_back(g * ep + i);
        deps.push_back({route[static_cast<std::size_t>(g * ep + i)]});
      }
      const auto dispatched = maker.all_to_all(group, dispatch, layer, deps);
      std::vector<std::vector<int>> expert_deps;
      for (int i = 0; i < ep; ++i) {
        const int r = g * ep + i;
        ComputeOp experts;
        experts.kind = ComputeKind::kGroupedGemm;
        experts.dtype = DType::kFp8;
        const std::int64_t rows = local * 8;  // tokens × top-8 arriving on this rank (uniform)
        const int local_experts = std::max(1, 256 / ep);
        experts.shape.m = rows;
        experts.shape.group_rows.assign(static_cast<std::size_t>(local_experts), rows / local_experts);
        experts.flops = 2.0 * static_cast<double>(rows) * 3 * dhidden * 2048;
        experts.bytes = 3.0 * dhidden * 2048 * local_experts;
        expert_deps.push_back({maker.compute(r, experts, {dispatched[static_cast<std::size_t>(i)]}, layer, "experts")});
      }
      const auto combined = maker.all_to_all(group, combine, layer, expert_deps);
      for (int i = 0; i < ep; ++i) {
        maker.compute(g * ep + i, cost(0, dlocal * dhidden * 4.0, ComputeKind::kResidualAdd),
                      {combined[static_cast<std::size_t>(i)]}, layer, "residual");
      }
    }
  }
  Schedule s = maker.take();
  s.meta.layers = layers;
  s.meta.prompt_tokens = tokens;
  return s;
}

}  // namespace paratwin::test
