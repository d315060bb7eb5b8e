// snapfs ls PATH [--hidden] [--json]: the snapshots under PATH with their space (files,
// logical bytes, bytes freed if deleted, bytes shared with others); with --hidden, the
// deleted entries kept for snapshots instead, and which snapshots keep them.
#include <sys/stat.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs/filesystem.h"
#include "tools/cli_util.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

namespace {

bool InPath(const std::string& path, const std::string& under) {
  return under.empty() || path == under || path.starts_with(under + "/");
}

std::string Root(const PathTarget& pt) {
  return pt.mountpoint.empty() ? pt.target.store : pt.mountpoint;
}

}  // namespace

Result<nlohmann::json> LsRequest(Filesystem& fs, const nlohmann::json& req) {
  std::string rel;
  std::vector<uint64_t> dirs;
  ASSIGN_OR_RETURN(nlohmann::json list, SnapshotsWithUsage(fs, req, &rel, &dirs));
  return nlohmann::json{{"path", rel}, {"snapshots", std::move(list)}};
}

Result<nlohmann::json> HiddenRequest(Filesystem& fs, const nlohmann::json& req) {
  ASSIGN_OR_RETURN(std::string rel, ArgString(req, "path"));
  std::string label = ArgLabel(req, rel);
  ASSIGN_OR_RETURN(uint64_t ino, ResolveRel(fs, rel, label));
  (void)ino;
  ASSIGN_OR_RETURN(auto hidden, fs.ListHidden());
  nlohmann::json list = nlohmann::json::array();
  uint64_t bytes = 0;
  for (const auto& h : hidden) {
    // Entries whose folder was replaced ("?/name") have no path: shown from the root.
    if (!InPath(h.path, rel)) continue;
    bytes += h.size;
    list.push_back({{"path", h.path},
                    {"ino", h.ino},
                    {"kind", h.is_dir ? "folder" : "file"},
                    {"size", h.size},
                    {"pinned_by", h.pinned_by}});
  }
  return nlohmann::json{{"path", rel}, {"hidden", std::move(list)}, {"bytes", bytes}};
}

int CmdLs(const Args& args) {
  po::options_description opts("options");
  std::string path;
  opts.add_options()("path", po::value(&path)->default_value("."),
                     "a folder inside a snapfs mount, or STORE[/folder] of an unmounted store")(
      "hidden", po::bool_switch(), "list deleted entries kept hidden for snapshots instead")(
      "offline", po::bool_switch(), kOfflineHelp)(
      "json", po::bool_switch(), "print JSON (raw numbers)");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (auto rc = Parse("ls", "[PATH] [--hidden] [--json]", args, opts, pos, &vm)) return *rc;
  bool hidden = vm["hidden"].as<bool>();
  bool json = vm["json"].as<bool>();

  auto pt = ResolvePathArg(path);
  if (!pt.ok()) return Fail("ls", pt.status());
  auto answer =
      AskFs(pt->target, hidden ? "snap-hidden" : "snap-ls", {{"path", pt->rel}, {"label", path}});
  if (!answer.ok()) return Fail("ls", answer.status());
  nlohmann::json j = std::move(answer).value();
  j["root"] = Root(*pt);
  if (json) {
    PrintJson(j);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  if (hidden) {
    for (const auto& h : j["hidden"]) {
      std::string by;
      for (const auto& p : h["pinned_by"]) by += (by.empty() ? "" : ", ") + p.get<std::string>();
      rows.push_back({h["path"].get<std::string>(), h["kind"].get<std::string>(),
                      h["kind"] == "file" ? HumanBytes(h["size"].get<uint64_t>()) : "-",
                      by.empty() ? "-" : by});
    }
    if (rows.empty()) {
      printf("no hidden entries under %s\n", path.c_str());
      return kExitOk;
    }
    PrintTable({"path", "kind", "size", "pinned by"}, rows, {false, false, true, false});
    printf("%zu hidden entr%s (%s), paths relative to %s\n", rows.size(),
           rows.size() == 1 ? "y" : "ies", HumanBytes(j["bytes"].get<uint64_t>()).c_str(),
           Root(*pt).c_str());
    return kExitOk;
  }
  for (const auto& s : j["snapshots"]) {
    std::string job = s["job"].get<std::string>();
    rows.push_back({s["path"].get<std::string>(), job.empty() ? "-" : job,
                    s["id"].get<std::string>(), LocalTime(s["completed_ns"].get<int64_t>()),
                    std::to_string(s["files"].get<uint64_t>()),
                    HumanBytes(s["logical"].get<uint64_t>()),
                    HumanBytes(s["freed_if_deleted"].get<uint64_t>()),
                    HumanBytes(s["shared"].get<uint64_t>())});
  }
  if (rows.empty()) {
    printf("no snapshots under %s\n", path.c_str());
    return kExitOk;
  }
  PrintTable({"path", "job", "id", "completed", "files", "logical", "freed-if-deleted", "shared"},
             rows, {false, false, false, false, true, true, true, true});
  printf("%zu snapshot%s, paths relative to %s\n", rows.size(), rows.size() == 1 ? "" : "s",
         Root(*pt).c_str());
  return kExitOk;
}

}  // namespace snapfs::cli
