#include "backend/cuda_plan/rank_results.hpp"

#include <cstring>
#include <type_traits>

#include "topology/error.hpp"

namespace paratwin::cuda_plan {
namespace {

// Host byte order throughout: the processes of one run are the same binary on the same architecture.
class Writer {
 public:
  template <class T>
  requires std::is_arithmetic_v<T>
  void put(T value) { bytes_.append(reinterpret_cast<const char*>(&value), sizeof value); }
  template <class T>
  requires std::is_arithmetic_v<T>
  void put(const std::vector<T>& values) {
    put(static_cast<std::uint64_t>(values.size()));
    bytes_.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
  }
  void put(const std::string& s) {
    put(static_cast<std::uint64_t>(s.size()));
    bytes_ += s;
  }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}
  template <class T>
  requires std::is_arithmetic_v<T> T get() {
    T value{};
    std::memcpy(&value, take(sizeof value), sizeof value);
    return value;
  }
  template <class T>
  requires std::is_arithmetic_v<T> std::vector<T> get_vector() {
    const auto n = count(sizeof(T));
    std::vector<T> values(n);
    if (n > 0) std::memcpy(values.data(), take(n * sizeof(T)), n * sizeof(T));
    return values;
  }
  std::string get_string() {
    const auto n = count(1);
    return std::string(take(n), n);
  }
  // A length prefix, checked against what is left so a corrupt prefix cannot ask for a huge allocation.
  std::size_t count(std::size_t element_bytes) {
    const auto n = get<std::uint64_t>();
    if (n > (bytes_.size() - at_) / element_bytes) {
      throw InternalError(fmt::format("rank results: a length of {} at byte {} runs past the {} bytes received", n, at_,
                                      bytes_.size()));
    }
    return static_cast<std::size_t>(n);
  }
  [[nodiscard]] bool done() const { return at_ == bytes_.size(); }

 private:
  const char* take(std::size_t n) {
    if (n > bytes_.size() - at_) {
      throw InternalError(
          fmt::format("rank results: truncated at byte {} of {} (needed {} more)", at_, bytes_.size(), n));
    }
    const char* p = bytes_.data() + at_;
    at_ += n;
    return p;
  }
  const std::string& bytes_;
  std::size_t at_ = 0;
};

}  // namespace

std::string encode_rank_results(const std::vector<RankResults>& results) {
  Writer w;
  w.put(static_cast<std::uint64_t>(results.size()));
  for (const auto& r : results) {
    w.put(r.rank);
    w.put(r.step_s);
    w.put(static_cast<std::uint64_t>(r.op_start_s.size()));
    for (const auto& step : r.op_start_s) w.put(step);
    w.put(static_cast<std::uint64_t>(r.op_end_s.size()));
    for (const auto& step : r.op_end_s) w.put(step);
    w.put(r.device_bytes);
    w.put(static_cast<std::uint64_t>(r.generic_ops.size()));
    for (const auto& name : r.generic_ops) w.put(name);
    w.put(r.attention_calls);
    w.put(r.moe_gemm_ops);
    w.put(static_cast<std::uint64_t>(r.moe_gemm_fallbacks.size()));
    for (const auto& why : r.moe_gemm_fallbacks) w.put(why);
    w.put(r.moe_gemm_fp8_ops);
    w.put(r.moe_gemm_fp8_kernel_ops);
    w.put(r.indexer_fp8_ops);
    w.put(r.indexer_bf16_ops);
    w.put(static_cast<std::uint64_t>(r.indexer_fp8_fallbacks.size()));
    for (const auto& why : r.indexer_fp8_fallbacks) w.put(why);
    w.put(r.outputs.request);
    w.put(r.outputs.position);
    w.put(r.outputs.hidden);
    w.put(r.outputs.hidden_size);
    w.put(r.outputs.logits);
  }
  return w.take();
}

std::vector<RankResults> decode_rank_results(const std::string& bytes) {
  Reader in(bytes);
  std::vector<RankResults> results(in.count(1));
  for (auto& r : results) {
    r.rank = in.get<int>();
    r.step_s = in.get_vector<double>();
    r.op_start_s.resize(in.count(8));
    for (auto& step : r.op_start_s) step = in.get_vector<double>();
    r.op_end_s.resize(in.count(8));
    for (auto& step : r.op_end_s) step = in.get_vector<double>();
    r.device_bytes = in.get<std::int64_t>();
    r.generic_ops.resize(in.count(8));
    for (auto& name : r.generic_ops) name = in.get_string();
    r.attention_calls = in.get_vector<std::int64_t>();
    r.moe_gemm_ops = in.get_vector<std::int64_t>();
    r.moe_gemm_fallbacks.resize(in.count(8));
    for (auto& why : r.moe_gemm_fallbacks) why = in.get_string();
    r.moe_gemm_fp8_ops = in.get<std::int64_t>();
    r.moe_gemm_fp8_kernel_ops = in.get<std::int64_t>();
    r.indexer_fp8_ops = in.get<std::int64_t>();
    r.indexer_bf16_ops = in.get<std::int64_t>();
    r.indexer_fp8_fallbacks.resize(in.count(8));
    for (auto& why : r.indexer_fp8_fallbacks) why = in.get_string();
    r.outputs.request = in.get_vector<std::int64_t>();
    r.outputs.position = in.get_vector<std::int64_t>();
    r.outputs.hidden = in.get_vector<float>();
    r.outputs.hidden_size = in.get<std::int64_t>();
    r.outputs.logits = in.get_vector<float>();
  }
  if (!in.done()) throw InternalError(fmt::format("rank results: {} bytes hold more than they encode", bytes.size()));
  return results;
}

std::vector<int> process_ranks(int world, int process_index, int process_count) {
  PARATWIN_ASSERT(process_count >= 1 && process_index >= 0 && process_index < process_count, "process {} of {}",
                  process_index, process_count);
  if (world % process_count != 0) {
    fail(
        "{} processes cannot share the {} ranks of this layout evenly: start one process per GPU (mpirun -np {}) or "
        "one per node (-np = the number of nodes)",
        process_count, world, world);
  }
  const int per_process = world / process_count;
  std::vector<int> ranks;
  for (int r = process_index * per_process; r < (process_index + 1) * per_process; ++r) ranks.push_back(r);
  return ranks;
}

}  // namespace paratwin::cuda_plan
