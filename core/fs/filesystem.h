// Filesystem: the POSIX namespace and file data over a Store, with no FUSE types.
//
// Operations take inode numbers (like the FUSE low-level API) and return Status or
// Result; the codes keep POSIX meaning (NotFound = ENOENT, ...). Every namespace change
// is one RocksDB WriteBatch, so it happens entirely or not at all.
//
// File data: writes go to a per-inode buffer shared by all handles of that inode; the
// buffer is chunked and committed on flush, fsync, release and when it grows past
// kFlushThreshold. Only the region touched by a write is re-chunked. Pack bytes are
// synced before the metadata that points at them is written; fsync also syncs the
// metadata log. Everything written survives a kill of the process once written to the
// metadata log (it is in the OS page cache); fsync'd data survives power loss too.
//
// Lifetime: an inode whose link count reaches zero stays while it is open or referenced
// (Ref/Unref, used by the FUSE layer for kernel lookup counts) and is purged after that;
// a crash in between is cleaned up at the next Open.
//
// No permission checks here: the FUSE layer mounts with default_permissions so the
// kernel enforces modes and owners. Access times are not updated by reads (noatime).
//
// Thread-safety: all methods are thread-safe. Lock order: OpenFile::mu (ascending inode
// number when two are needed) before ns_mu_ before ChunkStore locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/fs/inode.h"
#include "base/mutex.h"
#include "core/store.h"

namespace snapfs {

using FileHandle = uint64_t;

// What a caller sees of an inode (stat).
struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0, gid = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units
  // Lookup generation: raised when a folder is hidden by rmdir, so a kernel that saw it
  // removed (its inode dead) takes it as a new inode rather than the dead one.
  uint64_t generation = 1;
  // Reached through a hidden entry: the kernel must not cache the name (the entry may go
  // when a snapshot ends, which the kernel does not see).
  bool hidden = false;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
};

// Who is asking: new inodes get this owner.
struct Caller {
  uint32_t uid = 0, gid = 0;
};

struct SetAttrRequest {
  bool set_mode = false, set_uid = false, set_gid = false, set_size = false;
  bool set_atime = false, set_mtime = false;
  bool atime_now = false, mtime_now = false;  // with set_*: use the current time
  bool set_ctime = false;
  // With set_size: only grow (fallocate). Decided under the file's lock, so a write
  // that raced past `size` meanwhile is never cut back.
  bool grow_only = false;
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;    // file type bits only
  uint64_t cookie = 0;  // pass to ReadDir to continue after this entry
};

// ---- snapshots (what `snapfs ls/du/rm/why/orphans/export` and the views show) ----

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
};

// Inode numbers at and above this are the read-only views under /.snapshots/.
inline constexpr uint64_t kViewInoBase = 1ull << 62;
inline constexpr const char* kViewsName = ".snapshots";
// In a view: files the snapshot references outside its job folder, at their mount paths.
inline constexpr const char* kOtherJobsDir = "_other_jobs";
// Virtual xattrs (read by exact name only, never listed, so `cp -a` does not copy them).
inline constexpr const char* kXattrPrefix = "user.snapfs.";
// The attribute the kernel reads before every write() (file capabilities).
inline constexpr std::string_view kCapabilityXattr = "security.capability";

struct FsStats {
  uint64_t block_size = 4096;
  uint64_t blocks = 0, blocks_free = 0, blocks_avail = 0;
  uint64_t files = 0, files_free = 0;
  uint32_t name_max = 255;
};

// Flags of Rename, with Linux's values.
inline constexpr unsigned kRenameNoReplace = 1;
inline constexpr unsigned kRenameExchange = 2;
// Flags of SetXattr, with Linux's values.
inline constexpr int kXattrCreate = 1;
inline constexpr int kXattrReplace = 2;

inline constexpr size_t kNameMax = 255;
inline constexpr uint64_t kMaxFileSize = 1ull << 50;
inline constexpr size_t kXattrValueMax = 64 * 1024;

class Filesystem {
 public:
  // Per-inode dirty data larger than this is committed without waiting for a flush.
  static constexpr size_t kFlushThreshold = 8 << 20;

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
  Result<std::pair<Attr, FileHandle>> Create(uint64_t parent, std::string_view name,
                                             uint32_t mode, int flags, const Caller& who);
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
  const std::vector<std::string>& MarkerNames() const { return marker_names_; }

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
  // files nothing else references), as one transaction. Files other snapshots still
  // reference are hidden, not removed. Space comes back with GC.
  Result<RemoveReport> RemoveSnapshots(const std::vector<uint64_t>& dirs, bool dry_run);
  // Consistency of snapshots, pins and hidden entries (fsck); one line per problem.
  Result<std::vector<std::string>> CheckSnapshots();

  // Operations the daemon runs for the CLI (rm, prune, orphans --delete) change names
  // the kernel may have cached: this hook (set by the FUSE layer) tells it. Never call
  // InvalidateEntry inside a kernel request: the kernel holds the folder's lock there.
  void SetEntryInvalidator(std::function<void(uint64_t parent, std::string_view name)> f);
  void InvalidateEntry(uint64_t parent, std::string_view name);

  // Purges files unlinked while open whose opener is gone: for a folder store every one
  // (run at open: the last process died); for a shared store those recorded by sessions
  // that no longer exist (run at open and by the daemon's GC loop). Returns the count.
  Result<size_t> PurgeDeadOrphans() EXCLUDES(ns_mu_);

 private:
  struct OpenFile;
  struct Handle {
    uint64_t ino;
    int flags;
    std::shared_ptr<OpenFile> file;
    // Created under a marker name: the snapshot is recognised when it is flushed.
    uint64_t marker_parent = 0;
    std::string marker_name;
  };
  class Txn;
  struct Entry {
    uint64_t child = 0, seq = 0;
    uint32_t mode = 0;  // type bits
    bool hidden = false;
  };
  struct ViewNode;
  class Views;

  explicit Filesystem(Store* store);

  // Metadata helpers (ns_mu_ held where noted).
  Result<Inode> LoadInode(uint64_t ino);
  Status LookupEntry(uint64_t parent, std::string_view name, uint64_t* child, uint64_t* seq,
                     uint32_t* mode, bool* hidden = nullptr);
  Status LookupEntry(uint64_t parent, std::string_view name, Entry* e);
  static Status DecodeEntry(std::string_view v, Entry* e);  // a dentries value
  // A new inode number, unique in the store (whatever process asks).
  Result<uint64_t> AllocIno() EXCLUDES(ino_mu_);
  void AddEntry(kv::Txn& t, Inode* dir, std::string_view name, const Inode& child);
  void RemoveEntry(kv::Txn& t, uint64_t parent, std::string_view name, uint64_t seq);
  // Drops one link; purges the inode's data if it was the last link and nothing uses it
  // (no open handle, no kernel reference, no snapshot pin).
  Status DropLink(Txn* t, Inode* ino, int64_t now) REQUIRES(ns_mu_);
  Status PurgeInode(Txn* t, uint64_t ino) REQUIRES(ns_mu_);
  // For an inode with no link left: purges it unless a snapshot pins it, it is a folder
  // still holding (hidden) entries, or something uses it (then an orphans record keeps
  // it for later). The one place that decides.                                // ns_mu_
  Status PurgeIfUnused(Txn* t, uint64_t ino) REQUIRES(ns_mu_);
  bool InUse(uint64_t ino);
  Result<Attr> MakeNode(uint64_t parent, std::string_view name, Inode node);
  // One xattr change: `change` decides from whether the attribute exists and writes it;
  // the inode's ctime follows. Refused on a file kept read-only for snapshots.
  Status ChangeXattr(uint64_t ino, std::string_view name,
                     const std::function<Status(kv::Txn&, bool had)>& change)
      EXCLUDES(ns_mu_);
  // Checks that `parent` is a live folder that can take a new entry `name` (a hidden
  // entry of that name makes way; a hidden folder comes back) and returns the folder as
  // the transaction now sees it. AlreadyExists if a visible entry has the name.
  Result<Inode> MakeRoomForEntry(Txn* t, uint64_t parent, std::string_view name)
      REQUIRES(ns_mu_);
  // The bodies of the namespace operations: one attempt, in `t` (the public operation
  // commits it and runs the attempt again on Conflict).
  Status MakeNodeInTxn(Txn* t, uint64_t parent, std::string_view name, Inode* node)
      REQUIRES(ns_mu_);
  Status LinkInTxn(Txn* t, uint64_t ino, uint64_t new_parent, std::string_view new_name)
      REQUIRES(ns_mu_);
  Status RmdirInTxn(Txn* t, uint64_t parent, std::string_view name) REQUIRES(ns_mu_);
  Status RenameInTxn(Txn* t, uint64_t parent, std::string_view name, uint64_t new_parent,
                     std::string_view new_name, unsigned flags,
                     const std::map<uint64_t, std::string>& marker_bytes) REQUIRES(ns_mu_);
  Status LinkLocked(uint64_t ino, uint64_t new_parent, std::string_view new_name)
      EXCLUDES(ns_mu_);  // takes ns_mu_ itself
  Attr ToAttr(const Inode& i);
  void MaybePurgeUnused(uint64_t ino);

  // Snapshot internals (core/snap/filesystem_snapshots.cc); ns_mu_ held unless noted.
  bool IsMarkerName(std::string_view name) const;
  Result<bool> IsPinned(Txn* t, uint64_t ino);  // reads only
  // True if the inode is reachable only through hidden entries (or not at all): read-only.
  Result<bool> IsHiddenInode(Txn* t, const Inode& node);
  // The hidden entries (parent, name) of an inode, as this transaction sees them.
  Result<std::vector<std::pair<uint64_t, std::string>>> HiddenEntriesOf(Txn* t, uint64_t ino);
  Status HideEntry(Txn* t, uint64_t parent, std::string_view name, const Entry& e) REQUIRES(ns_mu_);
  Status UnhideEntry(Txn* t, uint64_t parent, std::string_view name, const Entry& e) REQUIRES(ns_mu_);
  // Makes a hidden folder (and hidden folders above it) visible again.
  Status ResurrectDir(Txn* t, uint64_t dir) REQUIRES(ns_mu_);
  // Copy-on-write for snapshots: before a pinned file is changed (opened for writing,
  // truncated; or an O_TRUNC open of a deleted one, which replaces it), its snapshots
  // get a copy of its data (a new inode sharing its chunks) and the file is free to
  // change. Hidden entries of it become visible again.
  Status DetachForSnapshots(uint64_t ino) EXCLUDES(ns_mu_);
  Status DetachInTxn(Txn* t, uint64_t ino) REQUIRES(ns_mu_);
  Status RemoveSnapshotsInTxn(Txn* t, const std::vector<uint64_t>& dirs, RemoveReport* report)
      REQUIRES(ns_mu_);
  Status DropHiddenEntry(Txn* t, uint64_t parent, std::string_view name, uint64_t child) REQUIRES(ns_mu_);
  Status ReleaseUnpinned(Txn* t, uint64_t ino) REQUIRES(ns_mu_);
  Status CollapseHiddenDirs(Txn* t) REQUIRES(ns_mu_);
  Status EndSnapshot(Txn* t, uint64_t dir) REQUIRES(ns_mu_);
  // Records `dir` as a snapshot whose marker `marker_ino` holds `bytes`, replacing a
  // previous snapshot of the folder.
  Status CommitSnapshot(Txn* t, uint64_t dir, uint64_t marker_ino, std::string_view marker_name,
                        std::string_view bytes) REQUIRES(ns_mu_);
  // The two halves of CommitSnapshot, for a rename that commits two markers at once.
  Status PrepareSnapshot(Txn* t, uint64_t dir, uint64_t marker_ino, std::string_view marker_name,
                         std::string_view bytes) REQUIRES(ns_mu_);
  Status FinishSnapshots(Txn* t) REQUIRES(ns_mu_);
  // After a namespace change that put `ino` at (parent, name) or took it away.
  Status MarkerGone(Txn* t, uint64_t parent, std::string_view name, uint64_t ino) REQUIRES(ns_mu_);
  // Reads a whole file (buffered data included); no locks held by the caller.
  Result<std::string> ReadMarkerBytes(uint64_t ino);
  Status CommitMarkerAt(uint64_t parent, std::string_view name, uint64_t ino) EXCLUDES(ns_mu_);
  Result<bool> DirHasEntries(Txn* t, uint64_t dir) REQUIRES(ns_mu_);
  Status UnlinkInTxn(Txn* t, uint64_t parent, std::string_view name, const Entry& e,
                     RemoveReport* report) REQUIRES(ns_mu_);
  Result<bool> RemoveTreeInTxn(Txn* t, uint64_t parent, std::string_view name, const Entry& e,
                               RemoveReport* report) REQUIRES(ns_mu_);
  // With `t`, as that transaction sees it (conflict-checked); otherwise committed state.
  Result<SnapshotInfo> LoadSnapshot(uint64_t dir, Txn* t = nullptr);
  Result<std::vector<std::pair<uint64_t, std::string>>> PinsOf(uint64_t dir, Txn* t = nullptr);
  Status OwnFiles(uint64_t dir, const std::string& prefix,
                  std::vector<std::pair<std::string, uint64_t>>* out);

  // Data helpers (in filesystem_data.cc); OpenFile::mu held.
  Status FlushLocked(OpenFile* f, bool all, bool sync);  // retries FlushOnce on conflict
  Status FlushOnce(OpenFile* f, bool all, bool sync);
  Status ReadLocked(OpenFile* f, uint64_t offset, size_t n, char* buf, size_t* got);
  Status ReadCommitted(uint64_t ino, uint64_t offset, size_t n, char* buf);
  Status TruncateLocked(OpenFile* f, uint64_t size, int64_t now);  // retries TruncateOnce
  Status TruncateOnce(OpenFile* f, uint64_t size, int64_t now);
  Status CommitData(uint64_t ino, class ChunkTxn* txn, bool sync,
                    const std::function<void(Inode*)>& update);
  Result<Handle> GetHandle(FileHandle fh);
  std::shared_ptr<OpenFile> OpenFileFor(uint64_t ino);
  std::shared_ptr<OpenFile> FindOpenFile(uint64_t ino);

  Store* const store_;
  MetaStore& meta_;
  ChunkStore& chunks_;
  const Chunker chunker_;

  // Serialises this process's namespace transactions: not for correctness (the engine
  // decides between racing transactions, in this process or another), but so that our
  // own threads do not make each other conflict and retry.
  Mutex ns_mu_;
  // Inode numbers reserved from the store's counter, kInoBatch at a time.
  static constexpr uint64_t kInoBatch = 1024;
  Mutex ino_mu_;  // a leaf
  uint64_t next_ino_ GUARDED_BY(ino_mu_) = 0;
  uint64_t ino_limit_ GUARDED_BY(ino_mu_) = 0;
  std::vector<std::string> mount_points_ GUARDED_BY(ns_mu_);
  std::vector<std::string> marker_names_;
  std::atomic<uint64_t> snapshot_gen_{0};  // bumped on every snapshot change (view caches)
  std::unique_ptr<Views> views_;
  Mutex invalidator_mu_;
  std::function<void(uint64_t, std::string_view)> invalidator_ GUARDED_BY(invalidator_mu_);

  Mutex files_mu_;  // a leaf: never held while taking another lock
  std::unordered_map<uint64_t, std::weak_ptr<OpenFile>> open_files_ GUARDED_BY(files_mu_);
  std::unordered_map<FileHandle, Handle> handles_ GUARDED_BY(files_mu_);
  // Kernel refs + open handles per inode.
  std::unordered_map<uint64_t, uint64_t> refs_ GUARDED_BY(files_mu_);
  FileHandle next_fh_ GUARDED_BY(files_mu_) = 1;
};

}  // namespace snapfs
