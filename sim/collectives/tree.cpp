// NCCL's all-reduce tree: inside a node a chain through the local GPUs (reduce towards the head, broadcast back),
// across nodes two complementary binary trees (src/graph/trees.cc ncclGetDtree), each carrying half of the buffer
// on its own rail. Collapsed: one flow per tree edge and direction with the edge's aggregate bytes.

#include "sim/collectives/collective.hpp"

namespace paratwin::sim {
namespace {

// ncclGetBtree's parent.
int btree_parent(int nranks, int rank) {
  if (rank == 0) return -1;
  int bit = 1;
  for (; bit < nranks; bit <<= 1) {
    if ((bit & rank) != 0) break;
  }
  int up = (rank ^ bit) | (bit << 1);
  if (up >= nranks) up = rank ^ bit;
  return up;
}

}  // namespace

int dtree_parent(int nranks, int rank, int tree) {
  if (tree == 0) return btree_parent(nranks, rank);
  if (nranks % 2 == 1) {  // shift
    const int u = btree_parent(nranks, (rank - 1 + nranks) % nranks);
    return u == -1 ? -1 : (u + 1) % nranks;
  }
  const int u = btree_parent(nranks, nranks - 1 - rank);  // mirror
  return u == -1 ? -1 : nranks - 1 - u;
}

void add_tree_allreduce_flows(const GroupGeometry& group, double bytes, std::vector<Flow>& flows) {
  if (group.size() <= 1 || bytes <= 0) return;
  auto gpu = [&](int pos) { return group.gpus[static_cast<std::size_t>(pos)]; };
  for (const auto& members : group.members_by_node) {
    for (std::size_t i = 0; i + 1 < members.size(); ++i) {
      flows.push_back(Flow{gpu(members[i + 1]), gpu(members[i]), bytes});  // reduce towards the head
      flows.push_back(Flow{gpu(members[i]), gpu(members[i + 1]), bytes});  // broadcast back
    }
  }
  const int node_count = static_cast<int>(group.members_by_node.size());
  if (node_count == 1) return;
  for (int tree = 0; tree < 2; ++tree) {
    auto head = [&](int node) {
      const auto& members = group.members_by_node[static_cast<std::size_t>(node)];
      return gpu(tree == 0 ? members.front() : members.back());
    };
    for (int node = 0; node < node_count; ++node) {
      const int parent = dtree_parent(node_count, node, tree);
      if (parent < 0) continue;
      flows.push_back(Flow{head(node), head(parent), bytes / 2});
      flows.push_back(Flow{head(parent), head(node), bytes / 2});
    }
  }
}

}  // namespace paratwin::sim
