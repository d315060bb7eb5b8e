// Namespace: the tree of names over inodes. Lookups, create, link, unlink, rmdir,
// rename, readdir, attributes and xattrs, inode numbers, and the end of an inode's life
// (purge when the last link and the last user go; orphans records for files still open).
//
// Every change is one NsTxn (ns_txn.h): one metadata engine transaction whose reads of
// the inodes and entries it decides on are conflict-checked; the public operations run
// it again from the start when its commit conflicts (kv::RetryOnConflict).
//
// Snapshots take part in removals: an entry a snapshot still needs is hidden rather than
// removed, a hidden folder comes back when something is made in it, a file renamed onto
// a marker name commits a snapshot. The namespace asks the snapshot layer at those
// points through SnapshotHooks (below; the SnapshotEngine implements it), on the same
// NsTxn, and the engine calls back here for entries and links (AddEntry, RemoveEntry,
// DropLink, PurgeIfUnused).
//
// Reads without a transaction (LoadInode, LookupEntry, PathOf, ResolvePath) see
// committed state.
//
// Thread-safety: thread-safe. mu_ serialises this process's namespace transactions: not
// for correctness (the engine decides between racing transactions, in this process or
// another daemon's), but so that our own threads do not make each other retry. Every
// NsTxn is made under it. Lock order: OpenFile::mu before mu_ before users_mu_ and
// ino_mu_ (leaves) before ChunkStore locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "base/mutex.h"
#include "core/fs/attr_cache.h"
#include "core/fs/fs_types.h"
#include "core/fs/inode.h"
#include "core/store.h"

namespace snapfs {

class NsTxn;
struct RemoveReport;

// A folder entry as stored (dentries key space).
struct Dentry {
  uint64_t child = 0, seq = 0;
  uint32_t mode = 0;  // type bits
  bool hidden = false;
};

// What a namespace change asks the snapshot layer, on the change's own NsTxn: whether a
// file is pinned or reachable only through hidden entries, and the steps that hide, bring
// back or end things for snapshots. SnapshotEngine (core/snap/snapshot_engine.h)
// implements it; core/fs knows nothing else of snapshots.
class SnapshotHooks {
 public:
  virtual ~SnapshotHooks() = default;

  // Whether a file of this name, when committed, makes its folder a snapshot.
  virtual bool IsMarkerName(std::string_view name) const = 0;
  // Whether a snapshot pins the inode (pins this transaction added or dropped count).
  virtual Result<bool> IsPinned(NsTxn* t, uint64_t ino) = 0;
  // True if the inode is reachable only through hidden entries (or not at all, and
  // pinned): it is kept read-only for snapshots.
  virtual Result<bool> IsHiddenInode(NsTxn* t, const Inode& node) = 0;
  // Takes the entry out of listings; its exact path still resolves (deferred delete).
  virtual Status HideEntry(NsTxn* t, uint64_t parent, std::string_view name, const Dentry& e) = 0;
  // Makes a hidden folder (and hidden folders above it) visible again; NotFound if it
  // hangs off a folder that is gone.
  virtual Status ResurrectDir(NsTxn* t, uint64_t dir) = 0;
  // Drops a hidden entry (a new entry of its name takes its place, or the last snapshot
  // needing it ended) and the link it held.
  virtual Status DropHiddenEntry(NsTxn* t, uint64_t parent, std::string_view name,
                                 uint64_t child) = 0;
  // Folders noted in the transaction that only stayed for hidden entries and hold none
  // now go too. Every change that may empty a folder ends with it.
  virtual Status CollapseHiddenDirs(NsTxn* t) = 0;
  // Removes the entry, or hides it if a snapshot pins the file; ends the snapshot whose
  // marker it was. `report` (may be null) counts what happened.
  virtual Status UnlinkInTxn(NsTxn* t, uint64_t parent, std::string_view name, const Dentry& e,
                             RemoveReport* report) = 0;
  // Records `dir` as a snapshot whose marker `marker_ino` holds `bytes` (its pins count
  // from now on in `t`); FinishSnapshots writes every prepared snapshot, ending the one
  // each replaces. Two halves, for a rename that commits two markers at once.
  virtual Status PrepareSnapshot(NsTxn* t, uint64_t dir, uint64_t marker_ino,
                                 std::string_view marker_name, std::string_view bytes) = 0;
  virtual Status FinishSnapshots(NsTxn* t) = 0;
  // After a change that took `ino` away from (parent, name): ends the snapshot it was
  // the marker of.
  virtual Status MarkerGone(NsTxn* t, uint64_t parent, std::string_view name, uint64_t ino) = 0;
};

class Namespace {
 public:
  explicit Namespace(Store* store);
  Namespace(const Namespace&) = delete;
  Namespace& operator=(const Namespace&) = delete;

  // The snapshot layer that decides what removals keep. Set once, before any other
  // call; it outlives the namespace's use of it.
  void SetSnapshotHooks(SnapshotHooks* snap) { snap_ = snap; }

  // Held around every NsTxn (see the thread-safety note above).
  Mutex* mu() RETURN_CAPABILITY(mu_) { return &mu_; }
  Store& store() { return *store_; }
  MetaStore& meta() { return meta_; }
  // Bumped (by NsTxn::Commit) for every committed change of snapshots, pins or hidden
  // entries: the key of the /.snapshots/ views' caches.
  uint64_t snapshot_gen() const { return snapshot_gen_.load(); }
  void SnapshotsChanged() { snapshot_gen_++; }
  // Inodes as this daemon last committed them (shared stores; attr_cache.h).
  AttrCache& attr_cache() { return attr_cache_; }

  // ---- committed state (no transaction) ----
  Result<Inode> LoadInode(uint64_t ino);
  Status LookupEntry(uint64_t parent, std::string_view name, Dentry* e);
  static Status DecodeEntry(std::string_view v, Dentry* e);  // a dentries value
  // InvalidArgument or NameTooLong unless `name` can be an entry's name.
  static Status CheckName(std::string_view name);
  // CheckName, and ReadOnly for a name in the /.snapshots/ views or of the views.
  static Status CheckChangeableName(uint64_t parent, std::string_view name);
  // The path of a folder relative to the mount root. With `memo`, the paths of the
  // folders it walks through are taken from it when there and put into it when not: a
  // caller asking for many folders of one tree (every snapshot of a job) reads each
  // shared parent once (on a shared store, two round trips per folder and level).
  Result<std::string> PathOf(uint64_t dir,
                             std::unordered_map<uint64_t, std::string>* memo = nullptr);
  // A path relative to the mount root -> inode; hidden entries resolve too.
  Result<uint64_t> ResolvePath(std::string_view rel);
  // The walk of ResolvePath with the reads given (fsck reads one view of the store).
  static Result<uint64_t> WalkPath(
      std::string_view rel, const std::function<Status(uint64_t, std::string_view, Dentry*)>& lookup,
      const std::function<Result<Inode>(uint64_t)>& load);

  // ---- operations (each change is its own transaction; reads see committed state) ----
  // The entry (parent, name); "." and ".." too (never hidden).
  Result<Dentry> Lookup(uint64_t parent, std::string_view name);
  // New inodes at (parent, name), owned by `who`; each returned as stored.
  Result<Inode> Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                      const Caller& who);
  Result<Inode> Mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& who);
  Result<Inode> Symlink(std::string_view target, uint64_t parent, std::string_view name,
                        const Caller& who);
  Result<std::string> Readlink(uint64_t ino);
  Status Link(uint64_t ino, uint64_t new_parent, std::string_view new_name) EXCLUDES(mu_);
  Status Unlink(uint64_t parent, std::string_view name) EXCLUDES(mu_);
  Status Rmdir(uint64_t parent, std::string_view name) EXCLUDES(mu_);
  // `marker_bytes`: the bytes of files that land on a marker name (read beforehand by
  // the caller, without locks: reading may flush the file, under its own lock, which
  // comes before mu_).
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags,
                const std::map<uint64_t, std::string>& marker_bytes) EXCLUDES(mu_);
  Status ReadDir(uint64_t ino, uint64_t cookie, const std::function<bool(const DirEntry&)>& emit);
  // The metadata part of setattr (mode, owner, times; size is FileData's): read and
  // written in one transaction, so a data commit of the same inode in between makes it
  // run again and neither change is lost. Returns the inode as committed.
  Result<Inode> ChangeAttrs(uint64_t ino, const SetAttrRequest& req, int64_t now) EXCLUDES(mu_);
  // InvalidArgument, Range or NotSupported unless `name` can be an xattr's name.
  static Status CheckXattrName(std::string_view name);
  Result<std::string> GetXattr(uint64_t ino, std::string_view name);
  Status SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
  Result<std::vector<std::string>> ListXattr(uint64_t ino);
  Status RemoveXattr(uint64_t ino, std::string_view name);
  Result<FsStats> StatFs();

  // Users of an inode: kernel references (FUSE lookup counts) and open handles (`open`).
  // An unlinked regular file stays until its last open handle goes; anything else (a
  // folder a process may be in) until its last user goes. The kernel can reach a
  // regular file without a name only through an open handle (an O_PATH descriptor taken
  // before the unlink is the exception: its fstat answers ENOENT), as in libfuse's
  // high-level API and JuiceFS.
  void Ref(uint64_t ino, uint64_t n = 1, bool open = false) EXCLUDES(users_mu_);
  void Unref(uint64_t ino, uint64_t n = 1, bool open = false) EXCLUDES(users_mu_, mu_);
  // A committed transaction purged `ino` (NsTxn::Commit).
  void NotePurged(uint64_t ino) { purged_here_.Add(ino); }
  // Purges files unlinked while open whose opener is gone: for a folder store every one
  // (run at open: the last process died); for a shared store those recorded by sessions
  // that no longer exist. Returns the count.
  Result<size_t> PurgeDeadOrphans() EXCLUDES(mu_);

  // ---- steps inside a transaction (for the snapshot engine and this class) ----
  // A new inode number, unique in the store (whatever process asks).
  Result<uint64_t> AllocIno() EXCLUDES(ino_mu_);
  static void AddEntry(kv::Txn& t, Inode* dir, std::string_view name, const Inode& child);
  static void RemoveEntry(kv::Txn& t, uint64_t parent, std::string_view name, uint64_t seq);
  // Drops one link; purges the inode's data if it was the last link and nothing uses it
  // (no open handle, no kernel reference, no snapshot pin).
  Status DropLink(NsTxn* t, Inode* ino, int64_t now);
  // For an inode with no link left: purges it unless a snapshot pins it, it is a folder
  // still holding (hidden) entries, or something uses it (then an orphans record keeps
  // it for later), here or, on a shared store, in another live session (its orphans
  // record). The one place that decides. `just_unlinked`: its last link went in `t`,
  // so no session can have recorded it as an orphan yet (saves that read).
  Status PurgeIfUnused(NsTxn* t, uint64_t ino, bool just_unlinked = false);
  // Whether the folder holds any entry, hidden ones included, as `t` sees it.
  Result<bool> DirHasEntries(NsTxn* t, uint64_t dir);

 private:
  // Makes `node` (its ino is allocated here) at (parent, name); returns it as stored.
  Result<Inode> MakeNode(uint64_t parent, std::string_view name, Inode node) EXCLUDES(mu_);
  // Whether an unlinked inode must stay: an open handle keeps a regular file, any user
  // anything else.
  bool InUse(uint64_t ino, bool is_reg) EXCLUDES(users_mu_);
  void MaybePurgeUnused(uint64_t ino) EXCLUDES(mu_);
  Status PurgeInode(NsTxn* t, uint64_t ino);
  // Checks that `parent` is a live folder that can take a new entry `name` (a hidden
  // entry of that name makes way; a hidden folder comes back) and returns the folder as
  // the transaction now sees it. AlreadyExists if a visible entry has the name.
  Result<Inode> MakeRoomForEntry(NsTxn* t, uint64_t parent, std::string_view name);
  // The bodies of the operations: one attempt, in `t` (the public operation commits it
  // and runs the attempt again on Conflict).
  Status MakeNodeInTxn(NsTxn* t, uint64_t parent, std::string_view name, Inode* node);
  Status LinkInTxn(NsTxn* t, uint64_t ino, uint64_t new_parent, std::string_view new_name);
  Status RmdirInTxn(NsTxn* t, uint64_t parent, std::string_view name);
  Status RenameInTxn(NsTxn* t, uint64_t parent, std::string_view name, uint64_t new_parent,
                     std::string_view new_name, unsigned flags,
                     const std::map<uint64_t, std::string>& marker_bytes);
  // One xattr change: `change` decides from whether the attribute exists and writes it;
  // the inode's ctime follows. Refused on a file kept read-only for snapshots.
  Status ChangeXattr(uint64_t ino, std::string_view name,
                     const std::function<Status(kv::Txn&, bool had)>& change) EXCLUDES(mu_);

  Store* const store_;
  MetaStore& meta_;
  SnapshotHooks* snap_ = nullptr;

  // Guards no member: it serialises transactions (see the top of this file).
  Mutex mu_;
  std::atomic<uint64_t> snapshot_gen_{0};
  AttrCache attr_cache_;
  // Inode numbers reserved from the store's counter, kInoBatch at a time.
  static constexpr uint64_t kInoBatch = 1024;
  Mutex ino_mu_;  // a leaf
  uint64_t next_ino_ GUARDED_BY(ino_mu_) = 0;
  uint64_t ino_limit_ GUARDED_BY(ino_mu_) = 0;
  Mutex users_mu_;  // a leaf
  std::unordered_map<uint64_t, uint64_t> users_ GUARDED_BY(users_mu_);
  std::unordered_map<uint64_t, uint64_t> opens_ GUARDED_BY(users_mu_);  // handles among them
  // Inodes whose last name this process removed while they were in use: the release
  // that lets go of one goes straight to its purge (MaybePurgeUnused).
  std::unordered_set<uint64_t> orphaned_here_ GUARDED_BY(users_mu_);
  // A set of inode numbers, emptied when it reaches kMax (what it holds is a hint that
  // spares a read, never needed for correctness). Thread-safe.
  class InoSet {
   public:
    static constexpr size_t kMax = 100000;
    void Add(uint64_t ino) EXCLUDES(mu_);
    bool Has(uint64_t ino) EXCLUDES(mu_);

   private:
    Mutex mu_;  // a leaf
    std::unordered_set<uint64_t> set_ GUARDED_BY(mu_);
  };
  // Inodes this process has seen to be folders. An inode's type never changes and its
  // number is never given again, so this never goes stale: a lookup that finds no entry
  // answers ENOENT without reading the folder again to tell it from ENOTDIR (on a
  // shared store that read is a database round trip per create).
  InoSet known_dirs_;
  // Inodes this process purged (their numbers never come back): what the kernel still
  // asks of one after its unlink (the ctime write-back, the FORGET) is answered NotFound
  // without a read, a database round trip each on a shared store.
  InoSet purged_here_;
};

}  // namespace snapfs
