#include "tools/export_verify.h"

#include <sys/stat.h>

#include <cctype>

#include "core/snap/marker_scan.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

namespace {

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Every occurrence of `from` in `text` replaced by `to`, left to right, as
// RewriteMarkerPrefix does inside one string or text run.
std::string ReplaceAll(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  size_t i = 0;
  for (size_t at = text.find(from); !from.empty() && at != std::string_view::npos;
       at = text.find(from, i)) {
    out.append(text.substr(i, at - i));
    out.append(to);
    i = at + from.size();
  }
  out.append(text.substr(i));
  return out;
}

bool HasScheme(const std::string& s) {
  size_t colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || !std::isalpha(static_cast<unsigned char>(s[0])))
    return false;
  for (size_t i = 1; i < colon; i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return colon + 1 < s.size();
}

}  // namespace

MarkerRefs RefsFromListing(const nlohmann::json& references) {
  MarkerRefs out;
  for (const auto& r : references) {
    std::string ref = r["ref"].get<std::string>();
    if (r["view_path"].is_null()) {
      out.unresolved.insert(ref);
    } else {
      out.resolved[ref] = r["view_path"].get<std::string>();
    }
  }
  return out;
}

std::string LocalRoot(const std::string& uri) {
  std::string p = uri;
  for (std::string_view scheme : {"file://localhost", "file://", "file:"}) {
    if (p.starts_with(scheme)) {
      p = p.substr(scheme.size());
      break;
    }
  }
  if (p.empty() || p[0] != '/') return "";
  return LexicalAbsolute(p);
}

Result<RelocateTarget> ParseRelocateTarget(const std::string& as) {
  RelocateTarget t;
  if (as.starts_with("/") || as.starts_with("file:")) {
    t.local_root = LocalRoot(as);
    if (t.local_root.empty() || t.local_root == "/") {
      return Status::InvalidArgument("--as '" + as +
                                     "': a local target must be an absolute path or a file: URI "
                                     "of this host (file:/p, file:///p) naming a folder other "
                                     "than /");
    }
    return t;
  }
  if (!HasScheme(as)) {
    return Status::InvalidArgument("--as '" + as +
                                   "': give an absolute path (/backup/chk-4) or a URI "
                                   "(file:///backup/chk-4, hdfs:///backup/job/chk-4)");
  }
  t.uri = as;
  while (t.uri.ends_with("/") && !t.uri.ends_with(":/") && !t.uri.ends_with("//")) t.uri.pop_back();
  if (t.uri.ends_with("/")) {
    return Status::InvalidArgument("--as '" + as + "': name the folder, not just the filesystem");
  }
  return t;
}

std::string RelocatedText(std::string_view original, const std::string& view_path,
                          const RelocateTarget& t) {
  if (!t.uri.empty()) return t.uri + "/" + view_path;
  std::string p = t.local_root + "/" + view_path;
  if (original.starts_with("file://localhost/")) return "file://localhost" + p;
  if (original.starts_with("file:///")) return "file://" + p;
  if (original.starts_with("file:")) return "file:" + p;
  return p;
}

void CheckPlain(std::string_view exported, const std::vector<std::string>& mounts,
                const MarkerRefs& refs, const std::string& dest, MarkerCheck* c) {
  for (const auto& r : ScanMarker(exported, mounts)) {
    if (r.kind != MarkerReference::kInMount || refs.unresolved.count(r.path)) continue;
    c->checked++;
    auto it = refs.resolved.find(r.path);
    if (it == refs.resolved.end()) {
      c->missing.push_back(r.path + " (not a reference of the snapshot as committed)");
    } else if (!IsRegularFile(dest + "/" + it->second)) {
      c->missing.push_back(r.path + " (not in " + dest + " as " + it->second + ")");
    }
  }
}

void CheckRewritten(std::string_view exported, std::string_view original,
                    const std::vector<std::string>& mounts, const MarkerRefs& refs,
                    const std::string& old_prefix, const std::string& new_prefix,
                    const std::string& new_root, const std::string& dest, MarkerCheck* c) {
  // Where the original references went under NEW: those of resolved references must be
  // in the copy; those only unresolved ones went to name no file, as before.
  std::set<std::string> required, excused;
  for (const auto& o : FindMarkerOccurrences(original, mounts)) {
    if (o.ref.kind != MarkerReference::kInMount) continue;
    std::string moved =
        ResolveInMount(ReplaceAll(o.text(original), old_prefix, new_prefix), {new_root});
    if (moved.empty()) continue;
    (refs.unresolved.count(o.ref.path) ? excused : required).insert(moved);
  }
  for (const auto& r : ScanMarker(exported, {new_root})) {
    if (r.kind != MarkerReference::kInMount) continue;
    if (excused.count(r.path) && !required.count(r.path)) continue;
    c->checked++;
    if (!IsRegularFile(dest + "/" + r.path)) {
      c->missing.push_back(new_root + "/" + r.path + " (not in " + dest + ")");
    }
  }
  // Resolved references still into the store's mount: the copy does not hold them at NEW.
  for (const auto& m : mounts) {
    if (new_root == m || new_root.starts_with(m + "/")) return;
  }
  for (const auto& r : ScanMarker(exported, mounts)) {
    if (r.kind == MarkerReference::kInMount && !refs.unresolved.count(r.path)) c->stale++;
  }
}

void CheckRelocated(std::string_view exported, const std::vector<std::string>& mounts,
                    const MarkerRefs& refs, const RelocateTarget& t,
                    const std::set<std::pair<std::string, std::string>>& relocated,
                    const std::string& dest, MarkerCheck* c) {
  for (const auto& r : ScanMarker(exported, mounts)) {
    if (r.kind == MarkerReference::kInMount && refs.resolved.count(r.path)) {
      c->missing.push_back(r.path + " (still points into the store's mount: not relocated)");
    }
  }
  if (!t.uri.empty()) {
    // No reader of that filesystem here: the texts written must be in the marker read
    // back, and their files in DEST.
    for (const auto& [text, view] : relocated) {
      c->checked++;
      if (exported.find(text) == std::string_view::npos) {
        c->missing.push_back(text + " (relocated, but not in the exported marker)");
      } else if (!IsRegularFile(dest + "/" + view)) {
        c->missing.push_back(text + " (not in " + dest + " as " + view + ")");
      }
    }
    return;
  }
  // A local target: read the marker as a restoring job would, with the target as the
  // only root.
  std::set<std::string> found;
  for (const auto& o : FindMarkerOccurrences(exported, {t.local_root})) {
    if (o.ref.kind != MarkerReference::kInMount || !found.insert(o.ref.path).second) continue;
    if (IsRegularFile(dest + "/" + o.ref.path)) {
      c->checked++;
      continue;
    }
    // An unresolved reference left as written, under the target only because the target
    // holds the store's mount point (--as /mnt for a mount at /mnt/ckpt).
    if (refs.unresolved.count(ResolveInMount(o.text(exported), mounts))) continue;
    c->checked++;
    c->missing.push_back(t.local_root + "/" + o.ref.path + " (not in " + dest + ")");
  }
  for (const auto& [text, view] : relocated) {
    if (!found.count(view)) {
      c->missing.push_back(text + " (relocated, but a re-scan of the marker does not find it)");
    }
  }
}

void CheckBareNames(std::string_view exported, const std::set<std::string>& view_paths,
                    const std::string& dest, MarkerCheck* c) {
  for (const auto& r : ScanMarker(exported, {})) {
    if (r.kind != MarkerReference::kBareName || !view_paths.count(r.path)) continue;
    c->checked++;
    if (!IsRegularFile(dest + "/" + r.path))
      c->missing.push_back(r.path + " (not in " + dest + ")");
  }
}

}  // namespace snapfs::cli
