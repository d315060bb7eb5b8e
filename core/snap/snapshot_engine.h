// SnapshotEngine: snapshots inside the namespace. Recognition (a committed marker makes
// its folder a snapshot: the marker is scanned and every file it references is pinned),
// deferred delete (an entry a snapshot still needs is hidden, not removed, and goes when
// the last snapshot needing it ends), copy-on-write of pinned files about to change, and
// the explicit removal of snapshots (`snapfs rm`). The model is in DESIGN.md section 2
// and docs/snapshots.md.
//
// Most of the work happens inside namespace changes: the Namespace calls the engine
// through SnapshotHooks (core/fs/namespace.h) on its NsTxn (an unlink asks UnlinkInTxn
// whether to hide; a rename onto a marker name runs PrepareSnapshot and FinishSnapshots),
// and the engine calls back into the Namespace for entries and links. The read-only
// questions are SnapshotQueries'.
//
// Thread-safety: thread-safe. Its own state is the mount points (mount_mu_), the entry
// invalidator (invalidator_mu_) and the purge notifier and waited-for folders
// (purger_mu_, a leaf); every change runs under Namespace::mu() in an NsTxn.
// Lock order: purge_run_mu_ (shared by each purge batch) before OpenFile::mu before
// Namespace::mu() before mount_mu_ and purger_mu_ (before the metadata engine);
// invalidator_mu_ is taken with no other lock of ours held.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "core/fs/inode.h"
#include "core/fs/namespace.h"
#include "core/meta/schema.h"
#include "core/snap/snapshot_types.h"
#include "core/store.h"

namespace snapfs {

class FileData;
class NsTxn;
class SnapshotQueries;

class SnapshotEngine final : public SnapshotHooks {
 public:
  SnapshotEngine(Store* store, Namespace* ns, FileData* data, SnapshotQueries* queries);
  SnapshotEngine(const SnapshotEngine&) = delete;
  SnapshotEngine& operator=(const SnapshotEngine&) = delete;

  // The names whose commit makes a folder a snapshot (store config `marker_names`).
  const std::vector<std::string>& MarkerNames() const { return marker_names_; }

  // Where the store has been mounted, newest first: references written under any of
  // them resolve (the marker scan needs them). Load reads the stored list at open.
  Status LoadMountPoints() EXCLUDES(mount_mu_);
  Status RecordMountPoint(const std::string& abs_path) EXCLUDES(mount_mu_);
  std::vector<std::string> MountPoints() EXCLUDES(mount_mu_);

  // ---- before a file changes (open for writing, truncate) ----
  struct ChangeCheck {
    bool read_only = false;  // deleted, kept read-only for snapshots
    bool pinned = false;     // a snapshot references its bytes
  };
  Result<ChangeCheck> CheckChange(const Inode& node);
  // Copy-on-write for snapshots: before a pinned file is changed (opened for writing,
  // truncated; or an O_TRUNC open of a deleted one, which replaces it), its snapshots
  // get a copy of its data (a new inode sharing its chunks) and the file is free to
  // change. Hidden entries of it become visible again.
  Status DetachForSnapshots(uint64_t ino);

  // ---- markers ----
  // The bytes of the files a rename puts on a marker name, by inode: read before the
  // rename takes Namespace::mu() (reading flushes the file, under its own lock, which
  // comes first in the lock order).
  std::map<uint64_t, std::string> ReadRenamedMarkers(uint64_t parent, std::string_view name,
                                                     uint64_t new_parent, std::string_view new_name,
                                                     unsigned flags);
  // A marker written in place at (parent, name) was flushed: commits the snapshot unless
  // it already is the snapshot of exactly these bytes. No locks held by the caller.
  Status CommitMarkerAt(uint64_t parent, std::string_view name, uint64_t ino);

  // Drops the snapshots and every file only they need (their folders, and referenced
  // files nothing else references). Files other snapshots still reference are hidden,
  // not removed. Space comes back with GC.
  // One small transaction, whatever the folders hold (snapshot_purge.cc): the snapshots
  // end (records, marker index), each folder's entry is hidden (gone from listings, its
  // name free; exact paths still resolve, read-only) and queued under "purge/". With a
  // purge notifier set (the daemon), it returns then, report.purging set; without one,
  // it purges the queued folders itself before returning, with the full report; `wait`
  // does that with a purger too. dry_run: the whole removal in one transaction that is
  // not committed (exact counts).
  Result<RemoveReport> RemoveSnapshots(const std::vector<uint64_t>& dirs, bool dry_run,
                                       bool wait = false);

  // ---- the purge queue (snapshot_purge.cc, docs/snapshots.md) ----
  // Called (no locks held) after a removal queued folders: wakes the daemon's purger.
  void SetPurgeNotifier(std::function<void()> f) EXCLUDES(purger_mu_);
  // One batch, one transaction: up to `budget` pins of ended snapshots released, or
  // entries of a queued folder dropped (pins first, over the whole queue: a file only
  // ending snapshots need is removed, never hidden for one of them). `only`: just those
  // queued folders. Safe from any number of threads and daemons: every batch reads and
  // writes its queue key, so two purgers of one folder conflict and one runs again.
  Result<PurgeProgress> PurgeStep(size_t budget, const std::set<uint64_t>* only = nullptr)
      EXCLUDES(purge_run_mu_);
  Result<PurgeBacklog> GetPurgeBacklog();
  // Passes the kernel the entry invalidations a background removal left for later (the
  // purger's thread calls it when woken; PurgeStep too). No locks held by the caller.
  void InvalidatePending() EXCLUDES(purger_mu_, invalidator_mu_);
  // Runs `f` while no PurgeStep of this process runs (they wait for it).
  void WithPurgesPaused(const std::function<void()>& f) EXCLUDES(purge_run_mu_);

  // Operations the daemon runs for the CLI (rm, prune, orphans --delete) change names
  // the kernel may have cached: this hook (set by the FUSE layer) tells it. Never call
  // InvalidateEntry inside a kernel request: the kernel holds the folder's lock there.
  void SetEntryInvalidator(std::function<void(uint64_t parent, std::string_view name)> f)
      EXCLUDES(invalidator_mu_);
  void InvalidateEntry(uint64_t parent, std::string_view name) EXCLUDES(invalidator_mu_);

  // ---- SnapshotHooks (core/fs/namespace.h): steps inside a namespace change ----
  bool IsMarkerName(std::string_view name) const override;
  Result<bool> IsPinned(NsTxn* t, uint64_t ino) override;
  Result<bool> IsHiddenInode(NsTxn* t, const Inode& node) override;
  Status HideEntry(NsTxn* t, uint64_t parent, std::string_view name, const Dentry& e) override;
  Status ResurrectDir(NsTxn* t, uint64_t dir) override;
  Status DropHiddenEntry(NsTxn* t, uint64_t parent, std::string_view name, uint64_t child) override;
  Status CollapseHiddenDirs(NsTxn* t) override;
  Status UnlinkInTxn(NsTxn* t, uint64_t parent, std::string_view name, const Dentry& e,
                     RemoveReport* report) override;
  Status PrepareSnapshot(NsTxn* t, uint64_t dir, uint64_t marker_ino, std::string_view marker_name,
                         std::string_view bytes) override;
  Status FinishSnapshots(NsTxn* t) override;
  Status MarkerGone(NsTxn* t, uint64_t parent, std::string_view name, uint64_t ino) override;

 private:
  // The hidden entries (parent, name) of an inode, as this transaction sees it.
  Result<std::vector<std::pair<uint64_t, std::string>>> HiddenEntriesOf(NsTxn* t, uint64_t ino);
  Status UnhideEntry(NsTxn* t, uint64_t parent, std::string_view name, const Dentry& e);
  Status DetachInTxn(NsTxn* t, uint64_t ino);
  Status ReleaseUnpinned(NsTxn* t, uint64_t ino);
  Status EndSnapshot(NsTxn* t, uint64_t dir);
  Status CommitSnapshot(NsTxn* t, uint64_t dir, uint64_t marker_ino, std::string_view marker_name,
                        std::string_view bytes);
  Status RemoveSnapshotsInTxn(NsTxn* t, const std::vector<uint64_t>& dirs, RemoveReport* report);
  // Where a file an ending snapshot pinned may be found outside its folder: under the job
  // folder's current path `job` first, then the path the marker named.
  static std::vector<std::string> ReferencedPaths(const PinValue& pin, const std::string& job);
  // Unlinks `ino` at the first of `where` that names it (not hidden); nothing if none does
  // (moved elsewhere: `snapfs orphans` finds it).
  Status UnlinkReferencedInTxn(NsTxn* t, uint64_t ino, const std::vector<std::string>& where,
                               RemoveReport* report);
  Result<bool> RemoveTreeInTxn(NsTxn* t, uint64_t parent, std::string_view name, const Dentry& e,
                               RemoveReport* report);
  // The removal's small transaction: ends the snapshots, hides and queues the folders.
  Status DetachSnapshotsInTxn(NsTxn* t, const std::vector<uint64_t>& dirs, RemoveReport* report,
                              std::vector<uint64_t>* queued);
  void EndSnapshotRecord(NsTxn* t, uint64_t dir, const SnapshotInfo& snap);
  struct TreeStep {
    bool done = true;   // everything under it was handled (else: the budget ran out)
    bool kept = false;  // something under it stays hidden for another snapshot
  };
  Result<TreeStep> PurgeTreeInTxn(NsTxn* t, uint64_t parent, std::string_view name,
                                  const Dentry& e, size_t* budget, RemoveReport* report);
  Result<TreeStep> PurgeChildrenInTxn(NsTxn* t, uint64_t dir, size_t* budget,
                                      RemoveReport* report);
  // Phase 1 of a queued folder: releases up to `budget` pins of its ended snapshots;
  // false if none were left.
  Result<bool> ReleasePinsInTxn(NsTxn* t, const PurgeValue& pv, size_t* budget,
                                RemoveReport* report, uint64_t* released);
  // Phase 2: drops up to `budget` entries of the folder; true when it is done.
  Result<bool> PurgeFolderInTxn(NsTxn* t, uint64_t folder, size_t* budget, RemoveReport* report);
  std::function<void()> PurgeNotifier() EXCLUDES(purger_mu_);
  bool IsWaitedFor(uint64_t folder) EXCLUDES(purger_mu_);

  // A whole file (buffered data included), up to kMaxMarkerScan; no locks held.
  Result<std::string> ReadMarkerBytes(uint64_t ino);

  MetaStore& meta_;
  Namespace* const ns_;
  FileData* const data_;
  SnapshotQueries* const queries_;
  std::vector<std::string> marker_names_;  // const after construction

  Mutex mount_mu_;
  std::vector<std::string> mount_points_ GUARDED_BY(mount_mu_);
  Mutex invalidator_mu_;
  std::function<void(uint64_t, std::string_view)> invalidator_ GUARDED_BY(invalidator_mu_);
  // Held shared by each purge batch, exclusively by WithPurgesPaused. Before
  // Namespace::mu() in the lock order.
  SharedMutex purge_run_mu_;
  Mutex purger_mu_;
  std::function<void()> purge_notifier_ GUARDED_BY(purger_mu_);
  // Folders a `rm --wait` purges itself: the background purger leaves them alone, so
  // that the caller's report counts every entry.
  std::set<uint64_t> waited_ GUARDED_BY(purger_mu_);
  std::vector<std::pair<uint64_t, std::string>> pending_invalidations_ GUARDED_BY(purger_mu_);
};

}  // namespace snapfs
