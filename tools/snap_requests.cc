// The dispatcher of the snapshot requests and what their handlers share.
#include "tools/snap_requests.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

namespace {

using Handler = Result<nlohmann::json> (*)(Filesystem&, const nlohmann::json&);

const std::map<std::string, Handler>& Handlers() {
  static const std::map<std::string, Handler> kHandlers = {
      {"snap-ls", LsRequest},           {"snap-hidden", HiddenRequest},
      {"snap-du", DuRequest},           {"snap-rm", RmRequest},
      {"snap-prune", PruneRequest},     {"snap-why", WhyRequest},
      {"snap-orphans", OrphansRequest}, {"snap-unlink", UnlinkRequest},
      {"snap-files", FilesRequest},
  };
  return kHandlers;
}

// "chk-42" -> 42; nullopt for anything else.
std::optional<uint64_t> CheckpointNumber(std::string_view name) {
  if (!name.starts_with("chk-") || name.size() == 4) return std::nullopt;
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(name.data() + 4, name.data() + name.size(), n);
  if (ec != std::errc() || p != name.data() + name.size()) return std::nullopt;
  return n;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

bool IsSnapRequest(const std::string& verb) { return Handlers().count(verb) > 0; }

Result<nlohmann::json> HandleSnapRequest(Filesystem& fs, const std::string& verb,
                                         const nlohmann::json& req) {
  auto it = Handlers().find(verb);
  if (it == Handlers().end()) {
    return Status::InvalidArgument("unknown snapshot request '" + verb + "'");
  }
  if (!req.is_object()) return Status::InvalidArgument(verb + ": arguments must be a JSON object");
  // Sizes, times and extents of files being written count as the writers see them.
  RETURN_IF_ERROR(fs.FlushAll());
  try {
    return it->second(fs, req);
  } catch (const std::exception& e) {  // a malformed argument must not take the daemon down
    return Status::InvalidArgument(verb + ": bad request: " + e.what());
  }
}

std::string SnapshotJob(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return BaseName(path.substr(0, slash));
}

std::string SnapshotId(const std::string& path) {
  std::string name = BaseName(path);
  if (auto n = CheckpointNumber(name)) return std::to_string(*n);
  return name;
}

nlohmann::json SnapshotJson(const SnapshotInfo& s) {
  return {{"path", s.path},
          {"dir", s.dir},
          {"job", SnapshotJob(s.path)},
          {"id", SnapshotId(s.path)},
          {"marker_name", s.marker_name},
          {"completed_ns", s.completed_ns},
          {"completed", Rfc3339(s.completed_ns)},
          {"pins", s.pins}};
}

nlohmann::json UsageJson(const SnapshotUsage& u) {
  return {{"files", u.files},
          {"logical", u.logical},
          {"freed_if_deleted", u.exclusive},
          {"shared", u.shared}};
}

nlohmann::json ReportJson(const RemoveReport& r, bool dry_run) {
  if (r.purging) {
    // Ended and detached; the daemon's purger drops the files now: not counted yet.
    return {{"snapshots", r.snapshots}, {"entries_removed", nullptr},
            {"entries_hidden", nullptr}, {"bytes_freed", nullptr},
            {"purging", true},           {"dry_run", dry_run}};
  }
  return {{"snapshots", r.snapshots},
          {"entries_removed", r.files_removed},
          {"entries_hidden", r.files_hidden},
          {"bytes_freed", r.bytes_freed},
          {"purging", false},
          {"dry_run", dry_run}};
}

Result<nlohmann::json> SnapshotsWithUsage(Filesystem& fs, const nlohmann::json& req,
                                          std::string* rel, std::vector<uint64_t>* dirs,
                                          SnapshotUsage* total) {
  ASSIGN_OR_RETURN(*rel, ArgString(req, "path"));
  std::string label = ArgLabel(req, *rel);
  ASSIGN_OR_RETURN(uint64_t ino, ResolveRel(fs, *rel, label));
  ASSIGN_OR_RETURN(Attr a, fs.GetAttr(ino));
  if (!S_ISDIR(a.mode)) return Status::NotDirectory(label);
  ASSIGN_OR_RETURN(auto snaps, fs.ListSnapshots(ino));
  std::sort(snaps.begin(), snaps.end(), SnapshotPathLess);
  std::vector<uint64_t> asked;
  for (const auto& s : snaps) asked.push_back(s.dir);
  auto measured = fs.MeasureEach(asked, total);
  if (!measured.ok()) return measured.status().WithContext("measure snapshots");
  const auto& usage = *measured;
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < snaps.size(); i++) {
    if (!usage[i]) continue;  // ended meanwhile
    nlohmann::json j = SnapshotJson(snaps[i]);
    j.update(UsageJson(*usage[i]));
    list.push_back(std::move(j));
    dirs->push_back(snaps[i].dir);
  }
  return list;
}

std::string MarkerNamesText(Filesystem& fs) {
  std::string out;
  for (const auto& n : fs.MarkerNames()) out += (out.empty() ? "" : " or ") + n;
  return out.empty() ? "marker" : out;
}

bool OlderSnapshot(const SnapshotInfo& a, const SnapshotInfo& b) {
  if (a.completed_ns != b.completed_ns) return a.completed_ns < b.completed_ns;
  std::string na = BaseName(a.path), nb = BaseName(b.path);
  auto ca = CheckpointNumber(na), cb = CheckpointNumber(nb);
  if (ca && cb && *ca != *cb) return *ca < *cb;
  if (ca.has_value() != cb.has_value()) return ca.has_value();  // chk-N before other names
  if (na != nb) return na < nb;
  return a.path < b.path;
}

bool SnapshotPathLess(const SnapshotInfo& a, const SnapshotInfo& b) {
  size_t sa = a.path.rfind('/'), sb = b.path.rfind('/');
  std::string pa = sa == std::string::npos ? "" : a.path.substr(0, sa);
  std::string pb = sb == std::string::npos ? "" : b.path.substr(0, sb);
  if (pa != pb) return pa < pb;
  std::string na = BaseName(a.path), nb = BaseName(b.path);
  auto ca = CheckpointNumber(na), cb = CheckpointNumber(nb);
  if (ca && cb) return *ca < *cb;
  if (ca.has_value() != cb.has_value()) return ca.has_value();
  return na < nb;
}

Status CheckNoNestedSnapshots(Filesystem& fs, const std::vector<SnapshotInfo>& snaps) {
  std::set<uint64_t> named;
  for (const auto& s : snaps) named.insert(s.dir);
  for (const auto& s : snaps) {
    ASSIGN_OR_RETURN(auto inside, fs.ListSnapshots(s.dir));
    for (const auto& n : inside) {
      if (named.count(n.dir)) continue;
      return Status::InvalidArgument(
          "snapshot " + s.path + " holds another snapshot, " + n.path +
          ", which removing it would remove too; name that one as well (nothing was removed)");
    }
  }
  return Status::OK();
}

Result<std::string> ArgString(const nlohmann::json& req, const char* key) {
  auto it = req.find(key);
  if (it == req.end() || !it->is_string()) {
    return Status::InvalidArgument(std::string("missing string argument \"") + key + "\"");
  }
  return it->get<std::string>();
}

std::string ArgLabel(const nlohmann::json& req, const std::string& rel) {
  auto it = req.find("label");
  if (it != req.end() && it->is_string()) return it->get<std::string>();
  return rel.empty() ? "/" : rel;
}

Result<uint64_t> ResolveRel(Filesystem& fs, const std::string& rel, const std::string& label) {
  if (rel == kViewsName || rel.starts_with(std::string(kViewsName) + "/")) {
    return Status::InvalidArgument(label + " is inside the read-only snapshot views (" +
                                   kViewsName + "); name the snapshot's own folder instead");
  }
  auto ino = fs.ResolvePath(rel);
  if (!ino.ok()) {
    if (ino.status().Is(Code::kNotFound)) return Status::NotFound(label);
    if (ino.status().Is(Code::kNotDirectory)) return Status::NotDirectory(label);
    return ino.status().WithContext(label);
  }
  return *ino;
}

Result<SnapshotInfo> ResolveSnapshot(Filesystem& fs, const std::string& rel,
                                     const std::string& label) {
  ASSIGN_OR_RETURN(uint64_t ino, ResolveRel(fs, rel, label));
  auto snap = fs.GetSnapshot(ino);
  if (!snap.ok()) {
    if (snap.status().Is(Code::kNotFound)) {
      return Status::NotFound("not a snapshot: " + label + " (no committed " +
                                     MarkerNamesText(fs) + ")");
    }
    return snap.status().WithContext(label);
  }
  return std::move(snap).value();
}

}  // namespace snapfs::cli
