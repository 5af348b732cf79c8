#pragma once
/// The schedule IR: for every rank, the ordered compute kernels and communications of one forward pass (a prefill
/// or one decode step), on two streams, with dependencies. Both backends take it unchanged; it is plain data and
/// round-trips through JSON without loss (models/schedule_json.hpp).
///
/// Identity: an op is (rank, index) where index is its position in the rank's list; `name` is a readable label
/// ("L3.attn.kv_all_gather") that, together with the rank, is unique and stable across runs of the same inputs.
/// Traces of both backends carry (rank, index, name), which is how `paratwin compare` matches events.
///
/// Matching across ranks: every rank of a group issues the same collectives in the same order; each collective
/// instance carries an `instance` number, equal on every participating rank, unique within the schedule. A send and
/// its recv carry the same `match` number.

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "models/dtype.hpp"
#include "topology/parallel_config.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin {

enum class Stream : std::uint8_t { kCompute, kComm };
enum class Phase : std::uint8_t { kPrefill, kDecode };

/// What a compute op does; each kind has a fixed meaning of the ComputeShape fields (see ComputeShape). Costs are
/// computed by models/op_costs.hpp (formulas in docs/models.md). `dtype` is the op's input/math type; the 16-bit
/// activations around FP8 GEMMs and attention are bf16 (2 bytes) unless the op is fp32.
enum class ComputeKind : std::uint8_t {
  kEmbedding,        ///< gather rows of the embedding table: m tokens × n (hidden); dtype = table type
  kRmsNorm,          ///< m tokens × n (hidden)
  kGemm,             ///< [m × k] · [k × n], [k × n] being a weight; fp8: 1×128 activation and 128×128 weight
                     ///< scales, bf16 output
  kGroupedGemm,      ///< per local expert e: [group_rows[e] × k] · [k × n]; m = Σ group_rows; only experts with
                     ///< rows read their weights
  kRope,             ///< rotary embedding on m tokens × heads × head_dim_qk (rope dims only; heads = all rotated
                     ///< heads, e.g. q heads + 1 for MLA's shared key)
  kAttention,        ///< dense attention, per request (× batch): q_tokens queries at positions q_start + i·q_stride
                     ///< over kv_tokens keys at kv_start + j·kv_stride (default [0, kv_tokens)); causal: a query at
                     ///< position p sees the keys at positions ≤ p; heads / kv_heads × head_dim_qk, head_dim_v;
                     ///< dtype = KV-cache type (Q, O bf16); kv_shared for MLA's latent (kv_heads ignored)
  kSparseAttention,  ///< DSA: as kAttention, but each query attends min(topk, keys it may see) selected keys; reads
                     ///< q_tokens × topk int32 indices per request
  kIndexerScore,     ///< DSA lightning indexer: q_tokens × kv_tokens scores per request (positions and causal mask as
                     ///< kAttention) over `heads` × head_dim_qk, weighted-summed over heads into fp32 logits; dtype =
                     ///< q/k type (fp8 keys carry one fp32 scale per 128 dims)
  kTopK,             ///< top `topk` of n values per row (dtype = value type): m rows; causal: the rows are the
                     ///< q_tokens × batch queries of kIndexerScore, the one at position p holding min(p + 1, n)
                     ///< values (m ignored)
  kMoeRoute,         ///< router scores (sigmoid/softmax) + top-k expert choice from m × n gate logits (dtype): tokens
                     ///< m, experts n, topk; writes int32 ids and fp32 weights
  kMoePermute,       ///< gather m token rows × n into expert order (m = tokens × topk; set topk so the m / topk
                     ///< source rows count once); fp8 rows carry 1×128 scales
  kMoeUnpermute,     ///< scatter-add expert outputs back: m = tokens × topk rows × n, weighted, into m / topk rows,
                     ///< or into out_rows rows where tokens have different row counts (all-to-all MoE)
  kActivation,       ///< SiLU(gate) · up: m tokens × n (output width), reading the 16-bit [m × 2n] gate/up output;
                     ///< fp8 writes fp8 + 1×128 scales
  kResidualAdd,      ///< m × n
  kKvReorder,        ///< copy/re-order of gathered KV rows: m rows × n elements of dtype
  kAddRmsNorm,       ///< residual add fused into the next RMSNorm (SGLang's fused_add_rmsnorm): m tokens × n
                     ///< (hidden); residual += update, then out = rmsnorm(residual) · weight
};

/// Shapes of a compute op. Fields unused by a kind stay 0. Token counts are this rank's.
struct ComputeShape {
  std::int64_t m = 0, n = 0, k = 0;          ///< GEMM-like dims (see ComputeKind)
  std::vector<std::int64_t> group_rows;      ///< kGroupedGemm: rows per local expert
  std::int64_t q_tokens = 0, kv_tokens = 0;  ///< attention-like ops: queries and keys per request
  std::int64_t q_start = 0;                  ///< absolute position of the first query (causal prefix)
  std::int64_t q_stride = 1;                 ///< query i is at position q_start + i·q_stride (round-robin CP)
  std::int64_t kv_start = 0;                 ///< key j is at position kv_start + j·kv_stride (a ring-CP block)
  std::int64_t kv_stride = 1;
  std::int64_t batch = 1;                ///< attention-like ops and causal kTopK: requests of this shape
  std::int64_t heads = 0, kv_heads = 0;  ///< query heads, key/value heads (MQA/GQA/MLA: kv_heads ≤ heads)
  std::int64_t head_dim_qk = 0, head_dim_v = 0;
  std::int64_t topk = 0;  ///< kTopK, kMoeRoute, kSparseAttention, kMoePermute/Unpermute
  /// kMoeUnpermute: the token rows written when tokens have different row counts (the all-to-all MoE's sums: each
  /// token has a row per local expert it chose, or per rank that computed for it); 0: ⌈m / topk⌉.
  std::int64_t out_rows = 0;
  bool causal = false;
  /// MLA absorbed attention: K and V are one cached latent row of head_dim_qk elements (kv_lora_rank + rope dims)
  /// whose first head_dim_v are V; KV bytes count that row once (models/op_costs.hpp mla_latent_row_bytes).
  bool kv_shared = false;
  friend bool operator==(const ComputeShape&, const ComputeShape&) = default;
};

/// A compute kernel with its cost, computed by models/op_costs.hpp when the schedule is built.
struct ComputeOp {
  ComputeKind kind = ComputeKind::kGemm;
  ComputeShape shape;
  DType dtype = DType::kBf16;  ///< math/input type (fp8 GEMMs run at the fp8 rate)
  double flops = 0;            ///< floating-point operations (multiply-add = 2)
  double bytes = 0;            ///< minimum HBM traffic: inputs read once + outputs written once
  friend bool operator==(const ComputeOp&, const ComputeOp&) = default;
};

enum class CollectiveKind : std::uint8_t { kAllGather, kReduceScatter, kAllReduce, kAllToAll, kBroadcast };

/// A collective over one group. `bytes` follows NCCL's API count × sizeof(dtype): all_gather → send buffer per rank
/// (output is group_size × bytes); reduce_scatter → receive buffer per rank (input is group_size × bytes);
/// all_reduce and broadcast → the buffer. all_to_all: `send_bytes[j]` is what this rank sends to the group's j-th
/// rank (including itself) and `recv_bytes[j]` what it receives from it; `bytes` is Σ send_bytes.
struct CollectiveOp {
  CollectiveKind kind = CollectiveKind::kAllGather;
  GroupFamily family = GroupFamily::kTp;
  int group_index = 0;
  int group_size = 1;
  DType dtype = DType::kBf16;
  std::int64_t bytes = 0;
  std::vector<std::int64_t> send_bytes, recv_bytes;  ///< all_to_all only, indexed by position in the group
  int root = 0;                                      ///< broadcast: position of the root in the group
  std::int64_t instance = 0;                         ///< equal on every rank of this call
  friend bool operator==(const CollectiveOp&, const CollectiveOp&) = default;
};

/// One side of a point-to-point transfer (PP hidden states, ring-CP KV blocks).
struct P2POp {
  bool is_send = true;
  int peer = 0;  ///< global rank of the other side
  std::int64_t bytes = 0;
  DType dtype = DType::kBf16;
  std::int64_t match = 0;  ///< equal on the send and its recv
  /// P2P ops of one rank with the same group number (≥ 0) are posted together, as NCCL's ncclGroupStart/End: a ring
  /// step's send and recv must be, or every rank would wait on its neighbour. −1: posted alone.
  std::int64_t group = -1;
  friend bool operator==(const P2POp&, const P2POp&) = default;
};

using OpBody = std::variant<ComputeOp, CollectiveOp, P2POp>;

/// One op of one rank.
struct Op {
  int index = 0;     ///< position in the rank's list: the op id within the rank
  std::string name;  ///< readable, unique within the rank, e.g. "L3.attn.kv_all_gather"
  Stream stream = Stream::kCompute;
  int layer = -1;  ///< model layer, -1 outside layers (embedding, head)
  Phase phase = Phase::kPrefill;
  int micro_batch = 0;
  std::vector<int> deps;  ///< indices of ops of the same rank that must finish first (all smaller than index)
  OpBody body;
  friend bool operator==(const Op&, const Op&) = default;
};

/// How the CP attention is computed.
enum class CpAlgorithm : std::uint8_t { kAllGather, kRing, kUlysses };
/// How tokens are split over CP ranks.
enum class CpSplit : std::uint8_t { kRoundRobin, kZigzag };
/// How MoE layers run under CP/EP.
enum class MoeMode : std::uint8_t { kAllToAll, kGather };

/// What the schedule was built from (enough to rebuild it and to name it in traces).
struct ScheduleMeta {
  std::string model;  ///< model name
  ParallelConfig config;
  Phase phase = Phase::kPrefill;
  std::int64_t prompt_tokens = 0;  ///< per request (prefill) or context length (decode)
  int batch = 1;                   ///< requests
  CpAlgorithm cp_algorithm = CpAlgorithm::kAllGather;
  CpSplit cp_split = CpSplit::kRoundRobin;
  MoeMode moe_mode = MoeMode::kGather;
  int layers = 0;  ///< layers in the schedule (≤ the model's)
  int micro_batches = 1;
  DType weight_dtype = DType::kBf16;
  /// Set when the experts of each token are build::token_experts(..., seed, ...) (RoutingLoad::kPerToken).
  std::optional<std::uint64_t> per_token_routing_seed;
  friend bool operator==(const ScheduleMeta&, const ScheduleMeta&) = default;
};

/// The schedule: per rank, the ordered ops.
struct Schedule {
  ScheduleMeta meta;
  std::vector<std::vector<Op>> ranks;  ///< ranks[r] = ops of global rank r, in issue order
  friend bool operator==(const Schedule&, const Schedule&) = default;
};

[[nodiscard]] std::string_view to_string(ComputeKind kind);
[[nodiscard]] std::string_view to_string(CollectiveKind kind);
[[nodiscard]] std::string_view to_string(Stream stream);
[[nodiscard]] std::string_view to_string(Phase phase);
[[nodiscard]] std::string_view to_string(CpAlgorithm algorithm);
[[nodiscard]] std::string_view to_string(CpSplit split);
[[nodiscard]] std::string_view to_string(MoeMode mode);

}  // namespace paratwin
