// The simulation core. Times that do not depend on the network are resolved analytically as soon as they are
// known (a compute op's end is its start plus its modelled duration), so SimGrid only sees the communication:
// one parallel task per collective instance (or per source GPU for very large groups) started by maestro at the
// instance's start date (a SimGrid timer), finished through Activity::on_completion. Rules:
//  - a stream runs its ops in order; an op becomes ready when its stream predecessor and its deps are done;
//  - a collective starts when every member has reached it (at the latest arrival), a send/recv pair when both sides
//    have; all members finish together when the network part is done;
//  - a comm event spans from the rank's arrival (its stream reached the op) to the end, as a CUDA event pair
//    around the NCCL call would measure it.

#include "sim/sim_engine.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>
#include <set>
#include <simgrid/kernel/Timer.hpp>
#include <simgrid/s4u.hpp>
#include <unordered_map>

#include "backend/op_event.hpp"
#include "sim/collectives/collective.hpp"
#include "sim/compute_model.hpp"
#include "sim/nccl_model.hpp"
#include "sim/platform.hpp"
#include "topology/error.hpp"

namespace paratwin::sim {
namespace {

namespace sg4 = simgrid::s4u;

// Above this many hosts a plan is split into one parallel task per source GPU (L07 walks the dense hosts² matrix).
constexpr std::size_t kMaxPtaskHosts = 64;

struct Instance {
  bool p2p = false;
  std::int64_t id = 0;                ///< instance (collectives) or match (p2p) number
  std::vector<std::int64_t> members;  ///< global op ids in group-position order (p2p: send, recv)
};

struct Matching {
  std::vector<std::int64_t> offset;  ///< first global op id of each rank
  std::vector<int> instance_of;      ///< per global op, -1 for compute
  std::vector<Instance> instances;
};

const CollectiveOp& coll(const Op& op) {
  return std::get<CollectiveOp>(op.body);
}
const P2POp& p2p(const Op& op) {
  return std::get<P2POp>(op.body);
}

Matching build_matching(const Schedule& schedule) {
  Matching m;
  const auto ranks = schedule.ranks.size();
  m.offset.resize(ranks + 1, 0);
  for (std::size_t r = 0; r < ranks; ++r) {
    m.offset[r + 1] = m.offset[r] + static_cast<std::int64_t>(schedule.ranks[r].size());
  }
  m.instance_of.assign(static_cast<std::size_t>(m.offset[ranks]), -1);
  std::unordered_map<std::int64_t, int> by_instance;
  std::unordered_map<std::int64_t, int> by_match;
  for (std::size_t r = 0; r < ranks; ++r) {
    const auto& ops = schedule.ranks[r];
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const Op& op = ops[i];
      if (op.index != static_cast<int>(i)) {
        fail("schedule rank {} op '{}': index {} but position {} (Op::index must equal the position)", r, op.name,
             op.index, i);
      }
      for (const int dep : op.deps) {
        if (dep < 0 || dep >= op.index) {
          fail("schedule rank {} op {} '{}': dep {} must name an earlier op of the rank", r, i, op.name, dep);
        }
      }
      const std::int64_t gid = m.offset[r] + static_cast<std::int64_t>(i);
      if (const auto* c = std::get_if<CollectiveOp>(&op.body)) {
        auto [it, fresh] = by_instance.try_emplace(c->instance, static_cast<int>(m.instances.size()));
        if (fresh) m.instances.push_back(Instance{false, c->instance, {}});
        m.instances[static_cast<std::size_t>(it->second)].members.push_back(gid);
        m.instance_of[static_cast<std::size_t>(gid)] = it->second;
      } else if (const auto* p = std::get_if<P2POp>(&op.body)) {
        auto [it, fresh] = by_match.try_emplace(p->match, static_cast<int>(m.instances.size()));
        if (fresh) m.instances.push_back(Instance{true, p->match, {}});
        m.instances[static_cast<std::size_t>(it->second)].members.push_back(gid);
        m.instance_of[static_cast<std::size_t>(gid)] = it->second;
      }
    }
  }
  return m;
}

int rank_of(const Matching& m, std::int64_t gid) {
  const auto it = std::upper_bound(m.offset.begin(), m.offset.end(), gid);
  return static_cast<int>(it - m.offset.begin()) - 1;
}

const Op& op_of(const Schedule& s, const Matching& m, std::int64_t gid) {
  const int r = rank_of(m, gid);
  return s.ranks[static_cast<std::size_t>(r)][static_cast<std::size_t>(gid - m.offset[static_cast<std::size_t>(r)])];
}

void check_matching(const Schedule& schedule, Matching& m) {
  for (Instance& inst : m.instances) {
    if (inst.p2p) {
      if (inst.members.size() != 2) {
        fail("schedule p2p match {}: {} ops carry it (first '{}' on rank {}); exactly one send and one recv must",
             inst.id, inst.members.size(), op_of(schedule, m, inst.members[0]).name, rank_of(m, inst.members[0]));
      }
      if (!p2p(op_of(schedule, m, inst.members[0])).is_send) std::swap(inst.members[0], inst.members[1]);
      const Op& send = op_of(schedule, m, inst.members[0]);
      const Op& recv = op_of(schedule, m, inst.members[1]);
      const int send_rank = rank_of(m, inst.members[0]);
      const int recv_rank = rank_of(m, inst.members[1]);
      if (!p2p(send).is_send || p2p(recv).is_send) {
        fail("schedule p2p match {}: ops '{}' (rank {}) and '{}' (rank {}) must be one send and one recv", inst.id,
             send.name, send_rank, recv.name, recv_rank);
      }
      if (p2p(send).peer != recv_rank || p2p(recv).peer != send_rank || p2p(send).bytes != p2p(recv).bytes) {
        fail(
            "schedule p2p match {}: send '{}' (rank {}, peer {}, {} bytes) and recv '{}' (rank {}, peer {}, {} "
            "bytes) do not pair up",
            inst.id, send.name, send_rank, p2p(send).peer, p2p(send).bytes, recv.name, recv_rank, p2p(recv).peer,
            p2p(recv).bytes);
      }
      continue;
    }
    std::sort(inst.members.begin(), inst.members.end());  // global ids ascend with rank: group order (see docs)
    const Op& first = op_of(schedule, m, inst.members[0]);
    const CollectiveOp& c0 = coll(first);
    if (static_cast<int>(inst.members.size()) != c0.group_size) {
      fail("schedule collective instance {} ('{}'): {} ranks issue it but its group_size is {}", inst.id, first.name,
           inst.members.size(), c0.group_size);
    }
    int previous_rank = -1;
    for (std::size_t pos = 0; pos < inst.members.size(); ++pos) {
      const Op& op = op_of(schedule, m, inst.members[pos]);
      const int r = rank_of(m, inst.members[pos]);
      if (r == previous_rank)
        fail("schedule collective instance {}: rank {} issues it twice ('{}')", inst.id, r, op.name);
      previous_rank = r;
      const CollectiveOp& c = coll(op);
      const bool same = c.kind == c0.kind && c.family == c0.family && c.group_index == c0.group_index &&
                        c.group_size == c0.group_size && c.dtype == c0.dtype && c.root == c0.root &&
                        (c.kind == CollectiveKind::kAllToAll || c.bytes == c0.bytes);
      if (!same) {
        fail(
            "schedule collective instance {}: '{}' on rank {} differs from '{}' on rank {} (kind, group, dtype, "
            "root or bytes)",
            inst.id, op.name, r, first.name, rank_of(m, inst.members[0]));
      }
      if (c.kind == CollectiveKind::kAllToAll) {
        const auto n = static_cast<std::size_t>(c.group_size);
        if (c.send_bytes.size() != n || c.recv_bytes.size() != n) {
          fail("schedule all-to-all '{}' on rank {}: send_bytes/recv_bytes must have group_size = {} entries", op.name,
               r, n);
        }
      }
    }
    if (c0.kind == CollectiveKind::kAllToAll) {
      const auto n = inst.members.size();
      for (std::size_t i = 0; i < n; ++i) {
        const CollectiveOp& ci = coll(op_of(schedule, m, inst.members[i]));
        for (std::size_t j = 0; j < n; ++j) {
          const CollectiveOp& cj = coll(op_of(schedule, m, inst.members[j]));
          if (ci.send_bytes[j] < 0 || ci.send_bytes[j] != cj.recv_bytes[i]) {
            fail("schedule all-to-all instance {}: position {} sends {} bytes to position {}, which expects {}",
                 inst.id, i, ci.send_bytes[j], j, cj.recv_bytes[i]);
          }
        }
      }
    }
  }
}

// The engine. SimGrid's signals are process-wide, so the current engine is reached through a static pointer.
class SimEngine {
 public:
  SimEngine(const Schedule& schedule, const Placement& placement, const Calibration& calibration,
            const SimOptions& options, std::vector<double> layer_weight)
      : schedule_(schedule),
        placement_(placement),
        calibration_(calibration),
        options_(options),
        compute_(placement.cluster().gpu, calibration.compute),
        nccl_(calibration.nccl),
        mask_(parse_algo_proto_mask(options.algorithms, options.protocols)),
        layer_weight_(std::move(layer_weight)) {}

  EngineResult run();

 private:
  struct InstState {
    int index = 0;
    int arrived = 0;
    double start = 0;
    int pending_tasks = 0;
    bool isolated = false;
    std::string memo_key;
    std::vector<sg4::ExecPtr> execs;
  };

  [[nodiscard]] int gpu_of_rank(int rank) const {
    const GpuLocation& loc = placement_.location(rank);
    return loc.node * placement_.cluster().gpus_per_node + loc.gpu;
  }
  void make_ready(std::int64_t gid, double t) { worklist_.emplace_back(gid, t); }
  void drain();
  void finish_op(std::int64_t gid, double finish);
  void launch(int inst);
  [[nodiscard]] double measured_curve_s(int inst, const std::vector<int>& gpus) const;
  void start_tasks(int inst);
  void on_done(const sg4::Activity& activity);
  void finish_instance(int inst, double t);
  FlowPlan make_plan(int inst, std::vector<int>& gpus, std::string& label);

  const Schedule& schedule_;
  const Placement& placement_;
  const Calibration& calibration_;
  const SimOptions& options_;
  ComputeModel compute_;
  NcclModel nccl_;
  AlgoProtoMask mask_;
  std::vector<double> layer_weight_;
  std::unique_ptr<Platform> platform_;
  Matching matching_;
  std::vector<const Op*> ops_;
  std::vector<int> rank_;
  std::vector<std::int64_t> succ_offset_, succ_;
  std::vector<int> pending_;
  std::vector<double> ready_, finish_;
  std::vector<InstState> states_;
  std::vector<std::vector<Flow>> inflight_flows_;
  std::vector<std::vector<std::pair<int, double>>> inflight_caps_;
  std::deque<std::pair<std::int64_t, double>> worklist_;
  std::unordered_map<std::string, double> memo_;
  std::unordered_map<std::string, std::pair<int, std::vector<int>>> leaders_;  // key → (leader, followers)
  std::vector<sg4::ExecPtr> graveyard_;
  EngineResult result_;
  std::vector<double> link_bytes_;
  bool draining_ = false;

 public:
  static SimEngine* current;
};

SimEngine* SimEngine::current = nullptr;

void SimEngine::drain() {
  if (draining_) return;  // the outer drain() picks up what a nested finish pushed
  draining_ = true;
  while (!worklist_.empty()) {
    const auto [gid, t] = worklist_.front();
    worklist_.pop_front();
    const Op& op = *ops_[static_cast<std::size_t>(gid)];
    ready_[static_cast<std::size_t>(gid)] = t;
    if (const auto* c = std::get_if<ComputeOp>(&op.body)) {
      finish_op(gid, t + compute_.op_time_s(*c));
      continue;
    }
    const int inst = matching_.instance_of[static_cast<std::size_t>(gid)];
    InstState& st = states_[static_cast<std::size_t>(inst)];
    st.start = st.arrived == 0 ? t : std::max(st.start, t);
    ++st.arrived;
    if (st.arrived == static_cast<int>(matching_.instances[static_cast<std::size_t>(inst)].members.size()))
      launch(inst);
  }
  draining_ = false;
}

void SimEngine::finish_op(std::int64_t gid, double finish) {
  const auto g = static_cast<std::size_t>(gid);
  finish_[g] = finish;
  for (auto k = succ_offset_[g]; k < succ_offset_[g + 1]; ++k) {
    const auto s = static_cast<std::size_t>(succ_[static_cast<std::size_t>(k)]);
    ready_[s] = std::max(ready_[s], finish);
    if (--pending_[s] == 0) make_ready(static_cast<std::int64_t>(s), ready_[s]);
  }
}

FlowPlan SimEngine::make_plan(int inst, std::vector<int>& gpus, std::string& label) {
  const Instance& in = matching_.instances[static_cast<std::size_t>(inst)];
  PlanContext ctx{*platform_, nccl_, mask_, options_.nccl_model,
                  options_.enable_nvls && placement_.cluster().scale_up.nvls};
  gpus.clear();
  for (const auto gid : in.members) gpus.push_back(gpu_of_rank(rank_[static_cast<std::size_t>(gid)]));
  if (in.p2p) {
    const P2POp& send = p2p(*ops_[static_cast<std::size_t>(in.members[0])]);
    FlowPlan plan = plan_send_recv(ctx, gpus[0], gpus[1], send.bytes);
    const bool cross = platform_->node_of(gpus[0]) != platform_->node_of(gpus[1]);
    label = fmt::format("send_recv {}: {}/{}", cross ? "network" : "nvlink", plan.algorithm, plan.protocol);
    return plan;
  }
  const CollectiveOp& c = coll(*ops_[static_cast<std::size_t>(in.members[0])]);
  const GroupGeometry group = make_geometry(*platform_, gpus);
  FlowPlan plan;
  if (c.kind == CollectiveKind::kAllToAll) {
    std::vector<std::vector<std::int64_t>> matrix;
    matrix.reserve(in.members.size());
    for (const auto gid : in.members) matrix.push_back(coll(*ops_[static_cast<std::size_t>(gid)]).send_bytes);
    plan = plan_all_to_all(ctx, group, matrix);
  } else {
    plan = plan_collective(ctx, group, c);
  }
  label = fmt::format("{} {} ranks on {} node(s): {}{}{}", to_string(c.kind), group.size(), group.nodes.size(),
                      plan.algorithm, plan.protocol.empty() ? "" : "/", plan.protocol);
  return plan;
}

// The time of a single-node call from the calibration's measured curve of its (kind, group size), −1 when none.
double SimEngine::measured_curve_s(int inst, const std::vector<int>& gpus) const {
  if (calibration_.collectives.empty()) return -1;
  for (const int gpu : gpus) {
    if (platform_->node_of(gpu) != platform_->node_of(gpus.front())) return -1;
  }
  const Instance& in = matching_.instances[static_cast<std::size_t>(inst)];
  const Op& first = *ops_[static_cast<std::size_t>(in.members[0])];
  if (in.p2p) {
    const CollectiveCurve* curve = calibration_.curve_for("send", 2);
    return curve != nullptr ? curve->seconds_at(static_cast<double>(p2p(first).bytes)) : -1;
  }
  const CollectiveOp& c = coll(first);
  const CollectiveCurve* curve = calibration_.curve_for(to_string(c.kind), c.group_size);
  if (curve == nullptr) return -1;
  // nccl-tests' size: the larger of a rank's buffers (all-gather output, reduce-scatter input).
  const bool gathered = c.kind == CollectiveKind::kAllGather || c.kind == CollectiveKind::kReduceScatter;
  return curve->seconds_at(static_cast<double>(c.bytes) * (gathered ? c.group_size : 1));
}

void SimEngine::launch(int inst) {
  InstState& st = states_[static_cast<std::size_t>(inst)];
  std::vector<int> gpus;
  std::string label;
  FlowPlan plan = make_plan(inst, gpus, label);
  const double curve_s = measured_curve_s(inst, gpus);
  if (curve_s >= 0) label += " (timed by a measured curve)";
  ++result_.algorithm_counts[label];
  const int layer =
      ops_[static_cast<std::size_t>(matching_.instances[static_cast<std::size_t>(inst)].members[0])]->layer;
  const auto layer_slot = static_cast<std::size_t>(layer + 1);
  const double weight = layer_slot < layer_weight_.size() ? layer_weight_[layer_slot] : 1.0;
  for (const Flow& flow : plan.flows) {
    for (const int link : platform_->route(flow.src, flow.dst)) {
      link_bytes_[static_cast<std::size_t>(link)] += weight * flow.bytes;
    }
  }
  if (curve_s >= 0) {
    finish_instance(inst, st.start + curve_s);
    return;
  }
  if (plan.flows.empty()) {
    finish_instance(inst, st.start + plan.latency_s);
    return;
  }
  // Isolated: every link the flows cross can only carry the members' own traffic (each member's comm stream is busy
  // with this instance), so the duration depends on the plan alone and an identical plan's duration can be reused.
  std::vector<int> sorted_gpus = gpus;
  std::sort(sorted_gpus.begin(), sorted_gpus.end());
  st.isolated = true;
  for (const Flow& flow : plan.flows) {
    for (const int link : platform_->route(flow.src, flow.dst)) {
      const auto& owners = platform_->links()[static_cast<std::size_t>(link)].owners;
      const bool ok = !owners.empty() && std::all_of(owners.begin(), owners.end(), [&](int g) {
        return std::binary_search(sorted_gpus.begin(), sorted_gpus.end(), g);
      });
      if (!ok) st.isolated = false;
    }
    if (!st.isolated) break;
  }
  if (st.isolated) {
    // Key: the plan in member positions, with links numbered by first use (so sharing inside the plan is kept),
    // as raw bytes.
    std::unordered_map<int, std::uint32_t> pos;
    for (std::size_t i = 0; i < gpus.size(); ++i) pos.emplace(gpus[i], static_cast<std::uint32_t>(i));
    std::unordered_map<int, std::uint32_t> canon;
    std::string key;
    key.reserve(plan.flows.size() * 40 + 64);
    auto put = [&key](auto value) { key.append(reinterpret_cast<const char*>(&value), sizeof(value)); };
    key += plan.algorithm;
    key += '/';
    key += plan.protocol;
    key += '|';
    put(plan.latency_s);
    put(static_cast<std::uint64_t>(plan.flows.size()));
    for (const Flow& flow : plan.flows) {
      put(pos.at(flow.src));
      put(pos.at(flow.dst));
      put(flow.bytes);
      const Route route = platform_->route(flow.src, flow.dst);
      put(static_cast<std::uint8_t>(route.size));
      for (const int link : route) {
        const auto [it, fresh] = canon.try_emplace(link, static_cast<std::uint32_t>(canon.size()));
        put(it->second);
        put(static_cast<std::uint8_t>(fresh ? 1 : 0));
        if (fresh) {
          const LinkInfo& info = platform_->links()[static_cast<std::size_t>(link)];
          put(info.bandwidth_bytes_per_s);
          put(info.latency_s);
        }
      }
    }
    put(static_cast<std::uint64_t>(plan.min_time_per_gpu.size()));
    for (const auto& [gpu, t] : plan.min_time_per_gpu) {
      put(pos.at(gpu));
      put(t);
    }
    const auto hit = memo_.find(key);
    if (hit != memo_.end()) {
      ++result_.reused_instances;
      finish_instance(inst, st.start + hit->second);
      return;
    }
    // An identical instance is in flight (typically a sibling group of the same step): follow it, provided this one
    // starts no earlier, so that its end (own start + the leader's duration) is not in the past when it is known.
    const auto leader = leaders_.find(key);
    if (leader != leaders_.end()) {
      if (st.start >= states_[static_cast<std::size_t>(leader->second.first)].start) {
        leader->second.second.push_back(inst);
        ++result_.reused_instances;
        return;
      }
    } else {
      leaders_.emplace(key, std::make_pair(inst, std::vector<int>{}));
    }
    st.memo_key = std::move(key);
  }
  const double extra = std::max(0.0, plan.latency_s - max_route_latency(*platform_, plan.flows));
  inflight_flows_[static_cast<std::size_t>(inst)] = std::move(plan.flows);
  inflight_caps_[static_cast<std::size_t>(inst)] = std::move(plan.min_time_per_gpu);
  const double t_launch = st.start + extra;
  if (t_launch <= sg4::Engine::get_clock()) {
    start_tasks(inst);
  } else {
    simgrid::kernel::timer::Timer::set(t_launch, [this, inst] {
      graveyard_.clear();
      start_tasks(inst);
    });
  }
}

void SimEngine::start_tasks(int inst) {
  InstState& st = states_[static_cast<std::size_t>(inst)];
  std::vector<Flow> flows = std::move(inflight_flows_[static_cast<std::size_t>(inst)]);
  const std::vector<std::pair<int, double>> caps = std::move(inflight_caps_[static_cast<std::size_t>(inst)]);
  std::unordered_map<int, double> cap_of(caps.begin(), caps.end());
  std::set<int> all_hosts;
  for (const Flow& flow : flows) {
    all_hosts.insert(flow.src);
    all_hosts.insert(flow.dst);
  }
  // Group flows into parallel tasks: one for the instance, or one per source GPU above kMaxPtaskHosts hosts.
  std::vector<std::vector<const Flow*>> tasks;
  if (all_hosts.size() <= kMaxPtaskHosts) {
    tasks.emplace_back();
    for (const Flow& flow : flows) tasks.back().push_back(&flow);
  } else {
    std::map<int, std::size_t> task_of_src;
    for (const Flow& flow : flows) {
      const auto [it, fresh] = task_of_src.try_emplace(flow.src, tasks.size());
      if (fresh) tasks.emplace_back();
      tasks[it->second].push_back(&flow);
    }
  }
  st.pending_tasks = static_cast<int>(tasks.size());
  for (const auto& task : tasks) {
    std::vector<int> hosts;
    for (const Flow* flow : task) {
      hosts.push_back(flow->src);
      hosts.push_back(flow->dst);
    }
    std::sort(hosts.begin(), hosts.end());
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
    const std::size_t k = hosts.size();
    auto index = [&](int gpu) {
      return static_cast<std::size_t>(std::lower_bound(hosts.begin(), hosts.end(), gpu) - hosts.begin());
    };
    std::vector<double> bytes(k * k, 0.0);
    for (const Flow* flow : task) bytes[index(flow->src) * k + index(flow->dst)] += flow->bytes;
    // NCCL's bandwidth cap: a CPU amount of (speed × min time) on each sending GPU bounds the task's progress rate.
    // In per-source tasks only the source's own cap belongs to the task: putting a destination's cap in every
    // source's task would make the destination's host serve it once per source, N times too slow.
    const bool per_source = tasks.size() > 1;
    std::vector<double> flops(k, 0.0);
    std::vector<sg4::Host*> host_ptrs(k);
    for (std::size_t i = 0; i < k; ++i) {
      host_ptrs[i] = platform_->host(hosts[i]);
      if (per_source && hosts[i] != task.front()->src) continue;
      const auto cap = cap_of.find(hosts[i]);
      if (cap != cap_of.end() && cap->second > 0) flops[i] = Platform::kHostSpeed * cap->second;
    }
    sg4::ExecPtr exec = sg4::Exec::init();
    exec->set_hosts(host_ptrs);
    exec->set_flops_amounts(flops);
    exec->set_bytes_amounts(bytes);
    exec->set_data(&st);
    exec->start();
    st.execs.push_back(exec);
    ++result_.simgrid_tasks;
  }
}

void SimEngine::on_done(const sg4::Activity& activity) {
  auto* st = activity.get_data<InstState>();
  if (st == nullptr) return;
  graveyard_.clear();
  if (--st->pending_tasks > 0) return;
  const double t = sg4::Engine::get_clock();
  std::vector<std::pair<int, double>> follower_ends;
  if (st->isolated && !st->memo_key.empty()) {
    const double duration = t - st->start;
    const auto leader = leaders_.find(st->memo_key);
    if (leader != leaders_.end() && leader->second.first == st->index) {
      for (const int f : leader->second.second) {
        follower_ends.emplace_back(f, states_[static_cast<std::size_t>(f)].start + duration);
      }
      leaders_.erase(leader);
    }
    memo_.emplace(std::move(st->memo_key), duration);
  }
  // Dropping the last reference inside the activity's own completion callback is unsafe: keep it one round.
  for (auto& exec : st->execs) graveyard_.push_back(std::move(exec));
  st->execs.clear();
  finish_instance(st->index, t);
  for (const auto& [f, end] : follower_ends) finish_instance(f, end);
}

void SimEngine::finish_instance(int inst, double t) {
  for (const auto gid : matching_.instances[static_cast<std::size_t>(inst)].members) finish_op(gid, t);
  drain();
}

EngineResult SimEngine::run() {
  const auto rank_count = schedule_.ranks.size();
  matching_ = build_matching(schedule_);
  check_matching(schedule_, matching_);
  const auto total = static_cast<std::size_t>(matching_.offset[rank_count]);
  ops_.resize(total);
  rank_.resize(total);
  pending_.assign(total, 0);
  ready_.assign(total, 0.0);
  finish_.assign(total, -1.0);
  // Predecessors of an op: its deps and what precedes it on its stream: the previous op, or every member of the
  // previous P2P group. Adjacent P2P ops of one group are posted together (ncclGroupStart/End): each member waits only
  // for what preceded the group, so a ring step's send and recv do not wait on each other.
  std::vector<std::int64_t> counts(total + 1, 0);
  std::vector<std::pair<std::int64_t, std::int64_t>> edges;  // (pred, succ)
  for (std::size_t r = 0; r < rank_count; ++r) {
    const auto& ops = schedule_.ranks[r];
    std::array<std::vector<std::int64_t>, 2> stream_tail;   // what the next op of the stream waits for
    std::array<std::vector<std::int64_t>, 2> group_entry;   // what the open P2P group's members wait for
    std::array<std::int64_t, 2> open_group = {-1, -1};      // P2P group open at the stream's tail, −1: none
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const std::int64_t gid = matching_.offset[r] + static_cast<std::int64_t>(i);
      ops_[static_cast<std::size_t>(gid)] = &ops[i];
      rank_[static_cast<std::size_t>(gid)] = static_cast<int>(r);
      std::vector<std::int64_t> preds;
      for (const int dep : ops[i].deps) preds.push_back(matching_.offset[r] + dep);
      const auto stream = static_cast<std::size_t>(ops[i].stream);
      const auto* p2p_op = std::get_if<P2POp>(&ops[i].body);
      const std::int64_t group = p2p_op != nullptr ? p2p_op->group : -1;
      if (group >= 0 && group == open_group[stream]) {
        preds.insert(preds.end(), group_entry[stream].begin(), group_entry[stream].end());
        stream_tail[stream].push_back(gid);
      } else {
        preds.insert(preds.end(), stream_tail[stream].begin(), stream_tail[stream].end());
        group_entry[stream] = stream_tail[stream];
        open_group[stream] = group;
        stream_tail[stream] = {gid};
      }
      std::sort(preds.begin(), preds.end());
      preds.erase(std::unique(preds.begin(), preds.end()), preds.end());
      pending_[static_cast<std::size_t>(gid)] = static_cast<int>(preds.size());
      for (const auto p : preds) {
        edges.emplace_back(p, gid);
        ++counts[static_cast<std::size_t>(p) + 1];
      }
    }
  }
  succ_offset_.assign(total + 1, 0);
  for (std::size_t g = 0; g < total; ++g) succ_offset_[g + 1] = succ_offset_[g] + counts[g + 1];
  succ_.assign(edges.size(), 0);
  std::vector<std::int64_t> fill(succ_offset_.begin(), succ_offset_.end() - 1);
  std::sort(edges.begin(), edges.end());
  for (const auto& [p, s] : edges) succ_[static_cast<std::size_t>(fill[static_cast<std::size_t>(p)]++)] = s;
  edges.clear();
  edges.shrink_to_fit();

  // SimGrid: one engine, configured before the platform is built; quiet logs.
  int argc = 2;
  std::string arg0 = "paratwin";
  std::string arg1 = "--log=root.thres:critical";
  std::array<char*, 3> argv = {arg0.data(), arg1.data(), nullptr};
  sg4::Engine engine(&argc, argv.data());
  Platform::configure_simgrid();
  int nodes_used = 1;
  for (std::size_t r = 0; r < rank_count; ++r)
    nodes_used = std::max(nodes_used, placement_.location(static_cast<int>(r)).node + 1);
  platform_ = std::make_unique<Platform>(placement_.cluster(), nodes_used, calibration_);
  link_bytes_.assign(platform_->links().size(), 0.0);
  states_.assign(matching_.instances.size(), InstState{});
  for (std::size_t i = 0; i < states_.size(); ++i) states_[i].index = static_cast<int>(i);
  inflight_flows_.assign(matching_.instances.size(), {});
  inflight_caps_.assign(matching_.instances.size(), {});

  static bool connected = false;
  current = this;
  if (!connected) {
    connected = true;
    sg4::Activity::on_completion_cb([](const sg4::Activity& activity) {
      if (current != nullptr) current->on_done(activity);
    });
  }
  for (std::size_t g = 0; g < total; ++g) {
    if (pending_[g] == 0) make_ready(static_cast<std::int64_t>(g), 0.0);
  }
  drain();
  engine.run();
  graveyard_.clear();
  current = nullptr;

  // Everything must have finished; otherwise the schedule waits on itself.
  for (std::size_t r = 0; r < rank_count; ++r) {
    for (std::int64_t g = matching_.offset[r]; g < matching_.offset[r + 1]; ++g) {
      if (finish_[static_cast<std::size_t>(g)] >= 0) continue;
      const Op& op = *ops_[static_cast<std::size_t>(g)];
      std::string why = "a dependency or the previous op of its stream never finished";
      const int inst = matching_.instance_of[static_cast<std::size_t>(g)];
      if (inst >= 0 && pending_[static_cast<std::size_t>(g)] == 0) {
        const auto& in = matching_.instances[static_cast<std::size_t>(inst)];
        why = fmt::format("only {} of the {} ranks of its {} {} reached it",
                          states_[static_cast<std::size_t>(inst)].arrived, in.members.size(),
                          in.p2p ? "send/recv match" : "collective instance", in.id);
      }
      fail("schedule deadlocks: rank {} op {} '{}' never runs: {}", r, op.index, op.name, why);
    }
  }

  result_.events.reserve(total);
  for (std::size_t g = 0; g < total; ++g) {
    const Op& op = *ops_[g];
    const int r = rank_[g];
    Event e = op_event(op, r, placement_.location(r).node);
    e.start_s = ready_[g];
    e.end_s = finish_[g];
    result_.events.push_back(std::move(e));
  }
  for (std::size_t l = 0; l < platform_->links().size(); ++l) {
    const LinkInfo& info = platform_->links()[l];
    result_.links.push_back(LinkLoad{info.name, info.link_class, info.bandwidth_bytes_per_s, link_bytes_[l]});
  }
  return std::move(result_);
}

}  // namespace

void validate_schedule(const Schedule& schedule, const Placement& placement, bool deep) {
  const int ranks = static_cast<int>(schedule.ranks.size());
  const Cluster& cluster = placement.cluster();
  if (ranks > cluster.total_gpus()) {
    fail("schedule has {} ranks but cluster {} has only {} GPUs ({} nodes × {})", ranks, cluster.name,
         cluster.total_gpus(), cluster.nodes, cluster.gpus_per_node);
  }
  if (ranks != placement.world_size()) {
    fail("schedule has {} ranks but the placement places {} ranks", ranks, placement.world_size());
  }
  std::set<std::pair<int, int>> used;
  for (int r = 0; r < ranks; ++r) {
    const GpuLocation& loc = placement.location(r);
    if (loc.node < 0 || loc.node >= cluster.nodes || loc.gpu < 0 || loc.gpu >= cluster.gpus_per_node) {
      fail("placement puts rank {} on node {} GPU {}, outside cluster {} ({} nodes × {} GPUs)", r, loc.node, loc.gpu,
           cluster.name, cluster.nodes, cluster.gpus_per_node);
    }
    if (!used.insert({loc.node, loc.gpu}).second) {
      fail("placement puts rank {} on node {} GPU {}, which another rank already uses", r, loc.node, loc.gpu);
    }
  }
  const GpuSpec& gpu = cluster.gpu;
  if (!(gpu.bf16_flops > 0)) fail("cluster {}: gpu.bf16_flops = {} must be > 0", cluster.name, gpu.bf16_flops);
  if (!(gpu.hbm_bytes_per_s > 0))
    fail("cluster {}: gpu.hbm_bytes_per_s = {} must be > 0", cluster.name, gpu.hbm_bytes_per_s);
  bool fp8 = false;
  for (const auto& ops : schedule.ranks) {
    for (const Op& op : ops) {
      if (const auto* c = std::get_if<ComputeOp>(&op.body)) fp8 = fp8 || c->dtype == DType::kFp8;
    }
  }
  if (fp8 && !(gpu.fp8_flops > 0)) {
    fail("cluster {}: gpu.fp8_flops = {} must be > 0 for a schedule with fp8 compute ops", cluster.name, gpu.fp8_flops);
  }
  if (deep) {
    Matching m = build_matching(schedule);
    check_matching(schedule, m);
  }
}

EngineResult run_engine(const Schedule& schedule, const Placement& placement, const Calibration& calibration,
                        const SimOptions& options, std::vector<double> layer_weight) {
  validate_schedule(schedule, placement, /*deep=*/false);  // run() builds and checks the matching itself
  SimEngine engine(schedule, placement, calibration, options, std::move(layer_weight));
  return engine.run();
}

}  // namespace paratwin::sim
