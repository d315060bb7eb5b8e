// snapfs rm SNAPSHOT... [--dry-run] [--wait] [--json]: drop snapshots and every file only
// they need (their folders, and referenced files nothing else references). Files other
// snapshots still need are hidden, not removed. GC reclaims the space.
// The snapshots end and their folders leave the namespace in one small transaction; a
// mounted daemon's purger drops the files in the background (docs/snapshots.md), so the
// report says "purging" instead of counts, unless --wait (or --offline) purges first.
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/fs/filesystem.h"
#include "tools/cli_util.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

Result<nlohmann::json> RmRequest(Filesystem& fs, const nlohmann::json& req) {
  auto paths = req.find("paths");
  if (paths == req.end() || !paths->is_array() || paths->empty()) {
    return Status::InvalidArgument("missing argument \"paths\" (a non-empty list)");
  }
  const nlohmann::json labels = req.value("labels", nlohmann::json::array());
  bool dry = req.value("dry_run", false);
  bool wait = req.value("wait", false);
  // Every path is checked before anything is removed: one bad path removes nothing.
  std::vector<uint64_t> dirs;
  std::vector<SnapshotInfo> infos;
  std::set<uint64_t> seen;
  nlohmann::json snaps = nlohmann::json::array();
  for (size_t i = 0; i < paths->size(); i++) {
    if (!(*paths)[i].is_string()) return Status::InvalidArgument("\"paths\" must hold strings");
    std::string rel = (*paths)[i].get<std::string>();
    std::string label = i < labels.size() && labels[i].is_string() ? labels[i].get<std::string>()
                                                                   : (rel.empty() ? "/" : rel);
    ASSIGN_OR_RETURN(SnapshotInfo s, ResolveSnapshot(fs, rel, label));
    if (s.dir == kRootIno) {
      return Status::InvalidArgument(label + " is the mount root: it cannot be removed");
    }
    if (!seen.insert(s.dir).second) continue;  // named twice
    dirs.push_back(s.dir);
    snaps.push_back(SnapshotJson(s));
    infos.push_back(std::move(s));
  }
  RETURN_IF_ERROR(CheckNoNestedSnapshots(fs, infos));
  ASSIGN_OR_RETURN(RemoveReport r, fs.RemoveSnapshots(dirs, dry, wait));
  return nlohmann::json{{"snapshots", std::move(snaps)}, {"report", ReportJson(r, dry)}};
}

// Prints a removal report (rm and prune).
void PrintRemoveReport(const nlohmann::json& report, const std::string& gc_target) {
  bool dry = report["dry_run"].get<bool>();
  auto u = [&](const char* k) { return report[k].get<uint64_t>(); };
  auto line = [](const char* what, const std::string& value) {
    printf("  %-41s %s\n", what, value.c_str());
  };
  if (report.value("purging", false)) {
    printf("  their folders are gone; the files are purged in the background (snapfs status\n"
           "  shows the backlog; --wait waits and counts), the space comes back when GC runs\n");
    return;
  }
  line("entries removed", std::to_string(u("entries_removed")));
  line("entries kept hidden for other snapshots", std::to_string(u("entries_hidden")));
  line(dry ? "bytes to free" : "bytes freed",
       HumanBytes(u("bytes_freed")) + " (" + std::to_string(u("bytes_freed")) + ")");
  if (u("bytes_freed") > 0) {
    printf("the space %s back when GC runs (by itself, or now: snapfs gc %s)\n",
           dry ? "would come" : "comes", gc_target.c_str());
  }
}

int CmdRm(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> paths;
  opts.add_options()("snapshot", po::value(&paths)->required()->multitoken(),
                     "snapshot folders (inside a snapfs mount, or STORE/path)")(
      "dry-run,n", po::bool_switch(), "only report what would be removed")(
      "wait", po::bool_switch(),
      "purge the files before returning and report what was removed and freed (by default "
      "a mounted daemon purges them in the background)")(
      "offline", po::bool_switch(), kOfflineHelp)(
      "json", po::bool_switch(), "print JSON (raw numbers)");
  po::positional_options_description pos;
  pos.add("snapshot", -1);
  po::variables_map vm;
  if (auto rc = Parse("rm", "SNAPSHOT... [--dry-run] [--wait] [--json]", args, opts, pos, &vm)) return *rc;
  bool dry = vm["dry-run"].as<bool>();

  std::optional<PathTarget> first;
  nlohmann::json rels = nlohmann::json::array(), labels = nlohmann::json::array();
  for (const auto& p : paths) {
    auto pt = ResolvePathArg(p);
    if (!pt.ok()) return Fail("rm", pt.status());
    if (first && pt->target.store != first->target.store) {
      return Fail("rm", Status::InvalidArgument(p + " is in store " + pt->target.store + ", " +
                                                first->arg + " in store " + first->target.store +
                                                ": one store per call"));
    }
    if (!first) first = *pt;
    rels.push_back(pt->rel);
    labels.push_back(p);
  }
  Progress progress;
  progress.Show(
      (dry ? "measuring " : "removing ") + std::to_string(paths.size()) + " snapshot(s)...", true);
  auto answer =
      AskFs(first->target, "snap-rm", {{"paths", rels}, {"labels", labels}, {"dry_run", dry}, {"wait", vm["wait"].as<bool>()}});
  progress.Done();
  if (!answer.ok()) return Fail("rm", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    PrintJson(j);
    return kExitOk;
  }
  const auto& snaps = j["snapshots"];
  printf("%s %zu snapshot%s:\n", dry ? "would remove" : "removed", snaps.size(),
         snaps.size() == 1 ? "" : "s");
  for (const auto& s : snaps) printf("  %s\n", s["path"].get<std::string>().c_str());
  PrintRemoveReport(j["report"],
                    first->mountpoint.empty() ? first->target.store : first->mountpoint);
  return kExitOk;
}

}  // namespace snapfs::cli
