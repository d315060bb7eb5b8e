// The reference half of `snapfs export` (tools/cmd_export.cc): where relocated references
// point, and the check that the exported marker's references have their files in DEST.
//
// What "a reference" is comes from the snapshot itself: the daemon's snap-files answer
// lists each in-mount reference of the marker with its view path, or null when it
// resolved to no file when the snapshot was committed (Flink's inline state handles keep
// a path-like name, file:/mnt/ckpt/<job>/chk-4/<uuid>, for a file that never exists).
// Only references that resolved are verified; the others are counted, never corruption.
//
// Pure functions over the marker bytes plus lstat(2) of files under DEST; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace snapfs::cli {

// The marker's in-mount references, from snap-files' "references".
struct MarkerRefs {
  std::map<std::string, std::string> resolved;  // mount-relative path -> view path
  std::set<std::string> unresolved;             // named, but no file when committed
};
MarkerRefs RefsFromListing(const nlohmann::json& references);

// "file:/x", "file:///x", "file://localhost/x" or "/x" -> "/x" normalised; "" otherwise.
std::string LocalRoot(const std::string& uri);

// Where --relocate points references: a local folder (absolute, normalised, not "/"), or
// a URI of another filesystem (hdfs://..., s3://...), without a trailing '/'.
struct RelocateTarget {
  std::string local_root;
  std::string uri;
  std::string Describe() const { return uri.empty() ? local_root : uri; }
};
// --as URI (or DEST when --as is not given). InvalidArgument for a relative path, "/",
// a file: URI of another host, or something without a scheme.
Result<RelocateTarget> ParseRelocateTarget(const std::string& as);

// The new text of a reference written as `original` whose file is at `view_path` in the
// copy. Local targets keep the original's form (file:/p, file:///p, file://localhost/p
// or a plain /p); a URI target gives URI + "/" + view_path.
std::string RelocatedText(std::string_view original, const std::string& view_path,
                          const RelocateTarget& t);

// What the check of an exported marker found.
struct MarkerCheck {
  uint64_t checked = 0;              // references that must have their file in DEST
  std::vector<std::string> missing;  // those that do not, with why: a failure
  uint64_t stale = 0;                // --rewrite-prefix: resolved, still into the mount
};

// Plain export: every reference that resolved must be in DEST at its view path.
void CheckPlain(std::string_view exported, const std::vector<std::string>& mounts,
                const MarkerRefs& refs, const std::string& dest, MarkerCheck* c);

// --rewrite-prefix OLD=NEW (NEW naming the local folder new_root): references under
// new_root must be in DEST at the same relative path, unless they are where only
// unresolved references of the original marker went (each original occurrence is mapped
// through the same byte replacement to tell).
void CheckRewritten(std::string_view exported, std::string_view original,
                    const std::vector<std::string>& mounts, const MarkerRefs& refs,
                    const std::string& old_prefix, const std::string& new_prefix,
                    const std::string& new_root, const std::string& dest, MarkerCheck* c);

// --relocate: no resolved reference still points into the store's mount; for a local
// target every reference under it (a re-scan) names a file in DEST and every relocated
// one is found again; for a URI target every relocated text is in the marker and its
// file in DEST. `relocated`: the texts written, with their view paths.
void CheckRelocated(std::string_view exported, const std::vector<std::string>& mounts,
                    const MarkerRefs& refs, const RelocateTarget& t,
                    const std::set<std::pair<std::string, std::string>>& relocated,
                    const std::string& dest, MarkerCheck* c);

// Bare names of files the copy holds (`view_paths`) must be in DEST.
void CheckBareNames(std::string_view exported, const std::set<std::string>& view_paths,
                    const std::string& dest, MarkerCheck* c);

}  // namespace snapfs::cli
