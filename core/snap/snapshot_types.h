// The values the snapshot queries and `snapfs ls/du/rm/why/orphans/export` show: a
// snapshot, its space, its files, why a file is kept. No behaviour here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace snapfs {

struct SnapshotInfo {
  uint64_t dir = 0;  // the snapshot folder's inode: a snapshot's identity (moves keep it)
  std::string path;  // of the folder, relative to the mount root ("" for the root)
  std::string marker_name;
  uint64_t marker = 0;  // the marker file's inode
  int64_t completed_ns = 0;
  uint64_t pins = 0;  // referenced files recorded when the marker was committed
};

// Space of one snapshot, or of a set of snapshots taken together.
struct SnapshotUsage {
  uint64_t files = 0;      // files in the view: marker, own files, referenced files
  uint64_t logical = 0;    // their sizes added up
  uint64_t exclusive = 0;  // bytes of chunks `snapfs rm` of these snapshots would free
  uint64_t shared = 0;     // bytes of their distinct chunks that stay (held elsewhere too)
};

// A file of a snapshot's self-contained view.
struct ViewFile {
  std::string path;  // inside the view, e.g. "_metadata", "shared/3f2a..."
  uint64_t ino = 0;
  uint64_t size = 0;
  uint32_t nlink = 0;
};

struct PinInfo {
  SnapshotInfo snapshot;
  std::string view_path;
};

struct HiddenEntry {
  std::string path;  // relative to the mount root; "?/name" if its folder was replaced
  uint64_t ino = 0;
  bool is_dir = false;
  uint64_t size = 0;
  std::vector<std::string> pinned_by;  // snapshot paths
};

// Where a file is (fsck names the users of a damaged chunk with it).
struct FileName {
  std::string path;     // relative to the mount root
  bool hidden = false;  // reached only through a hidden entry: kept for snapshots
};
struct InodeLocation {
  uint64_t ino = 0;
  std::vector<FileName> names;          // every name (hard links), hidden ones too
  std::vector<std::string> snapshots;   // folder paths of the snapshots whose views hold it
  std::vector<std::string> view_paths;  // "<snapshot>/<path in its view>", same order
};

struct OrphanFile {
  std::string path;
  uint64_t parent = 0;
  std::string name;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

struct RemoveReport {
  uint64_t snapshots = 0;
  uint64_t files_removed = 0;  // entries unlinked (their data freed unless linked elsewhere)
  uint64_t files_hidden = 0;   // entries other snapshots still need: hidden, kept
  uint64_t bytes_freed = 0;    // as MeasureSnapshots computed before the removal
  // The folders were detached and queued; the daemon's purger drops their files in the
  // background (docs/snapshots.md): files_removed, files_hidden and bytes_freed are not
  // known yet (0).
  bool purging = false;
};

// Entries (or pins) one purge batch handles at most: one transaction of a few MB.
inline constexpr size_t kPurgeBatch = 1000;

// One batch of the purge queue (SnapshotEngine::PurgeStep).
struct PurgeProgress {
  uint64_t removed = 0;       // entries dropped by this batch
  uint64_t hidden = 0;        // entries kept hidden for other snapshots
  uint64_t pins = 0;          // pins of ended snapshots released
  uint64_t folders_done = 0;  // queued folders finished by this batch (0 or 1)
  // Of a folder this batch finished: every entry its purge dropped or kept hidden (all
  // batches, whichever purger ran them).
  uint64_t folder_removed = 0, folder_hidden = 0;
  bool more = false;          // the queue (or the part asked for) holds more work
};

// What is queued for the purger: `snapfs status`, /metrics.
struct PurgeBacklog {
  uint64_t folders = 0;         // removed folders not purged yet
  uint64_t removed = 0;         // entries of theirs purged so far
  int64_t oldest_queued_ns = 0;  // 0 if none
};
}  // namespace snapfs
