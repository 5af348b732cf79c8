// MPI_Init / MPI_Finalize and the few collectives paratwin needs, on MPI_COMM_WORLD, with byte strings only.
#include "cli/mpi_world.hpp"

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "topology/error.hpp"

#ifdef PARATWIN_HAVE_MPI
#include <mpi.h>
#endif

namespace paratwin::cli {
namespace {

bool started_by_mpi_launcher() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

// Length-prefixed concatenation, so strings with any bytes survive the trip.
std::string pack(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    const auto size = static_cast<std::uint64_t>(p.size());
    out.append(reinterpret_cast<const char*>(&size), sizeof size);
    out += p;
  }
  return out;
}

std::vector<std::string> unpack(const std::string& bytes) {
  std::vector<std::string> parts;
  std::size_t at = 0;
  while (at < bytes.size()) {
    std::uint64_t size = 0;
    PARATWIN_ASSERT(at + sizeof size <= bytes.size(), "truncated MPI message at byte {}", at);
    std::memcpy(&size, bytes.data() + at, sizeof size);
    at += sizeof size;
    PARATWIN_ASSERT(at + size <= bytes.size(), "truncated MPI message part of {} bytes", size);
    parts.emplace_back(bytes.substr(at, static_cast<std::size_t>(size)));
    at += static_cast<std::size_t>(size);
  }
  return parts;
}

#ifdef PARATWIN_HAVE_MPI
void check(int code, const char* what) {
  if (code != MPI_SUCCESS) throw InternalError(fmt::format("MPI: {} failed (code {})", what, code));
}

int int_size(std::size_t bytes) {
  if (bytes > static_cast<std::size_t>(INT_MAX)) fail("MPI: a message of {} bytes exceeds MPI's 2 GiB count", bytes);
  return static_cast<int>(bytes);
}
#endif

}  // namespace

bool MpiWorld::built_with_mpi() {
#ifdef PARATWIN_HAVE_MPI
  return true;
#else
  return false;
#endif
}

MpiWorld& MpiWorld::get() {
  static MpiWorld world;
  return world;
}

MpiWorld::MpiWorld() {
#ifdef PARATWIN_HAVE_MPI
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!started_by_mpi_launcher() && initialized == 0) return;
  // Funneled: `paratwin run` has worker threads, but only the thread that started MPI calls it.
  int provided = 0;
  if (initialized == 0) check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  active_ = true;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
#else
  (void)started_by_mpi_launcher;
#endif
}

MpiWorld::~MpiWorld() {
#ifdef PARATWIN_HAVE_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (active_ && finalized == 0) MPI_Finalize();
#endif
}

std::string MpiWorld::broadcast(const std::string& bytes, int root) const {
  if (!active_) return bytes;
#ifdef PARATWIN_HAVE_MPI
  auto size = static_cast<std::uint64_t>(bytes.size());
  check(MPI_Bcast(&size, 1, MPI_UINT64_T, root, MPI_COMM_WORLD), "MPI_Bcast");
  std::string out = rank_ == root ? bytes : std::string(static_cast<std::size_t>(size), '\0');
  check(MPI_Bcast(out.data(), int_size(out.size()), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  return out;
#else
  (void)root;
  return bytes;
#endif
}

std::vector<std::string> MpiWorld::gather(const std::string& mine, int root) const {
  if (!active_) return {mine};
#ifdef PARATWIN_HAVE_MPI
  const int my_size = int_size(mine.size());
  std::vector<int> sizes(rank_ == root ? static_cast<std::size_t>(size_) : 0);
  check(MPI_Gather(&my_size, 1, MPI_INT, sizes.data(), 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Gather");
  std::vector<int> offsets(sizes.size());
  std::string all;
  if (rank_ == root) {
    long long total = 0;
    for (std::size_t r = 0; r < sizes.size(); ++r) {
      offsets[r] = int_size(static_cast<std::size_t>(total));
      total += sizes[r];
    }
    all.resize(static_cast<std::size_t>(int_size(static_cast<std::size_t>(total))));
  }
  check(MPI_Gatherv(mine.data(), my_size, MPI_BYTE, all.data(), sizes.data(), offsets.data(), MPI_BYTE, root,
                    MPI_COMM_WORLD),
        "MPI_Gatherv");
  std::vector<std::string> parts;
  for (std::size_t r = 0; r < sizes.size(); ++r) {
    parts.emplace_back(all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(sizes[r])));
  }
  return parts;
#else
  (void)root;
  return {mine};
#endif
}

std::vector<std::string> MpiWorld::all_gather(const std::string& mine) const {
  if (!active_) return {mine};
  const auto gathered = gather(mine, 0);  // filled on rank 0 only
  return unpack(broadcast(rank_ == 0 ? pack(gathered) : std::string()));
}

#ifdef PARATWIN_HAVE_MPI
struct MpiWorld::PendingBarrier {
  MPI_Request request = MPI_REQUEST_NULL;
};
#else
struct MpiWorld::PendingBarrier {};
#endif

void MpiWorld::start_barrier() {
  PARATWIN_ASSERT(pending_ == nullptr, "a barrier is already in flight");
  pending_ = std::make_unique<PendingBarrier>();
#ifdef PARATWIN_HAVE_MPI
  if (active_) check(MPI_Ibarrier(MPI_COMM_WORLD, &pending_->request), "MPI_Ibarrier");
#endif
}

bool MpiWorld::barrier_done() {
  PARATWIN_ASSERT(pending_ != nullptr, "no barrier in flight");
#ifdef PARATWIN_HAVE_MPI
  if (active_) {
    int done = 0;
    check(MPI_Test(&pending_->request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done == 0) return false;
  }
#endif
  pending_.reset();
  return true;
}

void MpiWorld::abort_job(int exit_code) const {
#ifdef PARATWIN_HAVE_MPI
  if (active_ && size_ > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
#else
  (void)exit_code;
#endif
}

void MpiWorld::barrier() const {
#ifdef PARATWIN_HAVE_MPI
  if (active_) check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

}  // namespace paratwin::cli
