// SnapshotEngine: removing snapshots (`snapfs rm`, prune) and the unlink that decides
// between removing an entry and hiding it for the snapshots that still need it.
#include <algorithm>
#include <chrono>
#include <set>

#include "base/coding.h"
#include "base/log.h"
#include "core/fs/ns_txn.h"
#include "core/snap/snapshot_engine.h"
#include "core/snap/snapshot_queries.h"
#include "core/snap/snapshot_record.h"

namespace snapfs {

Status SnapshotEngine::UnlinkInTxn(NsTxn* t, uint64_t parent, std::string_view name,
                                   const Dentry& e, RemoveReport* report) {
  ASSIGN_OR_RETURN(bool pinned, IsPinned(t, e.child));
  if (pinned) {
    // Deferred delete: the name leaves listings; the exact path still resolves.
    RETURN_IF_ERROR(HideEntry(t, parent, name, e));
    if (report) report->files_hidden++;
  } else {
    Namespace::RemoveEntry(t->kv(), parent, name, e.seq);
    t->gone_dentries.insert(keys::Dentry(parent, name));
    t->touched.emplace_back(parent, std::string(name));
    ASSIGN_OR_RETURN(Inode * node, t->Get(e.child));
    RETURN_IF_ERROR(ns_->DropLink(t, node, NowNs()));
    if (report) report->files_removed++;
  }
  if (IsMarkerName(name)) RETURN_IF_ERROR(MarkerGone(t, parent, name, e.child));
  return Status::OK();
}

Result<bool> SnapshotEngine::RemoveTreeInTxn(NsTxn* t, uint64_t parent, std::string_view name,
                                             const Dentry& e, RemoveReport* report) {
  if (t->gone_dentries.count(keys::Dentry(parent, name))) return false;
  if (!S_ISDIR(e.mode)) {
    if (e.hidden) return true;  // already kept for another snapshot
    RETURN_IF_ERROR(UnlinkInTxn(t, parent, name, e, report));
    return !t->gone_dentries.count(keys::Dentry(parent, name));
  }
  std::vector<std::pair<std::string, Dentry>> children;
  {
    std::string prefix = keys::Ino(e.child);
    auto* it = t->It(Cf::kDentries);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (t->gone_dentries.count(std::string(it->key()))) continue;
      Dentry c;
      RETURN_IF_ERROR(Namespace::DecodeEntry(it->value(), &c));
      children.emplace_back(std::string(it->key().data() + 8, it->key().size() - 8), c);
    }
    RETURN_IF_ERROR(it->status().WithContext("scan folder"));
  }
  bool kept = false;
  for (auto& [n, c] : children) {
    ASSIGN_OR_RETURN(bool k, RemoveTreeInTxn(t, e.child, n, c, report));
    kept |= k;
  }
  if (kept) {
    if (!e.hidden) RETURN_IF_ERROR(HideEntry(t, parent, name, e));
    return true;
  }
  if (e.hidden) {
    RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, e.child));
    return false;
  }
  Namespace::RemoveEntry(t->kv(), parent, name, e.seq);
  t->gone_dentries.insert(keys::Dentry(parent, name));
  t->touched.emplace_back(parent, std::string(name));
  ASSIGN_OR_RETURN(Inode * p, t->Get(parent));
  p->nlink--;
  p->mtime_ns = p->ctime_ns = NowNs();
  ASSIGN_OR_RETURN(Inode * node, t->Get(e.child));
  RETURN_IF_ERROR(ns_->DropLink(t, node, p->mtime_ns));
  return false;
}

Result<RemoveReport> SnapshotEngine::RemoveSnapshots(const std::vector<uint64_t>& dirs,
                                                     bool dry_run, bool wait) {
  if (dry_run) {
    // The whole removal as one transaction that is not committed: exact counts.
    ASSIGN_OR_RETURN(auto usage, queries_->MeasureSnapshots(dirs));
    RemoveReport report;
    RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
      report = RemoveReport{};
      report.bytes_freed = usage.exclusive;
      MutexLock l(ns_->mu());
      NsTxn t(*ns_);
      return RemoveSnapshotsInTxn(&t, dirs, &report);
    }));
    return report;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::function<void()> notify = wait ? nullptr : PurgeNotifier();
  // Without a background purger (or when asked to wait) the removal finishes here and
  // reports in full, as the single transaction did (MeasureSnapshots walks the
  // snapshots: only then).
  SnapshotUsage usage;
  if (!notify) {
    ASSIGN_OR_RETURN(usage, queries_->MeasureSnapshots(dirs));
  }
  RemoveReport report;
  std::vector<uint64_t> queued;
  std::vector<std::pair<uint64_t, std::string>> touched;
  std::set<uint64_t> only;
  auto unwait = [&] {
    MutexLock p(&purger_mu_);
    for (uint64_t d : only) waited_.erase(d);
  };
  Status detached = kv::RetryOnConflict([&]() -> Status {
    report = RemoveReport{};
    queued.clear();
    MutexLock l(ns_->mu());
    NsTxn t(*ns_);
    RETURN_IF_ERROR(DetachSnapshotsInTxn(&t, dirs, &report, &queued));
    if (!notify) {
      // Before the commit: the background purger must not take a batch of them.
      MutexLock p(&purger_mu_);
      for (uint64_t d : queued) {
        if (waited_.insert(d).second) only.insert(d);
      }
    }
    RETURN_IF_ERROR(t.Commit());
    touched = std::move(t.touched);
    return Status::OK();
  });
  if (!detached.ok()) {
    unwait();  // an attempt that failed may have marked folders it never queued
    return detached;
  }
  if (notify) {
    // The kernel learns of the hidden folder from the purger's thread, not here: a
    // folder whose 10,000 entries the kernel has cached takes it tens of ms to drop
    // (and as many FORGETs for the daemon). Meanwhile a cached lookup of the folder
    // answers what a fresh one would (a hidden entry resolves by its exact name), and
    // listings come from the daemon, without it.
    {
      MutexLock p(&purger_mu_);
      for (auto& e : touched) pending_invalidations_.push_back(std::move(e));
    }
    report.purging = true;
    notify();
    SNAPFS_LOG_INFO(std::to_string(queued.size()) + " removed folder(s) queued for the purger in " +
                    std::to_string(std::chrono::duration<double, std::milli>(
                                       std::chrono::steady_clock::now() - t0)
                                       .count()) +
                    " ms");
    return report;
  }
  for (auto& [parent, name] : touched) InvalidateEntry(parent, name);
  Status s;
  std::set<uint64_t> left = only;
  while (!left.empty()) {
    auto p = PurgeStep(kPurgeBatch, &left);
    if (!p.ok()) {
      s = p.status();
      break;
    }
    report.files_removed += p->folder_removed;
    report.files_hidden += p->folder_hidden;
    if (!p->more) break;
  }
  unwait();
  if (!s.ok()) {
    // The folders stay queued: the background purger (or the next removal) goes on.
    if (auto n = PurgeNotifier()) n();
    return s;
  }
  report.bytes_freed = usage.exclusive;
  return report;
}

Status SnapshotEngine::RemoveSnapshotsInTxn(NsTxn* tp, const std::vector<uint64_t>& dirs,
                                            RemoveReport* out) {
  NsTxn& t = *tp;
  RemoveReport& report = *out;
  // Referenced files: (ino, where to look for their name). The job folder may have moved
  // since the marker named them: its view path under the job folder's current path comes
  // first, then the path the marker named.
  std::vector<std::pair<uint64_t, std::vector<std::string>>> outside;
  for (uint64_t dir : dirs) {
    ASSIGN_OR_RETURN(auto snap, queries_->LoadSnapshot(dir, &t));
    ASSIGN_OR_RETURN(std::string spath, ns_->PathOf(dir));
    std::string job;
    if (auto slash = spath.rfind('/'); slash != std::string::npos) job = spath.substr(0, slash);
    ASSIGN_OR_RETURN(auto pins, queries_->PinsOf(dir, &t));
    for (auto& [ino, v] : pins) outside.emplace_back(ino, ReferencedPaths(PinValue::Decode(v), job));
  }
  // Every snapshot goes before any folder is walked, those nested in the removed folders
  // too: a file they pin must not be hidden for a snapshot that is about to end.
  std::vector<uint64_t> ending(dirs.begin(), dirs.end());
  for (uint64_t dir : dirs) {
    ASSIGN_OR_RETURN(auto nested, queries_->ListSnapshots(dir));
    for (const auto& n : nested) ending.push_back(n.dir);
  }
  for (uint64_t dir : ending) RETURN_IF_ERROR(EndSnapshot(&t, dir));
  for (uint64_t dir : dirs) {
    if (dir == kRootIno) return Status::InvalidArgument("will not remove the mount root");
    if (t.IsPurged(dir)) continue;  // inside another removed folder
    ASSIGN_OR_RETURN(Inode * node, t.Get(dir));
    uint64_t parent = node->parent;
    std::string name = node->name;
    Dentry e;
    if (name.empty() || !t.Lookup(parent, name, &e).ok() || e.child != dir) {
      return Status::NotFound("snapshot folder has no name (detached)");
    }
    if (t.gone_dentries.count(keys::Dentry(parent, name))) continue;  // removed with another
    ASSIGN_OR_RETURN(bool kept, RemoveTreeInTxn(&t, parent, name, e, &report));
    (void)kept;
  }
  // Referenced files outside the folders that nothing else references go too.
  for (auto& [ino, where] : outside) {
    if (t.IsPurged(ino)) continue;
    ASSIGN_OR_RETURN(bool pinned, IsPinned(&t, ino));
    if (pinned) continue;
    RETURN_IF_ERROR(UnlinkReferencedInTxn(&t, ino, where, &report));
  }
  RETURN_IF_ERROR(CollapseHiddenDirs(&t));
  // Snapshot folders inside the removed folders ended with them.
  report.snapshots = t.ended.size();
  return Status::OK();
}

std::vector<std::string> SnapshotEngine::ReferencedPaths(const PinValue& pin,
                                                        const std::string& job) {
  std::vector<std::string> where;
  const std::string& view = pin.view_path;
  if (!view.starts_with(std::string(kOtherJobsDir) + "/")) {
    where.push_back(job.empty() ? view : job + "/" + view);
  }
  where.push_back(pin.mount_path);
  return where;
}

Status SnapshotEngine::UnlinkReferencedInTxn(NsTxn* t, uint64_t ino,
                                             const std::vector<std::string>& where,
                                             RemoveReport* report) {
  for (const auto& path : where) {
    if (path.empty()) continue;
    size_t slash = path.rfind('/');
    std::string parent_path = slash == std::string::npos ? "" : path.substr(0, slash);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    auto parent = ns_->ResolvePath(parent_path);
    if (!parent.ok()) continue;
    Dentry e;
    if (!t->Lookup(*parent, name, &e).ok() || e.child != ino || e.hidden) continue;
    if (t->gone_dentries.count(keys::Dentry(*parent, name))) return Status::OK();
    return UnlinkInTxn(t, *parent, name, e, report);
  }
  return Status::OK();
}

void SnapshotEngine::SetEntryInvalidator(std::function<void(uint64_t, std::string_view)> f) {
  MutexLock l(&invalidator_mu_);
  invalidator_ = std::move(f);
}

void SnapshotEngine::InvalidateEntry(uint64_t parent, std::string_view name) {
  MutexLock l(&invalidator_mu_);
  if (invalidator_) invalidator_(parent, name);
}

}  // namespace snapfs
