#pragma once
/// Translation of schedule ops into NCCL calls: which function, on which communicator, with which element count,
/// data type, root and peers, and how large the send and receive buffers are. NCCL's API semantics (count ×
/// sizeof(dtype)) are the schedule's (models/schedule.hpp), so the counts are exact.

#include <cstdint>
#include <string_view>
#include <vector>

#include "models/schedule.hpp"

namespace paratwin::cuda_plan {

enum class NcclFunction : std::uint8_t {
  kAllGather,
  kReduceScatter,
  kAllReduce,
  kBroadcast,
  kAllToAll,         ///< ncclAlltoAll: every peer gets the same count
  kGroupedSendRecv,  ///< all-to-allv: one ncclSend and one ncclRecv per peer inside ncclGroupStart/End
  kSend,
  kRecv,
};

/// The NCCL data type of a call: the schedule's type, or raw bytes when a non-reducing call's byte count is not a
/// whole number of elements.
enum class NcclType : std::uint8_t { kBf16, kFp8E4M3, kFp32, kInt32, kUint8 };

/// One ncclSend or ncclRecv of a grouped call. `peer` is the position in the communicator (group position for
/// collectives, global rank for P2P on the world communicator); offsets and counts are in elements.
struct PeerTransfer {
  bool is_send = true;
  int peer = 0;
  std::int64_t offset = 0;
  std::int64_t count = 0;
  friend bool operator==(const PeerTransfer&, const PeerTransfer&) = default;
};

struct NcclCall {
  NcclFunction function = NcclFunction::kAllReduce;
  bool world_comm = false;  ///< P2P: the world communicator; collectives: the family's
  GroupFamily family = GroupFamily::kTp;
  NcclType type = NcclType::kBf16;
  std::int64_t count = 0;               ///< NCCL's count argument (per peer for all-to-all, unused for grouped)
  int root = 0;                         ///< broadcast
  int peer = -1;                        ///< send/recv: global rank
  std::int64_t send_buffer_bytes = 0;   ///< bytes the send buffer must hold
  std::int64_t recv_buffer_bytes = 0;   ///< bytes the receive buffer must hold (0: in place / none)
  std::vector<PeerTransfer> transfers;  ///< kGroupedSendRecv only, in posting order
};

[[nodiscard]] std::int64_t nccl_type_bytes(NcclType type);
[[nodiscard]] std::string_view to_string(NcclFunction function);
[[nodiscard]] std::string_view to_string(NcclType type);

/// Translates one collective. Throws paratwin::Error (naming the op) for byte counts NCCL cannot express: a
/// reduction whose bytes are not a whole number of elements, or all-to-all byte vectors of the wrong length.
[[nodiscard]] NcclCall translate_collective(const CollectiveOp& op, std::string_view op_name);
[[nodiscard]] NcclCall translate_p2p(const P2POp& op, std::string_view op_name);

}  // namespace paratwin::cuda_plan
