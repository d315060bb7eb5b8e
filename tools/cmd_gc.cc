// snapfs gc STORE|MOUNTPOINT [--dry-run]: reclaim the space of unreferenced chunks now;
// also checks snapshots and their pins against the markers and reports disagreements.
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/filesystem.h"
#include "core/gc.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

Result<std::vector<std::string>> SnapshotProblems(Store& store, Filesystem* fs);

// `fs`: the daemon's namespace, or null for an unmounted store.
Result<std::string> GcJson(Store& store, Filesystem* fs, double fraction, bool dry_run) {
  // Pins are what keep snapshot data alive: report any that disagree with the markers.
  ASSIGN_OR_RETURN(auto snap_problems, SnapshotProblems(store, fs));
  GcOptions go;
  go.rewrite_below_live_fraction = fraction;
  auto plan = PlanGc(store, go);
  if (!plan.ok()) return plan.status();
  nlohmann::json j = {
      {"dead_chunks", plan->dead_chunks.size()},  {"dead_bytes", plan->dead_bytes},
      {"packs_to_rewrite", plan->rewrite.size()}, {"bytes_to_copy", plan->bytes_to_copy},
      {"bytes_to_free", plan->bytes_to_free},     {"dry_run", dry_run},
      {"snapshot_problems", snap_problems}};
  if (!dry_run) {
    auto r = ExecuteGc(store, *plan);
    if (!r.ok()) return r.status();
    j["chunks_deleted"] = r->chunks_deleted;
    j["packs_removed"] = r->packs_removed;
    j["bytes_copied"] = r->bytes_copied;
    j["bytes_freed"] = r->bytes_freed;
  }
  return j.dump(2) + "\n";
}

int CmdGc(const Args& args) {
  po::options_description opts("options");
  std::string target;
  double fraction = 0.5;
  opts.add_options()("target", po::value(&target)->required(), "a store folder or a mount point")(
      "dry-run,n", po::bool_switch(), "only print what would be done")(
      "rewrite-below", po::value(&fraction)->default_value(fraction),
      "rewrite packs whose live fraction is below this (0..1)")("json", po::bool_switch(),
                                                                "print JSON");
  po::positional_options_description pos;
  pos.add("target", 1);
  po::variables_map vm;
  if (auto rc = Parse("gc", "STORE|MOUNTPOINT [--dry-run]", args, opts, pos, &vm)) return *rc;
  if (!(fraction >= 0 && fraction <= 1)) {
    return Fail("gc", Status::InvalidArgument("--rewrite-below must be between 0 and 1"));
  }
  bool dry = vm["dry-run"].as<bool>();

  Target t = ResolveTarget(target);
  auto answer =
      AskStore(t, std::string("gc ") + std::to_string(fraction) + (dry ? " --dry-run" : ""),
               [&](Store& store) { return GcJson(store, nullptr, fraction, dry); });
  if (!answer.ok()) return Fail("gc", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  auto u = [&](const char* k) { return j[k].get<uint64_t>(); };
  printf("%llu unreferenced chunks (%s), %llu packs to rewrite (%s to copy, %s to free)\n",
         static_cast<unsigned long long>(u("dead_chunks")), HumanBytes(u("dead_bytes")).c_str(),
         static_cast<unsigned long long>(u("packs_to_rewrite")),
         HumanBytes(u("bytes_to_copy")).c_str(), HumanBytes(u("bytes_to_free")).c_str());
  if (j.contains("snapshot_problems")) {
    for (const auto& p : j["snapshot_problems"]) {
      printf("SNAPSHOT PROBLEM: %s\n", p.get<std::string>().c_str());
    }
    if (!j["snapshot_problems"].empty()) {
      printf("%zu snapshot problem(s): run 'snapfs fsck' for the full check\n",
             j["snapshot_problems"].size());
    }
  }
  if (!dry) {
    printf("deleted %llu chunks, removed %llu packs, copied %s, freed %s\n",
           static_cast<unsigned long long>(u("chunks_deleted")),
           static_cast<unsigned long long>(u("packs_removed")),
           HumanBytes(u("bytes_copied")).c_str(), HumanBytes(u("bytes_freed")).c_str());
  }
  return kExitOk;
}

}  // namespace snapfs::cli
