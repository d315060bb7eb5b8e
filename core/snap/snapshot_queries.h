// SnapshotQueries: what the snapshot CLI and the /.snapshots/ views ask (ls, du, why,
// ls --hidden, orphans, export) and fsck's check of snapshots, pins and hidden entries.
// Read-only: these see committed state, or with an NsTxn what that transaction sees
// (LoadSnapshot, PinsOf: the SnapshotEngine decides on them inside its changes).
//
// Thread-safety: thread-safe; holds no state of its own and takes no lock but those of
// the files it reads (a marker's buffer is committed first: FileData::ReadFile) and, in
// CheckSnapshots, this process's hold on GC (HoldOffGc).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/fs/inode.h"
#include "core/snap/snapshot_types.h"
#include "core/store.h"

namespace snapfs {

class FileData;
class Namespace;
class NsTxn;

class SnapshotQueries {
 public:
  SnapshotQueries(Store* store, Namespace* ns, FileData* data);
  SnapshotQueries(const SnapshotQueries&) = delete;
  SnapshotQueries& operator=(const SnapshotQueries&) = delete;

  // The snapshot whose folder is `dir` (its path left empty). NotFound if none. With
  // `t`, as that transaction sees it (conflict-checked); otherwise committed state.
  Result<SnapshotInfo> LoadSnapshot(uint64_t dir, NsTxn* t = nullptr);
  // (inode, pin value) of every file the snapshot of `dir` pins.
  Result<std::vector<std::pair<uint64_t, std::string>>> PinsOf(uint64_t dir, NsTxn* t = nullptr);
  // The snapshot whose committed marker is `ino`; NotFound if it is none's.
  Result<SnapshotInfo> SnapshotOfMarker(uint64_t ino);

  // NotFound with a clear message if `dir` is not a snapshot folder.
  Result<SnapshotInfo> GetSnapshot(uint64_t dir);
  // Snapshots whose folder is `under` or inside it, by path.
  Result<std::vector<SnapshotInfo>> ListSnapshots(uint64_t under = kRootIno);
  Result<std::vector<ViewFile>> SnapshotFiles(uint64_t dir);
  // What deleting all of `dirs` together would free, and what they hold.
  Result<SnapshotUsage> MeasureSnapshots(const std::vector<uint64_t>& dirs);
  // What deleting each of `dirs` alone would free (as MeasureSnapshots({dir}) for each),
  // in one pass whose refcount reads are batched and in chunk order (`snapfs ls`). An
  // empty answer for a folder that is no snapshot (ended meanwhile). With `together`,
  // also what deleting all of them together would free (MeasureSnapshots of those that
  // are snapshots), in the same pass (`snapfs du`).
  Result<std::vector<std::optional<SnapshotUsage>>> MeasureEach(const std::vector<uint64_t>& dirs,
                                                                SnapshotUsage* together = nullptr);
  Result<std::vector<PinInfo>> WhyPinned(uint64_t ino);
  Result<std::vector<HiddenEntry>> ListHidden();
  // Names and snapshots of each of `inos` (in that order): one scan of the entries, then
  // every snapshot's view. Meant for a few inodes (fsck's damaged files), not the store.
  Result<std::vector<InodeLocation>> LocateInodes(const std::vector<uint64_t>& inos);
  // Regular files under `under` that no snapshot references, outside snapshot folders,
  // unmodified for `older_than_ns`.
  Result<std::vector<OrphanFile>> FindOrphans(uint64_t under, int64_t older_than_ns);
  // Consistency of snapshots, pins and hidden entries (fsck); one line per problem.
  // `mounts`: the mount points references may be written under. Reads one view of the
  // committed state (snapshot_check.cc), so it is exact while the store is in use.
  Result<std::vector<std::string>> CheckSnapshots(const std::vector<std::string>& mounts);

 private:
  // Calls `fn(child, mode, name)` for every listed (not hidden) entry of `dir`, in
  // sequence order; stops at the first error.
  Status ForEachListed(uint64_t dir,
                       const std::function<Status(uint64_t, uint32_t, std::string_view)>& fn);
  Status OwnFiles(uint64_t dir, const std::string& prefix,
                  std::vector<std::pair<std::string, uint64_t>>* out);

  struct Tally;
  struct Together;
  // Files, bytes and candidate exclusive chunks of the group `dirs` (their refcounts not
  // read yet), with the iterators given; the same into `all` (if given) for the files
  // it has not counted yet.
  Status TallyGroup(const std::vector<uint64_t>& dirs, kv::Iterator* pinned,
                    kv::Iterator* extents, Tally* t, Together* all);
  // Reads the refcounts of every tally's candidate chunks at once and fills exclusive and shared.
  Status Settle(std::vector<Tally>* tallies);

  MetaStore& meta_;
  ChunkStore& chunks_;
  Namespace* const ns_;
  FileData* const data_;
};

}  // namespace snapfs
