// snapfs du PATH [--json]: for each snapshot under PATH what deleting it alone would
// free, and what deleting all of them together would free (shared data among them only
// goes when all of them go).
#include <sys/stat.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs/filesystem.h"
#include "tools/cli_util.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

Result<nlohmann::json> DuRequest(Filesystem& fs, const nlohmann::json& req) {
  std::string rel;
  std::vector<uint64_t> dirs;
  SnapshotUsage total;  // measured in the same pass as each snapshot alone
  ASSIGN_OR_RETURN(nlohmann::json list, SnapshotsWithUsage(fs, req, &rel, &dirs, &total));
  return nlohmann::json{{"path", rel}, {"snapshots", std::move(list)}, {"total", UsageJson(total)}};
}

int CmdDu(const Args& args) {
  po::options_description opts("options");
  std::string path;
  opts.add_options()("path", po::value(&path)->required(),
                     "a folder inside a snapfs mount, or STORE[/folder] of an unmounted store")(
      "offline", po::bool_switch(), kOfflineHelp)(
      "json", po::bool_switch(), "print JSON (raw numbers)");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (auto rc = Parse("du", "PATH [--json]", args, opts, pos, &vm)) return *rc;

  auto pt = ResolvePathArg(path);
  if (!pt.ok()) return Fail("du", pt.status());
  auto answer = AskFs(pt->target, "snap-du", {{"path", pt->rel}, {"label", path}});
  if (!answer.ok()) return Fail("du", answer.status());
  nlohmann::json j = std::move(answer).value();
  std::string root = pt->mountpoint.empty() ? pt->target.store : pt->mountpoint;
  j["root"] = root;
  if (vm["json"].as<bool>()) {
    PrintJson(j);
    return kExitOk;
  }
  const auto& snaps = j["snapshots"];
  if (snaps.empty()) {
    printf("no snapshots under %s\n", path.c_str());
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : snaps) {
    rows.push_back({HumanBytes(s["freed_if_deleted"].get<uint64_t>()),
                    HumanBytes(s["logical"].get<uint64_t>()), s["path"].get<std::string>()});
  }
  const auto& t = j["total"];
  rows.push_back({HumanBytes(t["freed_if_deleted"].get<uint64_t>()),
                  HumanBytes(t["logical"].get<uint64_t>()),
                  "all " + std::to_string(snaps.size()) + " together"});
  PrintTable({"freed-if-deleted", "logical", "snapshot"}, rows, {true, true, false});
  printf("paths relative to %s; each line alone, the last one all of them at once\n", root.c_str());
  return kExitOk;
}

}  // namespace snapfs::cli
