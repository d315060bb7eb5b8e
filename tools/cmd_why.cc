// snapfs why PATH [--json]: the snapshots that pin a file (reference it from their
// marker), and the path it has in each snapshot's view under /.snapshots/.
#include <sys/stat.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs/filesystem.h"
#include "tools/cli_util.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

Result<nlohmann::json> WhyRequest(Filesystem& fs, const nlohmann::json& req) {
  ASSIGN_OR_RETURN(std::string rel, ArgString(req, "path"));
  std::string label = ArgLabel(req, rel);
  ASSIGN_OR_RETURN(uint64_t ino, ResolveRel(fs, rel, label));
  ASSIGN_OR_RETURN(Attr a, fs.GetAttr(ino));
  ASSIGN_OR_RETURN(auto pins, fs.WhyPinned(ino));
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : pins) {
    list.push_back({{"snapshot", SnapshotJson(p.snapshot)}, {"view_path", p.view_path}});
  }
  // Whether this very entry is a deleted one kept for the snapshots.
  bool hidden = false;
  ASSIGN_OR_RETURN(auto hidden_entries, fs.ListHidden());
  std::string canonical;
  if (ino != kRootIno) {
    size_t slash = rel.rfind('/');
    std::string parent_rel = slash == std::string::npos ? "" : rel.substr(0, slash);
    std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
    auto parent = fs.ResolvePath(parent_rel);
    if (parent.ok()) {
      auto ppath = *parent == kRootIno ? Result<std::string>(std::string()) : fs.PathOf(*parent);
      if (ppath.ok()) canonical = ppath->empty() ? name : *ppath + "/" + name;
    }
  }
  for (const auto& h : hidden_entries) {
    if (h.ino == ino && (canonical.empty() || h.path == canonical)) hidden = true;
  }
  // The marker of the snapshot it sits in is that snapshot, not something it pins.
  nlohmann::json marker_of = nullptr;
  if (ino != kRootIno) {
    size_t slash = rel.rfind('/');
    auto parent = fs.ResolvePath(slash == std::string::npos ? "" : rel.substr(0, slash));
    if (parent.ok()) {
      auto snap = fs.GetSnapshot(*parent);
      if (snap.ok() && snap->marker == ino) marker_of = SnapshotJson(*snap);
    }
  }
  return nlohmann::json{{"path", rel},
                        {"marker_of", marker_of},
                        {"ino", ino},
                        {"is_dir", S_ISDIR(a.mode)},
                        {"size", a.size},
                        {"hidden", hidden},
                        {"pinned_by", std::move(list)}};
}

int CmdWhy(const Args& args) {
  po::options_description opts("options");
  std::string path;
  opts.add_options()("path", po::value(&path)->required(),
                     "a file inside a snapfs mount (deleted ones too), or STORE/path")(
      "offline", po::bool_switch(), kOfflineHelp)(
      "json", po::bool_switch(), "print JSON");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (auto rc = Parse("why", "PATH [--json]", args, opts, pos, &vm)) return *rc;

  auto pt = ResolvePathArg(path);
  if (!pt.ok()) return Fail("why", pt.status());
  auto answer = AskFs(pt->target, "snap-why", {{"path", pt->rel}, {"label", path}});
  if (!answer.ok()) return Fail("why", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    PrintJson(j);
    return kExitOk;
  }
  const auto& pins = j["pinned_by"];
  if (j.contains("marker_of") && !j["marker_of"].is_null()) {
    printf("%s is the marker of snapshot %s: it goes with 'snapfs rm' of the snapshot\n",
           path.c_str(), j["marker_of"]["path"].get<std::string>().c_str());
    if (pins.empty()) return kExitOk;
  }
  if (pins.empty()) {
    if (j["is_dir"].get<bool>()) {
      printf(
          "%s is a folder: snapshots pin files, not folders ('snapfs ls --hidden %s' lists "
          "what is kept in it)\n",
          path.c_str(), path.c_str());
    } else {
      printf("%s: not pinned by any snapshot\n", path.c_str());
    }
    return kExitOk;
  }
  printf("%s%s is pinned by %zu snapshot%s:\n", path.c_str(),
         j["hidden"].get<bool>() ? " (deleted; kept hidden for them)" : "", pins.size(),
         pins.size() == 1 ? "" : "s");
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : pins) {
    const auto& s = p["snapshot"];
    rows.push_back({s["path"].get<std::string>(), LocalTime(s["completed_ns"].get<int64_t>()),
                    std::string(kViewsName) + "/" + s["path"].get<std::string>() + "/" +
                        p["view_path"].get<std::string>()});
  }
  PrintTable({"snapshot", "completed", "in its view"}, rows, {false, false, false});
  return kExitOk;
}

}  // namespace snapfs::cli
