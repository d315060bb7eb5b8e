// snapfs prune JOBDIR --keep-last N [--dry-run] [--force] [--json]: drop all but the
// newest N snapshots of a job (the snapshot folders directly inside JOBDIR), the way
// `snapfs rm` does, in one transaction. Newest = latest completion time; ties are broken
// by folder name, chk-N in numeric order. --keep-last 0 removes every snapshot of the job,
// which leaves it nothing to restore from, so it needs --force.
#include <sys/stat.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/filesystem.h"
#include "tools/cli_util.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

void PrintRemoveReport(const nlohmann::json& report, const std::string& gc_target);

Result<nlohmann::json> PruneRequest(Filesystem& fs, const nlohmann::json& req) {
  ASSIGN_OR_RETURN(std::string rel, ArgString(req, "path"));
  std::string label = ArgLabel(req, rel);
  auto keep_it = req.find("keep_last");
  if (keep_it == req.end() || !keep_it->is_number_integer() || keep_it->get<int64_t>() < 0) {
    return Status::InvalidArgument("\"keep_last\" must be a whole number >= 0");
  }
  uint64_t keep = keep_it->get<uint64_t>();
  bool dry = req.value("dry_run", false);
  ASSIGN_OR_RETURN(uint64_t ino, ResolveRel(fs, rel, label));
  ASSIGN_OR_RETURN(Attr a, fs.GetAttr(ino));
  if (!S_ISDIR(a.mode)) return Status::NotDirectory(label);
  std::string job;  // JOBDIR's canonical path ("" for the root)
  if (ino != kRootIno) {
    ASSIGN_OR_RETURN(job, fs.PathOf(ino));
  }
  ASSIGN_OR_RETURN(auto all, fs.ListSnapshots(ino));
  std::vector<SnapshotInfo> snaps;
  for (auto& s : all) {
    size_t slash = s.path.rfind('/');
    std::string parent = slash == std::string::npos ? "" : s.path.substr(0, slash);
    if (parent == job && !s.path.empty() && s.dir != ino) snaps.push_back(std::move(s));
  }
  std::sort(snaps.begin(), snaps.end(), OlderSnapshot);
  size_t drop = snaps.size() > keep ? snaps.size() - keep : 0;
  RETURN_IF_ERROR(CheckNoNestedSnapshots(
      fs, std::vector<SnapshotInfo>(snaps.begin(), snaps.begin() + static_cast<ptrdiff_t>(drop))));
  std::vector<uint64_t> dirs;
  nlohmann::json kept = nlohmann::json::array(), removed = nlohmann::json::array();
  for (size_t i = 0; i < snaps.size(); i++) {
    if (i < drop) {
      dirs.push_back(snaps[i].dir);
      removed.push_back(SnapshotJson(snaps[i]));
    } else {
      kept.push_back(SnapshotJson(snaps[i]));
    }
  }
  RemoveReport r;
  if (!dirs.empty()) {
    ASSIGN_OR_RETURN(r, fs.RemoveSnapshots(dirs, dry));
  }
  return nlohmann::json{{"path", rel},
                        {"keep_last", keep},
                        {"kept", std::move(kept)},
                        {"removed", std::move(removed)},
                        {"report", ReportJson(r, dry)}};
}

int CmdPrune(const Args& args) {
  po::options_description opts("options");
  std::string path;
  long long keep = -1;
  opts.add_options()("jobdir", po::value(&path)->required(),
                     "the job folder holding the snapshot folders (chk-N, savepoint-...)")(
      "keep-last", po::value(&keep)->required(), "how many of the newest snapshots to keep")(
      "dry-run,n", po::bool_switch(), "only report what would be removed")(
      "force", po::bool_switch(), "allow --keep-last 0 (removes every snapshot of the job)")(
      "json", po::bool_switch(), "print JSON (raw numbers)");
  po::positional_options_description pos;
  pos.add("jobdir", 1);
  po::variables_map vm;
  if (auto rc = Parse("prune", "JOBDIR --keep-last N [--dry-run] [--json]", args, opts, pos, &vm)) {
    return *rc;
  }
  bool dry = vm["dry-run"].as<bool>();
  if (keep < 0) {
    std::cerr << "snapfs prune: --keep-last must be 0 or more\n";
    return kExitUsage;
  }
  if (keep == 0 && !dry && !vm["force"].as<bool>()) {
    std::cerr << "snapfs prune: --keep-last 0 removes every snapshot of the job, leaving it "
                 "nothing to restore from; add --force if that is what you want (or try "
                 "--dry-run)\n";
    return kExitUsage;
  }

  auto pt = ResolvePathArg(path);
  if (!pt.ok()) return Fail("prune", pt.status());
  Progress progress;
  progress.Show(dry ? "measuring..." : "pruning...", true);
  auto answer = AskFs(pt->target, "snap-prune",
                      {{"path", pt->rel}, {"label", path}, {"keep_last", keep}, {"dry_run", dry}});
  progress.Done();
  if (!answer.ok()) return Fail("prune", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  const auto& kept = j["kept"];
  const auto& removed = j["removed"];
  if (kept.empty() && removed.empty()) {
    printf("no snapshots directly in %s (snapshot folders with a committed marker)\n",
           path.c_str());
    return kExitOk;
  }
  auto row = [](const nlohmann::json& s) {
    printf("  %-40s completed %s\n", s["path"].get<std::string>().c_str(),
           LocalTime(s["completed_ns"].get<int64_t>()).c_str());
  };
  printf("keeping %zu snapshot%s:\n", kept.size(), kept.size() == 1 ? "" : "s");
  for (const auto& s : kept) row(s);
  if (removed.empty()) {
    printf("nothing to remove: %s has %zu snapshot%s, --keep-last is %lld\n", path.c_str(),
           kept.size(), kept.size() == 1 ? "" : "s", keep);
    return kExitOk;
  }
  printf("%s %zu snapshot%s:\n", dry ? "would remove" : "removed", removed.size(),
         removed.size() == 1 ? "" : "s");
  for (const auto& s : removed) row(s);
  if (!removed.empty()) {
    PrintRemoveReport(j["report"], pt->mountpoint.empty() ? pt->target.store : pt->mountpoint);
  }
  return kExitOk;
}

}  // namespace snapfs::cli
