// snapfs prune JOBDIR... [--keep-last N] [--keep-within DURATION] [--dry-run] [--force]
// [--json]: in each job folder, drop the snapshots (the snapshot folders directly inside
// it) the rules do not keep, the way `snapfs rm` does. --keep-last N keeps the newest N;
// --keep-within D keeps those completed within D of now; with both, a snapshot either
// keeps is kept (restic forget's union). Newest = latest completion time; ties are broken
// by folder name, chk-N in numeric order.
//
// Several job folders (`snapfs prune /mnt/ckpt/* --keep-last 3`): each is judged on its
// own, and all of one store are removed in one transaction (every path is checked first:
// one bad path removes nothing). Folders in different stores are pruned store by store;
// unless --dry-run, every store is first asked for a dry run, so a bad path in any store
// removes nothing anywhere. A folder with no snapshots directly in it is reported and
// skipped. Rules that would leave a job with no snapshot (--keep-last 0, or --keep-within
// alone when none is that recent) remove everything it could restore from: --force.
#include <sys/stat.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/fs/filesystem.h"
#include "tools/cli_util.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

void PrintRemoveReport(const nlohmann::json& report, const std::string& gc_target);

namespace {

// An optional whole number >= 0; nullopt if absent or null.
Result<std::optional<int64_t>> OptCount(const nlohmann::json& req, const char* key) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    return Status::InvalidArgument(std::string("\"") + key + "\" must be a whole number >= 0");
  }
  return std::optional<int64_t>(it->get<int64_t>());
}

}  // namespace

Result<nlohmann::json> PruneRequest(Filesystem& fs, const nlohmann::json& req) {
  // "paths" (and "labels"); a single "path" is accepted as well.
  std::vector<std::string> rels, labels;
  if (auto p = req.find("paths"); p != req.end()) {
    if (!p->is_array() || p->empty()) {
      return Status::InvalidArgument("\"paths\" must be a non-empty list");
    }
    const nlohmann::json ls = req.value("labels", nlohmann::json::array());
    for (size_t i = 0; i < p->size(); i++) {
      if (!(*p)[i].is_string()) return Status::InvalidArgument("\"paths\" must hold strings");
      rels.push_back((*p)[i].get<std::string>());
      labels.push_back(i < ls.size() && ls[i].is_string()
                           ? ls[i].get<std::string>()
                           : (rels.back().empty() ? "/" : rels.back()));
    }
  } else {
    ASSIGN_OR_RETURN(std::string rel, ArgString(req, "path"));
    rels.push_back(rel);
    labels.push_back(ArgLabel(req, rel));
  }
  ASSIGN_OR_RETURN(auto keep_last, OptCount(req, "keep_last"));
  ASSIGN_OR_RETURN(auto keep_within, OptCount(req, "keep_within_ns"));
  if (!keep_last && !keep_within) {
    return Status::InvalidArgument("give \"keep_last\", \"keep_within_ns\" or both");
  }
  bool dry = req.value("dry_run", false), force = req.value("force", false);
  // "check": a dry run that refuses what the real run would refuse.
  bool strict = !dry || req.value("check", false);
  int64_t now = req.contains("now_ns") && req["now_ns"].is_number_integer()
                    ? req["now_ns"].get<int64_t>()
                    : NowNs();
  // Snapshots completed at or after this are kept by --keep-within.
  int64_t cutoff = keep_within ? now - *keep_within : 0;

  ASSIGN_OR_RETURN(auto all, fs.ListSnapshots());
  nlohmann::json jobs = nlohmann::json::array();
  nlohmann::json kept_all = nlohmann::json::array(), removed_all = nlohmann::json::array();
  std::vector<SnapshotInfo> drop;
  std::set<uint64_t> seen;
  for (size_t i = 0; i < rels.size(); i++) {
    const std::string& label = labels[i];
    ASSIGN_OR_RETURN(uint64_t ino, ResolveRel(fs, rels[i], label));
    ASSIGN_OR_RETURN(Attr a, fs.GetAttr(ino));
    if (!S_ISDIR(a.mode)) return Status::NotDirectory(label + " is not a folder");
    if (!seen.insert(ino).second) continue;  // named twice
    std::string job;                         // the folder's canonical path ("" for the root)
    if (ino != kRootIno) {
      ASSIGN_OR_RETURN(job, fs.PathOf(ino));
    }
    std::vector<SnapshotInfo> snaps;
    for (const auto& s : all) {
      size_t slash = s.path.rfind('/');
      std::string parent = slash == std::string::npos ? "" : s.path.substr(0, slash);
      if (parent == job && !s.path.empty() && s.dir != ino) snaps.push_back(s);
    }
    std::sort(snaps.begin(), snaps.end(), OlderSnapshot);
    nlohmann::json kept = nlohmann::json::array(), removed = nlohmann::json::array();
    size_t newest_from = keep_last && snaps.size() > static_cast<size_t>(*keep_last)
                             ? snaps.size() - static_cast<size_t>(*keep_last)
                             : 0;
    if (keep_within && !keep_last) newest_from = snaps.size();  // --keep-within alone
    for (size_t k = 0; k < snaps.size(); k++) {
      nlohmann::json why = nlohmann::json::array();
      if (k >= newest_from) why.push_back("last");
      if (keep_within && snaps[k].completed_ns >= cutoff) why.push_back("within");
      nlohmann::json sj = SnapshotJson(snaps[k]);
      if (why.empty()) {
        removed.push_back(sj);
        removed_all.push_back(sj);
        drop.push_back(snaps[k]);
      } else {
        sj["kept_by"] = std::move(why);
        kept.push_back(sj);
        kept_all.push_back(std::move(sj));
      }
    }
    if (!snaps.empty() && kept.empty() && !force && strict) {
      return Status::InvalidArgument(
          "the rules keep none of the " + std::to_string(snaps.size()) + " snapshot(s) in " +
          label +
          ", leaving it nothing to restore from; add --force if that is what you want "
          "(or try --dry-run)");
    }
    jobs.push_back({{"path", job},
                    {"label", label},
                    {"snapshots", snaps.size()},
                    {"skipped", snaps.empty()},
                    {"markers", MarkerNamesText(fs)},
                    {"kept", std::move(kept)},
                    {"removed", std::move(removed)}});
  }
  RETURN_IF_ERROR(CheckNoNestedSnapshots(fs, drop));
  std::vector<uint64_t> dirs;
  for (const auto& s : drop) dirs.push_back(s.dir);
  RemoveReport r;
  if (!dirs.empty()) {
    ASSIGN_OR_RETURN(r, fs.RemoveSnapshots(dirs, dry, req.value("wait", false)));
  }
  return nlohmann::json{
      {"keep_last", keep_last ? nlohmann::json(*keep_last) : nlohmann::json(nullptr)},
      {"keep_within_ns", keep_within ? nlohmann::json(*keep_within) : nlohmann::json(nullptr)},
      {"now_ns", now},
      {"jobs", std::move(jobs)},
      {"kept", std::move(kept_all)},
      {"removed", std::move(removed_all)},
      {"report", ReportJson(r, dry)}};
}

namespace {

// Adds one store's removal report into a sum of them.
void AddReport(nlohmann::json* sum, const nlohmann::json& r) {
  if (sum->is_null()) {
    *sum = r;
    return;
  }
  for (const char* k : {"snapshots", "entries_removed", "entries_hidden", "bytes_freed"}) {
    // null: purging in the background, not counted yet.
    (*sum)[k] = (*sum)[k].is_null() || r[k].is_null()
                    ? nlohmann::json(nullptr)
                    : nlohmann::json((*sum)[k].get<uint64_t>() + r[k].get<uint64_t>());
  }
  (*sum)["purging"] = sum->value("purging", false) || r.value("purging", false);
}

void PrintJob(const nlohmann::json& job, bool dry) {
  const std::string label = job["label"].get<std::string>();
  if (job["skipped"].get<bool>()) {
    printf("%s: no snapshots directly in it (folders with a committed %s), skipped\n",
           label.c_str(), job["markers"].get<std::string>().c_str());
    return;
  }
  const auto& kept = job["kept"];
  const auto& removed = job["removed"];
  printf("%s: keeping %zu, %s %zu\n", label.c_str(), kept.size(), dry ? "would remove" : "removed",
         removed.size());
  auto row = [](const char* what, const nlohmann::json& s, const std::string& why) {
    printf("  %-7s %-40s completed %s%s\n", what, s["path"].get<std::string>().c_str(),
           LocalTime(s["completed_ns"].get<int64_t>()).c_str(), why.c_str());
  };
  for (const auto& s : kept) {
    std::string why;
    for (const auto& w : s["kept_by"]) {
      why +=
          (why.empty() ? "  (" : ", ") + std::string(w == "last" ? "--keep-last" : "--keep-within");
    }
    row("keep", s, why.empty() ? "" : why + ")");
  }
  for (const auto& s : removed) row(dry ? "remove" : "removed", s, "");
}

}  // namespace

int CmdPrune(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> paths;
  std::string within;
  long long keep = -1;
  opts.add_options()("jobdir", po::value(&paths)->required()->multitoken(),
                     "job folders holding the snapshot folders (chk-N, savepoint-...); a glob "
                     "like MOUNT/* names several")("keep-last", po::value(&keep),
                                                   "keep the newest N snapshots of each job")(
      "keep-within", po::value(&within),
      "keep the snapshots completed within DURATION of now (30m, 12h, 7d); with "
      "--keep-last, keep what either keeps")("dry-run,n", po::bool_switch(),
                                             "only report what would be removed")(
      "wait", po::bool_switch(), "purge the removed folders before returning (see snapfs rm)")(
      "force", po::bool_switch(), "allow rules that keep no snapshot of a job (--keep-last 0)")(
      "offline", po::bool_switch(), kOfflineHelp)("json", po::bool_switch(),
                                                  "print JSON (raw numbers)");
  po::positional_options_description pos;
  pos.add("jobdir", -1);
  po::variables_map vm;
  if (auto rc = Parse("prune",
                      "JOBDIR... [--keep-last N] [--keep-within DURATION] [--dry-run] [--json]",
                      args, opts, pos, &vm,
                      {"snapfs prune /mnt/ckpt/<job> --keep-last 3 --dry-run",
                       "snapfs prune /mnt/ckpt/* --keep-last 3 --keep-within 7d"})) {
    return *rc;
  }
  bool dry = vm["dry-run"].as<bool>(), force = vm["force"].as<bool>();
  bool has_last = vm.count("keep-last") > 0, has_within = vm.count("keep-within") > 0;
  if (!has_last && !has_within) {
    return UsageError("prune", "say what to keep: --keep-last N, --keep-within DURATION or both");
  }
  if (has_last && keep < 0) {
    return UsageError("prune", "--keep-last must be 0 or more");
  }
  int64_t within_ns = 0;
  if (has_within) {
    auto d = ParseDuration(within);
    if (!d.ok()) {
      return UsageError("prune", "--keep-within: " + d.status().message());
    }
    within_ns = *d;
  }
  if (has_last && keep == 0 && !has_within && !dry && !force) {
    return UsageError("prune",
                      "--keep-last 0 removes every snapshot of the job, leaving it nothing to "
                      "restore from; add --force if that is what you want (or try --dry-run)");
  }

  // Every path is resolved first; then one request per store, in the order given.
  struct Group {
    PathTarget first;
    nlohmann::json rels = nlohmann::json::array(), labels = nlohmann::json::array();
  };
  std::vector<Group> groups;
  for (const auto& p : paths) {
    auto pt = ResolvePathArg(p);
    if (!pt.ok()) return Fail("prune", pt.status());
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](const Group& x) { return x.first.target.store == pt->target.store; });
    if (g == groups.end()) {
      groups.push_back(Group{*pt});
      g = groups.end() - 1;
    }
    g->rels.push_back(pt->rel);
    g->labels.push_back(p);
  }
  nlohmann::json base = {{"dry_run", dry},
                         {"force", force},
                         {"wait", vm["wait"].as<bool>()},
                         {"now_ns", NowNs()}};
  if (has_last) base["keep_last"] = keep;
  if (has_within) base["keep_within_ns"] = within_ns;
  auto request = [&](const Group& g, bool dry_run) {
    nlohmann::json req = base;
    req["paths"] = g.rels;
    req["labels"] = g.labels;
    req["dry_run"] = dry_run;
    if (dry_run && !dry) req["check"] = true;
    return AskFs(g.first.target, "snap-prune", req);
  };
  Progress progress;
  // Several stores: each is checked with a dry run before any is changed.
  if (groups.size() > 1 && !dry) {
    progress.Show("checking " + std::to_string(groups.size()) + " stores...", true);
    for (const auto& g : groups) {
      auto check = request(g, true);
      if (!check.ok()) {
        progress.Done();
        return Fail("prune", check.status().WithContext("store " + g.first.target.store +
                                                        " (nothing was removed)"));
      }
    }
  }
  nlohmann::json out = base;
  out.erase("force");
  out["keep_last"] = has_last ? nlohmann::json(keep) : nlohmann::json(nullptr);
  out["keep_within_ns"] = has_within ? nlohmann::json(within_ns) : nlohmann::json(nullptr);
  out["jobs"] = nlohmann::json::array();
  out["kept"] = nlohmann::json::array();
  out["removed"] = nlohmann::json::array();
  out["stores"] = nlohmann::json::array();
  nlohmann::json total;
  std::vector<std::string> gc_targets;
  for (size_t i = 0; i < groups.size(); i++) {
    const Group& g = groups[i];
    progress.Show(dry ? "measuring..." : "pruning...", true);
    auto answer = request(g, dry);
    progress.Done();
    if (!answer.ok()) {
      Status s = answer.status();
      if (i > 0)
        s = s.WithContext("store " + g.first.target.store + " (earlier stores were pruned)");
      return Fail("prune", s);
    }
    nlohmann::json& a = *answer;
    std::string where = g.first.mountpoint.empty() ? g.first.target.store : g.first.mountpoint;
    for (auto& j : a["jobs"]) {
      j["store"] = g.first.target.store;
      out["jobs"].push_back(std::move(j));
    }
    for (auto& s : a["kept"]) out["kept"].push_back(std::move(s));
    for (auto& s : a["removed"]) out["removed"].push_back(std::move(s));
    out["stores"].push_back({{"store", g.first.target.store}, {"report", a["report"]}});
    AddReport(&total, a["report"]);
    gc_targets.push_back(where);
  }
  out["report"] = total;
  if (vm["json"].as<bool>()) {
    PrintJson(out);
    return kExitOk;
  }
  for (const auto& j : out["jobs"]) PrintJob(j, dry);
  size_t n = out["removed"].size();
  if (n == 0) {
    printf("nothing to remove\n");
    return kExitOk;
  }
  printf("%s %zu snapshot%s in total\n", dry ? "would remove" : "removed", n, n == 1 ? "" : "s");
  for (size_t i = 0; i < out["stores"].size(); i++) {
    if (out["stores"].size() > 1)
      printf("store %s:\n", out["stores"][i]["store"].get<std::string>().c_str());
    if (out["stores"][i]["report"]["snapshots"].get<uint64_t>() > 0) {
      PrintRemoveReport(out["stores"][i]["report"], gc_targets[i]);
    }
  }
  return kExitOk;
}

}  // namespace snapfs::cli
