// Filesystem: the POSIX filesystem that fuse/ and tools/ call, with no FUSE types. A thin
// facade over the classes that do the work, each owning its state and its locks:
//
//   Namespace       (core/fs/namespace.h)  entries, inodes, rename, link, attributes,
//                                          inode numbers, the end of an inode's life
//   FileData        (core/fs/file_data.h)  open files, write buffers, flush, truncate,
//                                          clone; extents and refcounts via extent_map
//   SnapshotEngine  (core/snap/snapshot_engine.h)  recognition, pins, deferred delete,
//                                          copy-on-write, `snapfs rm`
//   SnapshotQueries (core/snap/snapshot_queries.h) read-only: ls, du, why, orphans, check
//   SnapshotViews   (core/snap/snapshot_views.h)   the read-only /.snapshots/ tree
//
// The facade routes each call, handles the /.snapshots/ inode range, and joins what
// crosses two of them: an open for writing asks the snapshot engine first, a flush of a
// marker written in place commits its snapshot, a rename reads the bytes of a file landing
// on a marker name before the namespace change.
//
// Operations take inode numbers (like the FUSE low-level API) and return Status or
// Result; the codes keep POSIX meaning (NotFound = ENOENT, ...). Every namespace change
// is one metadata engine transaction, so it happens entirely or not at all. Data written
// survives a kill of the process once committed (flush, release, or a buffer past
// kFlushThreshold); fsync'd data survives power loss too.
//
// Lifetime: an inode whose link count reaches zero stays while it is open or referenced
// (Ref/Unref, used by the FUSE layer for kernel lookup counts) and is purged after that;
// a crash in between is cleaned up at the next Open.
//
// No permission checks here: the FUSE layer mounts with default_permissions so the
// kernel enforces modes and owners. Access times are not updated by reads (noatime).
//
// Thread-safety: all methods are thread-safe; the facade holds no lock itself. Lock
// order across the classes: OpenFile::mu (ascending inode number when two are needed)
// before Namespace::mu() before the leaves (FileData::files_mu_, Namespace's users_mu_
// and ino_mu_, SnapshotEngine::mount_mu_, SnapshotViews::mu_) before ChunkStore locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "core/fs/fs_types.h"
#include "core/fs/inode.h"
#include "core/snap/snapshot_types.h"
#include "core/store.h"

namespace snapfs {

class FileData;
class Namespace;
class SnapshotEngine;
class SnapshotQueries;
class SnapshotViews;

class Filesystem {
 public:
  // Per-inode dirty data larger than this is committed without waiting for a flush.
  static constexpr size_t kFlushThreshold = 8 << 20;  // = OpenFile::kFlushThreshold

  // Opens the namespace of an open store; purges inodes left unlinked by a crash.
  static Result<std::unique_ptr<Filesystem>> Open(Store* store);
  ~Filesystem();

  // Namespace.
  Result<Attr> Lookup(uint64_t parent, std::string_view name);
  Result<Attr> GetAttr(uint64_t ino);
  Result<Attr> SetAttr(uint64_t ino, const SetAttrRequest& req);
  Result<Attr> Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                     const Caller& who);
  Result<Attr> Mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& who);
  Result<Attr> Symlink(std::string_view target, uint64_t parent, std::string_view name,
                       const Caller& who);
  Result<std::string> Readlink(uint64_t ino);
  Result<Attr> Link(uint64_t ino, uint64_t new_parent, std::string_view new_name);
  Status Unlink(uint64_t parent, std::string_view name);
  Status Rmdir(uint64_t parent, std::string_view name);
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags = 0);

  // Directory listing. Calls `emit` for each entry from `cookie` on ("." and ".." first)
  // until it returns false. Cookie 0 is the start. Cookies stay valid across concurrent
  // inserts and deletes: an entry is listed once, or not at all if deleted meanwhile.
  Status ReadDir(uint64_t ino, uint64_t cookie, const std::function<bool(const DirEntry&)>& emit);

  // File data. `flags` are open(2) flags; O_TRUNC truncates, O_APPEND appends.
  Result<std::pair<Attr, FileHandle>> Create(uint64_t parent, std::string_view name, uint32_t mode,
                                             int flags, const Caller& who);
  Result<FileHandle> Open(uint64_t ino, int flags);
  // Reads up to `n` bytes at `offset` into `buf`; returns the count (0 at EOF).
  Result<size_t> Read(FileHandle fh, uint64_t offset, size_t n, char* buf);
  Result<size_t> Write(FileHandle fh, uint64_t offset, const char* data, size_t n);
  Status Flush(FileHandle fh);
  Status Fsync(FileHandle fh, bool datasync);
  Status Release(FileHandle fh);
  // Makes dst's [dst_off, dst_off+n) a copy of src's [src_off, src_off+n), sharing every
  // chunk the range covers whole; only partial chunks at the edges are copied. Returns the
  // bytes copied (fewer than n if src ends first).
  Result<uint64_t> CloneRange(FileHandle src, uint64_t src_off, FileHandle dst, uint64_t dst_off,
                              uint64_t n);

  // Extended attributes.
  Result<std::string> GetXattr(uint64_t ino, std::string_view name);
  Status SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
  Result<std::vector<std::string>> ListXattr(uint64_t ino);
  Status RemoveXattr(uint64_t ino, std::string_view name);

  Result<FsStats> StatFs();

  // Kernel references (FUSE lookup counts): keep an unlinked inode until released.
  void Ref(uint64_t ino, uint64_t n = 1);
  void Unref(uint64_t ino, uint64_t n = 1);

  // Commits every open file's buffered data (unmount, snapshot of state).
  Status FlushAll();

  Store& store() { return *store_; }
  // The names whose commit makes a folder a snapshot (store config `marker_names`).
  const std::vector<std::string>& MarkerNames() const;

  // ---- snapshots: recognition and pins happen inside the namespace operations above;
  // these are the queries and the explicit removal (core/snap/*.cc) ----

  // Remembers where the store is mounted, so references written under any mount point
  // it has had resolve (the marker scan needs them).
  Status RecordMountPoint(const std::string& abs_path);
  std::vector<std::string> MountPoints();
  // A path relative to the mount root -> inode; hidden entries resolve too.
  Result<uint64_t> ResolvePath(std::string_view rel);
  // The path of a folder relative to the mount root.
  Result<std::string> PathOf(uint64_t dir);
  // Snapshots whose folder is `under` or inside it, by path.
  Result<std::vector<SnapshotInfo>> ListSnapshots(uint64_t under = kRootIno);
  // NotFound with a clear message if `dir` is not a snapshot folder.
  Result<SnapshotInfo> GetSnapshot(uint64_t dir);
  // What deleting all of `dirs` together would free, and what they hold.
  Result<SnapshotUsage> MeasureSnapshots(const std::vector<uint64_t>& dirs);
  // What deleting each alone would free, in one batched pass (SnapshotQueries::MeasureEach).
  Result<std::vector<std::optional<SnapshotUsage>>> MeasureEach(const std::vector<uint64_t>& dirs,
                                                                SnapshotUsage* together = nullptr);
  Result<std::vector<ViewFile>> SnapshotFiles(uint64_t dir);
  Result<std::vector<PinInfo>> WhyPinned(uint64_t ino);
  Result<std::vector<HiddenEntry>> ListHidden();
  // Names and snapshots of each of `inos` (in that order): one scan of the entries, then
  // every snapshot's view. Meant for a few inodes (fsck's damaged files), not the store.
  Result<std::vector<InodeLocation>> LocateInodes(const std::vector<uint64_t>& inos);
  // Regular files under `under` that no snapshot references, outside snapshot folders,
  // unmodified for `older_than_ns`.
  Result<std::vector<OrphanFile>> FindOrphans(uint64_t under, int64_t older_than_ns);
  // Drops the snapshots and every file only they need (their folders, and referenced
  // files nothing else references). Files other snapshots still reference are hidden,
  // not removed. Space comes back with GC. One small transaction ends the snapshots and
  // hides and queues their folders; with a purge notifier set (the daemon) the files go
  // in the background (PurgeStep), otherwise before this returns
  // (SnapshotEngine::RemoveSnapshots, docs/snapshots.md).
  // `wait`: purge before returning even with a purger (`snapfs rm --wait`).
  Result<RemoveReport> RemoveSnapshots(const std::vector<uint64_t>& dirs, bool dry_run,
                                       bool wait = false);
  // The purge queue: the daemon's purger sets the notifier (called after a removal
  // queued folders, no locks held) and calls PurgeStep until it reports no more work.
  void SetPurgeNotifier(std::function<void()> f);
  Result<PurgeProgress> PurgeStep(size_t budget);
  // The kernel invalidations a background removal left to the purger's thread.
  void InvalidatePendingEntries();
  Result<PurgeBacklog> GetPurgeBacklog();
  // Runs `f` with no purge batch of this process running (they wait): the daemon's fsck,
  // which reads the key spaces one after another, sees no purge half-way.
  void WithPurgesPaused(const std::function<void()>& f);
  // Consistency of snapshots, pins and hidden entries (fsck); one line per problem.
  Result<std::vector<std::string>> CheckSnapshots();

  // A shared store's mount: GETATTRs of folders (and of files open for writing here)
  // are answered from what this daemon committed less than `seconds` ago
  // (core/fs/attr_cache.h). 0 (the default): never.
  void SetSharedAttrTtl(double seconds);

  // Operations the daemon runs for the CLI (rm, prune, orphans --delete) change names
  // the kernel may have cached: this hook (set by the FUSE layer) tells it. Never call
  // InvalidateEntry inside a kernel request: the kernel holds the folder's lock there.
  void SetEntryInvalidator(std::function<void(uint64_t parent, std::string_view name)> f);
  void InvalidateEntry(uint64_t parent, std::string_view name);

  // Purges files unlinked while open whose opener is gone: for a folder store every one
  // (run at open: the last process died); for a shared store those recorded by sessions
  // that no longer exist (run at open and by the daemon's GC loop). Returns the count.
  Result<size_t> PurgeDeadOrphans();

 private:
  explicit Filesystem(Store* store);

  // NoSpace if the metadata's disk is down to its reserve (core/space_guard.h).
  Status MetadataSpace();
  Store* const store_;
  // Destroyed in reverse: the views and the snapshot classes use the namespace and the
  // file data, which go last.
  std::unique_ptr<Namespace> ns_;
  std::unique_ptr<FileData> data_;
  std::unique_ptr<SnapshotQueries> queries_;
  std::unique_ptr<SnapshotEngine> snap_;
  std::unique_ptr<SnapshotViews> views_;
};

}  // namespace snapfs
