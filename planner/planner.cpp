#include "planner/planner.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "planner/process_pool.hpp"
#include "planner/results_file.hpp"

namespace paratwin::plan {
namespace {

// Candidates sharing one simulation key: simulated once (docs/plan.md, "Reuse").
struct WorkItem {
  std::string key;
  std::vector<std::size_t> members;  ///< indices into the kept candidates
  int min_gpus = 0;                  ///< the members' fewest GPUs: the hardest to prune (see cut_for)
  std::optional<Outcome> outcome;
};

std::vector<WorkItem> group_by_key(const PlanRequest& request, const std::vector<KeptCandidate>& kept) {
  std::vector<WorkItem> items;
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < kept.size(); ++i) {
    const auto& c = kept[i].candidate;
    auto key = simulation_key(request, c);
    auto [it, fresh] = index.try_emplace(key, items.size());
    if (fresh) items.push_back(WorkItem{std::move(key), {}, c.gpus, std::nullopt});
    auto& item = items[it->second];
    item.members.push_back(i);
    item.min_gpus = std::min(item.min_gpus, c.gpus);
  }
  return items;
}

// The pruning cut for a work item, from the layouts simulated so far (deterministic: it only changes between waves).
// Its members' scores and their Pareto cuts are tightest at the fewest GPUs, so min_gpus stands for all of them.
PruneCut cut_for(const PlanRequest& request, const std::vector<KeptCandidate>& kept, const std::vector<WorkItem>& items,
                 const WorkItem& item) {
  std::vector<double> scores;
  PruneCut cut;
  for (const auto& done : items) {
    if (!done.outcome || done.outcome->status != OutcomeStatus::kSimulated) continue;
    for (const std::size_t m : done.members) {
      const int gpus = kept[m].candidate.gpus;
      scores.push_back(objective_score(request, done.outcome->latency_s, gpus));
      if (gpus <= item.min_gpus) cut.latency_s = std::min(cut.latency_s, done.outcome->latency_s);
    }
  }
  const auto top = static_cast<std::size_t>(request.top);
  if (scores.size() >= top) {
    std::nth_element(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(top - 1), scores.end());
    cut.score = scores[top - 1];
  }
  return cut;
}

std::vector<FinishedKey> finished_keys(const PlanRequest& request, const std::vector<KeptCandidate>& kept,
                                       const std::vector<WorkItem>& items) {
  std::vector<FinishedKey> out;
  for (const auto& item : items) {
    if (!item.outcome) continue;
    FinishedKey f{item.key, {}, *item.outcome};
    for (const std::size_t m : item.members) f.layout_ids.push_back(kept[m].candidate.id(request.model));
    out.push_back(std::move(f));
  }
  return out;
}

// The order layouts are evaluated in. Pruning cuts deeper the sooner good layouts are simulated, so likely-good ones go
// first: for TTFT the most GPUs, for throughput per GPU the fewest; then no pipeline before pipelines (bubbles), then
// the widest attention CP (long prompts). A heuristic: it changes how much is pruned, never the answer.
std::vector<std::size_t> evaluation_order(const PlanRequest& request, const std::vector<KeptCandidate>& kept,
                                          const std::vector<WorkItem>& items, std::vector<std::size_t> pending) {
  const auto rank_of = [&](std::size_t i) {
    const auto& c = kept[items[i].members.front()].candidate;
    const int gpus = request.objective == Objective::kTtft ? -items[i].min_gpus : items[i].min_gpus;
    return std::tuple{gpus, c.config.pp_size, -c.config.attn_cp_size};
  };
  std::stable_sort(pending.begin(), pending.end(),
                   [&](std::size_t a, std::size_t b) { return rank_of(a) < rank_of(b); });
  return pending;
}

void count_outcome(ProgressCounts& counts, const WorkItem& item, bool resumed) {
  const auto members = static_cast<std::int64_t>(item.members.size());
  counts.done += members;
  if (resumed) {
    counts.resumed += members;
    return;
  }
  counts.reused += members - 1;
  switch (item.outcome->status) {
    case OutcomeStatus::kSimulated:
      ++counts.simulated;
      break;
    case OutcomeStatus::kPruned:
      ++counts.pruned;
      break;
    case OutcomeStatus::kFailed:
      ++counts.failed;
      break;
  }
}

// Wave results exchanged between MPI ranks: {"interrupted": bool, "outcomes": {item index: outcome}}.
std::string wave_message(const std::map<std::size_t, Outcome>& mine, bool interrupted) {
  nlohmann::json outcomes = nlohmann::json::object();
  for (const auto& [index, outcome] : mine) outcomes[std::to_string(index)] = encode_outcome(outcome);
  return nlohmann::json{{"interrupted", interrupted}, {"outcomes", outcomes}}.dump();
}

}  // namespace

PlanResult run_plan(const PlanRequest& request, const PlanRun& run) {
  validate_request(request);
  const auto start = std::chrono::steady_clock::now();
  const int rank = run.distribution ? run.distribution->rank() : 0;
  const int ranks = run.distribution ? run.distribution->size() : 1;
  const bool reporter = rank == 0;

  PlanResult result;
  const auto interrupted = [&] { return run.interrupted && run.interrupted(); };
  LayoutSpace space = enumerate_layouts(request, interrupted);
  result.interrupted = space.interrupted;  // then no wave runs: the report and the results file say so
  result.generated = space.generated;
  result.rejected = std::move(space.rejected);
  result.kept = std::move(space.kept);
  std::vector<WorkItem> items = group_by_key(request, result.kept);
  result.simulation_keys = static_cast<std::int64_t>(items.size());

  // Resume: rank 0 reads the file; every rank takes the same answers.
  std::string resume_text = run.resume_text.value_or("");
  if (run.distribution) resume_text = run.distribution->all_gather(reporter ? resume_text : "").front();
  if (!resume_text.empty()) {
    const auto stored = read_results_file(resume_text, request, run.resume_source);
    for (auto& item : items) {
      if (const auto it = stored.find(item.key); it != stored.end()) {
        item.outcome = it->second;
        count_outcome(result.counts, item, /*resumed=*/true);
      }
    }
  }
  const auto save = [&](bool complete) {
    if (reporter && run.save)
      run.save(results_file_text(request, finished_keys(request, result.kept, items), complete));
  };
  save(false);

  std::vector<std::size_t> pending;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!items[i].outcome) pending.push_back(i);
  }
  pending = evaluation_order(request, result.kept, items, std::move(pending));
  std::optional<Progress> progress;
  if (reporter && run.progress) {
    progress.emplace(*run.progress, run.progress_terminal, static_cast<std::int64_t>(result.kept.size()),
                     result.counts.done);
    progress->update(result.counts);
  }
  ProcessPool pool(run.jobs);
  const auto wave_size = static_cast<std::size_t>(request.wave_size);
  for (std::size_t first = 0; first < pending.size() && !result.interrupted; first += wave_size) {
    const std::size_t end = std::min(pending.size(), first + wave_size);
    // This rank's share of the wave, with each item's cut fixed before any of the wave finishes.
    std::vector<std::size_t> share;
    std::vector<PruneCut> cuts;
    for (std::size_t p = first; p < end; ++p) {
      if (static_cast<int>((p - first) % static_cast<std::size_t>(ranks)) != rank) continue;
      share.push_back(pending[p]);
      cuts.push_back(cut_for(request, result.kept, items, items[pending[p]]));
    }
    std::map<std::size_t, Outcome> mine;
    const bool finished = pool.run(
        share.size(),
        [&](std::size_t i) {
          const auto& item = items[share[i]];
          const auto& candidate = result.kept[item.members.front()].candidate;
          return encode_outcome(evaluate(request, candidate, cuts[i], /*isolate_process=*/false));
        },
        [&](std::size_t i, TaskAnswer answer) {
          auto& item = items[share[i]];
          if (answer.ok) {
            item.outcome = decode_outcome(answer.text);
          } else {
            // The worker died or hit an internal error (e.g. killed for memory): this layout fails, the plan goes on.
            Outcome failed;
            failed.error = "the worker process failed: " + answer.text;
            item.outcome = failed;
          }
          mine[share[i]] = *item.outcome;
          count_outcome(result.counts, item, /*resumed=*/false);
          save(false);
          if (progress) progress->update(result.counts);
        },
        interrupted);
    bool any_interrupted = !finished;
    if (run.distribution) {
      for (const auto& text : run.distribution->all_gather(wave_message(mine, !finished))) {
        const auto message = nlohmann::json::parse(text);
        any_interrupted = any_interrupted || message.at("interrupted").get<bool>();
        for (const auto& [index, encoded] : message.at("outcomes").items()) {
          auto& item = items[std::stoul(index)];
          if (item.outcome) continue;  // this rank's own
          item.outcome = decode_outcome(encoded.get<std::string>());
          count_outcome(result.counts, item, /*resumed=*/false);
        }
      }
      save(false);
      if (progress) progress->update(result.counts);
    }
    result.interrupted = any_interrupted;
  }
  if (progress) progress->finish(result.counts);

  result.outcomes.resize(result.kept.size());
  for (const auto& item : items) {
    for (const std::size_t m : item.members) result.outcomes[m] = item.outcome;
  }
  result.ranking = rank_layouts(request, result.kept, result.outcomes);
  save(!result.interrupted);
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace paratwin::plan
