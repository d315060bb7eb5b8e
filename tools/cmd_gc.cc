// snapfs gc STORE|MOUNTPOINT [--dry-run] [--max-unused P] [--rewrite-below F]: reclaim the
// space of unreferenced chunks now, rewriting packs until at most P of the pack bytes are
// dead; also checks snapshots and their pins against the markers and reports
// disagreements.
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs/filesystem.h"
#include "core/chunks/gc.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

Result<std::vector<std::string>> SnapshotProblems(Store& store, Filesystem* fs);

namespace {

// "5%" or "0.05": a fraction in [0, 1].
Result<double> ParseFraction(const std::string& s, bool allow_percent) {
  std::string num = s;
  bool percent = allow_percent && !num.empty() && num.back() == '%';
  if (percent) num.pop_back();
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(num, &pos);
  } catch (...) {
    pos = 0;
  }
  if (num.empty() || pos != num.size()) return Status::InvalidArgument("not a number: " + s);
  if (percent) v /= 100;
  if (!(v >= 0 && v <= 1)) return Status::InvalidArgument("out of range: " + s);
  return v;
}

}  // namespace

// `fs`: the daemon's namespace, or null for an unmounted store.
Result<std::string> GcJson(Store& store, Filesystem* fs, const GcOptions& go, bool dry_run) {
  // One GC at a time store-wide, and no other host's GC under the check of the snapshots
  // below (it reads the markers' chunks from one view): the GC lease is held from here,
  // not only while ExecuteGc runs. Another host's GC in progress: Busy, at once.
  auto gc_lease = GcLeaseHold::Take(store, std::chrono::seconds(0));
  if (!gc_lease.ok()) return gc_lease.status();
  // Pins are what keep snapshot data alive: report any that disagree with the markers.
  ASSIGN_OR_RETURN(auto snap_problems, SnapshotProblems(store, fs));
  // "Reclaim space now" includes what `snapfs rm` removed a moment ago: the purge of the
  // removed folders (docs/snapshots.md) is finished first, in this thread, alongside
  // the daemon's purger (their batches are transactions: they never free twice).
  uint64_t purged = 0;
  if (fs && !dry_run) {
    while (true) {
      ASSIGN_OR_RETURN(PurgeProgress p, fs->PurgeStep(kPurgeBatch));
      purged += p.removed;
      if (!p.more) break;
    }
  }
  auto plan = PlanGc(store, go);
  if (!plan.ok()) return plan.status();
  bool active = false;
  for (const auto& p : plan->rewrite) active |= p.id == plan->active_pack;
  nlohmann::json j = {
      // dead_* are the unreferenced chunks this run drops from the index (kept for
      // scripts); dead_pack_bytes is pack space holding no live chunk, as in `stats`.
      {"dead_chunks", plan->dead_chunks.size()},
      {"dead_bytes", plan->dead_bytes},
      {"max_unused", go.max_unused_fraction},
      {"rewrite_below", go.rewrite_below_live_fraction},
      {"pack_bytes", plan->before.pack_bytes},
      {"dead_pack_bytes", plan->before.dead_bytes},
      {"packs_in_use", plan->packs_in_use},
      {"pack_bytes_in_use", plan->pack_bytes_in_use},
      {"packs_to_rewrite", plan->rewrite.size()},
      {"rewrites_active_pack", active},
      {"bytes_to_copy", plan->bytes_to_copy},
      {"bytes_to_free", plan->bytes_to_free},
      {"planned_pack_bytes_after", plan->pack_bytes_after},
      {"planned_dead_pack_bytes_after", plan->dead_bytes_after},
      {"dry_run", dry_run},
      {"purged_entries", purged},
      {"snapshot_problems", snap_problems}};
  if (!dry_run) {
    auto r = ExecuteGc(store, *plan);
    if (!r.ok()) return r.status();
    j["chunks_deleted"] = r->chunks_deleted;
    j["packs_removed"] = r->packs_removed;
    j["packs_busy"] = r->packs_busy;
    j["chunks_busy"] = r->chunks_busy;
    j["sealed_active_pack"] = r->sealed_active;
    j["bytes_copied"] = r->bytes_copied;
    j["bytes_freed"] = r->bytes_freed;
    auto after = MeasureSpace(store);
    if (!after.ok()) return after.status();
    j["pack_bytes_after"] = after->pack_bytes;
    j["dead_pack_bytes_after"] = after->dead_bytes;
  }
  return DumpJson(j, 2) + "\n";
}

namespace {

std::string Percent(double fraction) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f%%", 100.0 * fraction);
  return buf;
}
std::string Percent(uint64_t part, uint64_t whole) {
  return Percent(whole ? static_cast<double>(part) / static_cast<double>(whole) : 0.0);
}

int BadArgument(const std::string& what) { return UsageError("gc", what); }

}  // namespace

int CmdGc(const Args& args) {
  po::options_description opts("options");
  std::string target, max_unused = "5%", rewrite_below = "0";
  opts.add_options()("target", po::value(&target)->required(), "a store folder or a mount point")(
      "dry-run,n", po::bool_switch(), "only print what would be done")(
      "max-unused", po::value(&max_unused)->default_value(max_unused),
      "rewrite packs until at most this share of the pack bytes is dead: a percentage "
      "(5%) or a fraction (0.05); 0 rewrites every pack with any dead byte")(
      "rewrite-below", po::value(&rewrite_below)->default_value(rewrite_below),
      "also rewrite every pack whose live fraction is below this (0..1; 0: off)")(
      "offline", po::bool_switch(), kOfflineHelp)("json", po::bool_switch(), "print JSON");
  po::positional_options_description pos;
  pos.add("target", 1);
  po::variables_map vm;
  if (auto rc = Parse("gc", "STORE|MOUNTPOINT [--dry-run] [--max-unused 5%] [--json]", args, opts,
                      pos, &vm,
                      {"snapfs gc /mnt/ckpt --dry-run", "snapfs gc /mnt/ckpt --max-unused 0",
                       "snapfs gc /var/lib/snapfs       # an unmounted store"})) {
    return *rc;
  }
  GcOptions go;
  auto mu = ParseFraction(max_unused, /*allow_percent=*/true);
  if (!mu.ok()) {
    return BadArgument("--max-unused must be a percentage (5%) or a fraction from 0 to 1 (0.05): " +
                       max_unused);
  }
  go.max_unused_fraction = *mu;
  auto rb = ParseFraction(rewrite_below, /*allow_percent=*/false);
  if (!rb.ok()) return BadArgument("--rewrite-below must be between 0 and 1: " + rewrite_below);
  go.rewrite_below_live_fraction = *rb;
  bool dry = vm["dry-run"].as<bool>();

  Target t = ResolveTarget(target);
  // "gc REWRITE_BELOW [--dry-run] max-unused=F": an older daemon, which reads "gc FRACTION
  // [--dry-run]", still gets those two right.
  char req[96];
  snprintf(req, sizeof req, "gc %.17g%s max-unused=%.17g", go.rewrite_below_live_fraction,
           dry ? " --dry-run" : "", go.max_unused_fraction);
  auto answer = AskStore(t, req, [&](Store& store) { return GcJson(store, nullptr, go, dry); });
  if (!answer.ok()) return Fail("gc", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    PrintJson(j);
    return kExitOk;
  }
  auto u = [&](const char* k) { return j.value(k, uint64_t{0}); };
  printf("%llu unreferenced chunks (%s); packs %s, of which %s dead (%s)\n",
         static_cast<unsigned long long>(u("dead_chunks")), HumanBytes(u("dead_bytes")).c_str(),
         HumanBytes(u("pack_bytes")).c_str(), HumanBytes(u("dead_pack_bytes")).c_str(),
         Percent(u("dead_pack_bytes"), u("pack_bytes")).c_str());
  if (u("packs_in_use") > 0) {
    printf("left alone: %llu packs (%s) that writers are filling or have just sealed\n",
           static_cast<unsigned long long>(u("packs_in_use")),
           HumanBytes(u("pack_bytes_in_use")).c_str());
  }
  printf("%s %llu packs%s (%s to copy, %s to free): %s dead left (%s), target at most %s\n",
         dry ? "would rewrite" : "rewriting",
         static_cast<unsigned long long>(u("packs_to_rewrite")),
         j.value("rewrites_active_pack", false) ? ", the active one included" : "",
         HumanBytes(u("bytes_to_copy")).c_str(), HumanBytes(u("bytes_to_free")).c_str(),
         HumanBytes(u("planned_dead_pack_bytes_after")).c_str(),
         Percent(u("planned_dead_pack_bytes_after"), u("planned_pack_bytes_after")).c_str(),
         Percent(j.value("max_unused", 0.0)).c_str());
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
    printf("now: packs %s, of which %s dead (%s)\n", HumanBytes(u("pack_bytes_after")).c_str(),
           HumanBytes(u("dead_pack_bytes_after")).c_str(),
           Percent(u("dead_pack_bytes_after"), u("pack_bytes_after")).c_str());
    if (u("packs_busy") > 0) {
      printf("%llu packs left for a later gc: a writer had not committed data in them\n",
             static_cast<unsigned long long>(u("packs_busy")));
    }
    if (u("chunks_busy") > 0) {
      printf("%llu dead chunks left for a later gc: writers kept changing their counts\n",
             static_cast<unsigned long long>(u("chunks_busy")));
    }
  }
  return kExitOk;
}

}  // namespace snapfs::cli
