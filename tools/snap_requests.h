// The snapshot requests behind `snapfs ls/du/rm/prune/why/orphans/export`.
//
// Each takes its arguments as a JSON object and answers JSON. The same functions serve a
// mounted store (the daemon's control socket: one line "VERB <json>", e.g.
// `snap-ls {"path":"job"}`) and an unmounted one (the CLI opens the store itself), so the
// two paths cannot drift apart. Paths are relative to the mount root ("" is the root);
// an optional "label" (or "labels" for lists) is how the user wrote the path, used in
// error messages. Every request commits buffered file data first (Filesystem::FlushAll),
// like fsck, so sizes and times include what open files have written.
//
//   snap-ls      {"path"}                         -> {"snapshots":[SNAP + usage]}
//   snap-hidden  {"path"}                         -> {"hidden":[{path,ino,kind,size,pinned_by}],
//                                                     "bytes"}
//   snap-du      {"path"}                         -> {"snapshots":[SNAP + usage], "total":usage}
//   snap-rm      {"paths":[..], "dry_run", "wait"} -> {"snapshots":[SNAP], "report":REPORT}
//   snap-prune   {"paths":[..] (or "path"), "keep_last", "keep_within_ns", "now_ns", "dry_run",
//                 "force", "check", "wait"}   (keep_last and/or keep_within_ns; now_ns defaults to
//                 the daemon's clock; check: a dry run refusing what a real run would)
//                                     -> {"jobs":[{path,label,snapshots,skipped,markers,
//                                         kept:[SNAP+kept_by],removed:[SNAP]}],
//                                         "kept":[..all jobs'], "removed":[..], "report",
//                                         "keep_last", "keep_within_ns", "now_ns"}
//   snap-why     {"path"}                         -> {"ino","is_dir","size","hidden",
//                                                     "marker_of":SNAP|null,
//                                                     "pinned_by":[{snapshot:SNAP,view_path}]}
//   snap-orphans {"path", "older_than_ns"}        -> {"orphans":[{path,ino,parent,name,size,
//                                                     mtime_ns}], "count","bytes","now_ns"}
//   snap-unlink  {"files":[{path,ino,parent,name}], "older_than_ns"}
//                                                 -> {"results":[{path,deleted,reason,size}]}
//   snap-files   {"path"}                         -> {"snapshot":SNAP, "files":[{path,ino,size}],
//                                                     "mount_points":[..],
//                                                     "references":[{ref,view_path|null}]}
//                (references: the marker's references into the mount and where each is in
//                 the view, null if it resolved to no file when the snapshot was committed)
// SNAP = {path, dir, job, id, marker_name, completed_ns, completed, pins};
// usage = {files, logical, freed_if_deleted, shared};
// REPORT = {snapshots, entries_removed, entries_hidden, bytes_freed, purging, dry_run}:
// purging true (the files go in the background: docs/snapshots.md) has the three counts
// null; "wait" (rm, prune) purges before answering, with the counts.
// Errors: {"error": text, "code": n, "message": text}.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/fs/filesystem.h"
#include "base/status.h"

namespace snapfs::cli {

// Runs request `verb` (one of the above) against `fs`. InvalidArgument for an unknown
// verb or malformed arguments, never an exception.
Result<nlohmann::json> HandleSnapRequest(Filesystem& fs, const std::string& verb,
                                         const nlohmann::json& req);
bool IsSnapRequest(const std::string& verb);

// Building blocks shared by the handlers (tools/snap_requests.cc).
// "job" of a snapshot path: the name of its parent folder ("" at the root); "id": N for a
// folder named chk-N, else the folder's name.
std::string SnapshotJob(const std::string& path);
std::string SnapshotId(const std::string& path);
nlohmann::json SnapshotJson(const SnapshotInfo& s);
nlohmann::json UsageJson(const SnapshotUsage& u);
nlohmann::json ReportJson(const RemoveReport& r, bool dry_run);
// The store's marker names for messages: "_metadata" or "_metadata or MANIFEST".
std::string MarkerNamesText(Filesystem& fs);
// Orders snapshots oldest first: by completion time, ties by folder name with chk-N in
// numeric order (chk-9 before chk-10).
bool OlderSnapshot(const SnapshotInfo& a, const SnapshotInfo& b);
// Orders snapshot paths for listings: by parent folder, then chk-N numerically (chk-9
// before chk-10), then other names.
bool SnapshotPathLess(const SnapshotInfo& a, const SnapshotInfo& b);

// Removing a snapshot folder removes everything in it, snapshots nested in it included:
// InvalidArgument naming the first nested snapshot that `dirs` do not name themselves.
Status CheckNoNestedSnapshots(Filesystem& fs, const std::vector<SnapshotInfo>& snaps);

// The per-verb handlers (each in its tools/cmd_<verb>.cc).
Result<nlohmann::json> LsRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> HiddenRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> DuRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> RmRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> PruneRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> WhyRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> OrphansRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> UnlinkRequest(Filesystem& fs, const nlohmann::json& req);
Result<nlohmann::json> FilesRequest(Filesystem& fs, const nlohmann::json& req);

// Argument access for handlers: typed, with InvalidArgument instead of exceptions.
Result<std::string> ArgString(const nlohmann::json& req, const char* key);
std::string ArgLabel(const nlohmann::json& req, const std::string& rel);
// Resolves a mount-relative path; NotFound naming `label` if it does not exist.
Result<uint64_t> ResolveRel(Filesystem& fs, const std::string& rel, const std::string& label);
// The snapshots under the folder req["path"], in listing order, each as SNAP + usage
// (what removing it alone would free); snapshots that end meanwhile are left out.
// `rel` gets the path, `dirs` the folders listed; `total` (if given) what removing all
// of them together would free, from the same pass. Shared by ls and du.
Result<nlohmann::json> SnapshotsWithUsage(Filesystem& fs, const nlohmann::json& req,
                                          std::string* rel, std::vector<uint64_t>* dirs,
                                          SnapshotUsage* total = nullptr);
// Resolves `rel` and requires a snapshot folder there: "not a snapshot: LABEL (no
// committed _metadata)" otherwise.
Result<SnapshotInfo> ResolveSnapshot(Filesystem& fs, const std::string& rel,
                                     const std::string& label);

}  // namespace snapfs::cli
