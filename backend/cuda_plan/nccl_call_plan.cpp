#include "backend/cuda_plan/nccl_call_plan.hpp"

#include <algorithm>

#include "topology/error.hpp"

namespace paratwin::cuda_plan {
namespace {

NcclType type_of(DType dtype) {
  switch (dtype) {
    case DType::kBf16:
      return NcclType::kBf16;
    case DType::kFp8:
      return NcclType::kFp8E4M3;
    case DType::kFp32:
      return NcclType::kFp32;
    case DType::kInt32:
      return NcclType::kInt32;
  }
  return NcclType::kUint8;
}

// The type and element count moving `bytes`: the schedule's type when the bytes are whole elements, else raw bytes
// (only for calls that do not reduce).
std::pair<NcclType, std::int64_t> typed_count(std::int64_t bytes, DType dtype, bool reduces, std::string_view name) {
  const auto type = type_of(dtype);
  const auto size = nccl_type_bytes(type);
  if (bytes < 0) fail("op '{}' moves a negative byte count {}", name, bytes);
  if (bytes % size == 0) return {type, bytes / size};
  if (reduces) {
    fail("op '{}' reduces {} bytes of {}, not a whole number of {}-byte elements", name, bytes,
         paratwin::to_string(dtype), size);
  }
  return {NcclType::kUint8, bytes};
}

}  // namespace

std::int64_t nccl_type_bytes(NcclType type) {
  switch (type) {
    case NcclType::kBf16:
      return 2;
    case NcclType::kFp8E4M3:
      return 1;
    case NcclType::kFp32:
      return 4;
    case NcclType::kInt32:
      return 4;
    case NcclType::kUint8:
      return 1;
  }
  return 1;
}

std::string_view to_string(NcclFunction function) {
  switch (function) {
    case NcclFunction::kAllGather:
      return "ncclAllGather";
    case NcclFunction::kReduceScatter:
      return "ncclReduceScatter";
    case NcclFunction::kAllReduce:
      return "ncclAllReduce";
    case NcclFunction::kBroadcast:
      return "ncclBroadcast";
    case NcclFunction::kAllToAll:
      return "ncclAlltoAll";
    case NcclFunction::kGroupedSendRecv:
      return "ncclSend/ncclRecv group";
    case NcclFunction::kSend:
      return "ncclSend";
    case NcclFunction::kRecv:
      return "ncclRecv";
  }
  return "?";
}

std::string_view to_string(NcclType type) {
  switch (type) {
    case NcclType::kBf16:
      return "ncclBfloat16";
    case NcclType::kFp8E4M3:
      return "ncclFloat8e4m3";
    case NcclType::kFp32:
      return "ncclFloat32";
    case NcclType::kInt32:
      return "ncclInt32";
    case NcclType::kUint8:
      return "ncclUint8";
  }
  return "?";
}

NcclCall translate_collective(const CollectiveOp& op, std::string_view op_name) {
  NcclCall call;
  call.family = op.family;
  const std::int64_t n = op.group_size;
  if (n < 1) fail("op '{}' has group size {}", op_name, n);
  switch (op.kind) {
    case CollectiveKind::kAllGather: {
      call.function = NcclFunction::kAllGather;
      std::tie(call.type, call.count) = typed_count(op.bytes, op.dtype, false, op_name);
      call.send_buffer_bytes = op.bytes;
      call.recv_buffer_bytes = n * op.bytes;
      break;
    }
    case CollectiveKind::kReduceScatter: {
      call.function = NcclFunction::kReduceScatter;
      std::tie(call.type, call.count) = typed_count(op.bytes, op.dtype, true, op_name);
      call.send_buffer_bytes = n * op.bytes;
      call.recv_buffer_bytes = op.bytes;
      break;
    }
    case CollectiveKind::kAllReduce: {
      call.function = NcclFunction::kAllReduce;
      std::tie(call.type, call.count) = typed_count(op.bytes, op.dtype, true, op_name);
      call.send_buffer_bytes = op.bytes;  // in place
      break;
    }
    case CollectiveKind::kBroadcast: {
      call.function = NcclFunction::kBroadcast;
      std::tie(call.type, call.count) = typed_count(op.bytes, op.dtype, false, op_name);
      if (op.root < 0 || op.root >= n) fail("op '{}' broadcasts from root {} of a group of {}", op_name, op.root, n);
      call.root = op.root;
      call.send_buffer_bytes = op.bytes;  // in place
      break;
    }
    case CollectiveKind::kAllToAll: {
      if (static_cast<std::int64_t>(op.send_bytes.size()) != n ||
          static_cast<std::int64_t>(op.recv_bytes.size()) != n) {
        fail("all-to-all '{}' needs send_bytes and recv_bytes of group_size = {} entries, got {} and {}", op_name, n,
             op.send_bytes.size(), op.recv_bytes.size());
      }
      std::int64_t send_total = 0, recv_total = 0;
      for (const auto b : op.send_bytes) send_total += b;
      for (const auto b : op.recv_bytes) recv_total += b;
      call.send_buffer_bytes = send_total;
      call.recv_buffer_bytes = recv_total;
      const auto first = op.send_bytes.front();
      const bool uniform =
          std::all_of(op.send_bytes.begin(), op.send_bytes.end(), [&](std::int64_t b) { return b == first; }) &&
          std::all_of(op.recv_bytes.begin(), op.recv_bytes.end(), [&](std::int64_t b) { return b == first; });
      // The element type must divide every piece; else move raw bytes.
      auto type = type_of(op.dtype);
      const auto all_bytes = [&](const std::vector<std::int64_t>& v) {
        return std::all_of(v.begin(), v.end(), [&](std::int64_t b) { return b % nccl_type_bytes(type) == 0; });
      };
      if (!all_bytes(op.send_bytes) || !all_bytes(op.recv_bytes)) type = NcclType::kUint8;
      call.type = type;
      const auto size = nccl_type_bytes(type);
      if (uniform) {
        call.function = NcclFunction::kAllToAll;
        call.count = first / size;
        break;
      }
      call.function = NcclFunction::kGroupedSendRecv;
      std::int64_t send_off = 0, recv_off = 0;
      for (int j = 0; j < n; ++j) {
        const auto s = op.send_bytes[static_cast<std::size_t>(j)];
        const auto r = op.recv_bytes[static_cast<std::size_t>(j)];
        if (s < 0 || r < 0) fail("all-to-all '{}' has a negative byte count for peer {}", op_name, j);
        if (s > 0) call.transfers.push_back({true, j, send_off / size, s / size});
        if (r > 0) call.transfers.push_back({false, j, recv_off / size, r / size});
        send_off += s;
        recv_off += r;
      }
      break;
    }
  }
  return call;
}

NcclCall translate_p2p(const P2POp& op, std::string_view op_name) {
  NcclCall call;
  call.function = op.is_send ? NcclFunction::kSend : NcclFunction::kRecv;
  call.world_comm = true;
  call.peer = op.peer;
  std::tie(call.type, call.count) = typed_count(op.bytes, op.dtype, false, op_name);
  if (op.is_send) {
    call.send_buffer_bytes = op.bytes;
  } else {
    call.recv_buffer_bytes = op.bytes;
  }
  return call;
}

}  // namespace paratwin::cuda_plan
