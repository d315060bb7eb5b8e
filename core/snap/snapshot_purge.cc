// SnapshotEngine: `snapfs rm` in O(1) and the purge queue behind it (docs/snapshots.md,
// "Removal in the background").
//
// A removal is one small transaction: every snapshot it ends loses its record and marker
// index (so it is gone from `snapfs ls` and /.snapshots/ at once), and each removed
// folder's entry is hidden, exactly as rmdir hides a folder that still holds entries
// snapshots need: gone from listings, its name free for a new entry, an exact path still
// resolving read-only (a file in it that another snapshot names by absolute path stays
// readable in place, invariant 4). The folder goes into the queue, "purge/" BE64 folder,
// with the snapshots that ended with it.
//
// The purger then works through the queue in batches of at most kPurgeBatch, one NsTxn
// each, in two phases per folder:
//   1. the pins of the ended snapshots are released (as EndSnapshot does, and the
//      referenced files outside the folder that nothing else needs are unlinked, as the
//      single-transaction removal did): until then they still count, so nothing an ending
//      snapshot needs is freed early. Phase 1 of every queued folder comes before phase 2
//      of any, so a file only ending snapshots need is removed rather than hidden.
//   2. the folder's tree is walked depth first, as RemoveTreeInTxn does: files no
//      snapshot pins go, pinned ones are hidden; folders go once empty. When the walk
//      completes, the queue key goes in the same transaction.
// Every batch reads (conflict-checked) and writes its queue key, so two purgers (threads
// or daemons of a shared store) working on one folder conflict and one runs again.
#include <algorithm>

#include "base/coding.h"
#include "base/log.h"
#include "core/fs/ns_txn.h"
#include "core/snap/snapshot_engine.h"
#include "core/snap/snapshot_queries.h"

namespace snapfs {

void SnapshotEngine::SetPurgeNotifier(std::function<void()> f) {
  MutexLock l(&purger_mu_);
  purge_notifier_ = std::move(f);
}

std::function<void()> SnapshotEngine::PurgeNotifier() {
  MutexLock l(&purger_mu_);
  return purge_notifier_;
}

void SnapshotEngine::EndSnapshotRecord(NsTxn* t, uint64_t dir, const SnapshotInfo& snap) {
  t->ended.insert(dir);
  SNAPFS_LOG_INFO("snapshot ended: /" + snap.path + " (its files are purged in the background)");
  (void)t->kv().Delete(Cf::kDefault, keys::MarkerIndex(snap.marker));
  (void)t->kv().Delete(Cf::kSnapshots, keys::Ino(dir));
  t->snapshots_changed = true;
}

Status SnapshotEngine::DetachSnapshotsInTxn(NsTxn* t, const std::vector<uint64_t>& dirs,
                                            RemoveReport* report, std::vector<uint64_t>* queued) {
  // The snapshots under each folder (itself included): O(snapshots), not O(files).
  std::map<uint64_t, std::vector<SnapshotInfo>> under;
  std::set<uint64_t> nested;  // folders of `dirs` inside another one of them
  for (uint64_t dir : dirs) {
    if (dir == kRootIno) return Status::InvalidArgument("will not remove the mount root");
    RETURN_IF_ERROR(queries_->LoadSnapshot(dir, t).status());  // conflict-checked
    ASSIGN_OR_RETURN(auto list, queries_->ListSnapshots(dir));
    under[dir] = std::move(list);
  }
  for (const auto& [dir, list] : under) {
    for (const auto& s : list) {
      if (s.dir != dir && under.count(s.dir)) nested.insert(s.dir);
    }
  }
  for (uint64_t dir : dirs) {
    if (nested.count(dir) || t->ended.count(dir)) continue;
    PurgeValue pv;
    pv.queued_ns = NowNs();
    for (const auto& s : under[dir]) {
      if (t->ended.count(s.dir)) continue;
      ASSIGN_OR_RETURN(auto snap, queries_->LoadSnapshot(s.dir, t));
      snap.path = s.path;
      EndSnapshotRecord(t, s.dir, snap);
      std::string job;
      if (auto slash = s.path.rfind('/'); slash != std::string::npos) job = s.path.substr(0, slash);
      pv.ended.emplace_back(s.dir, std::move(job));
    }
    if (std::none_of(pv.ended.begin(), pv.ended.end(),
                     [&](const auto& x) { return x.first == dir; })) {
      // ListSnapshots missed it (its path could not be read): it still ends.
      ASSIGN_OR_RETURN(auto snap, queries_->LoadSnapshot(dir, t));
      EndSnapshotRecord(t, dir, snap);
      pv.ended.emplace_back(dir, "");
    }
    ASSIGN_OR_RETURN(Inode * node, t->Get(dir));
    const uint64_t parent = node->parent;
    const std::string name = node->name;
    Dentry e;
    if (name.empty() || !t->Lookup(parent, name, &e).ok() || e.child != dir) {
      return Status::NotFound("snapshot folder has no name (detached)");
    }
    if (!e.hidden) RETURN_IF_ERROR(HideEntry(t, parent, name, e));
    ASSIGN_OR_RETURN(Inode * p, t->Get(parent));
    p->mtime_ns = p->ctime_ns = NowNs();
    (void)t->kv().Put(Cf::kDefault, keys::Purge(dir), pv.Encode());
    queued->push_back(dir);
  }
  report->snapshots = t->ended.size();
  return Status::OK();
}

Result<bool> SnapshotEngine::ReleasePinsInTxn(NsTxn* t, const PurgeValue& pv, size_t* budget,
                                              RemoveReport* report, uint64_t* released) {
  struct Pin {
    uint64_t snap, ino;
    PinValue value;
    const std::string* job;
  };
  std::vector<Pin> batch;
  for (const auto& [snap, job] : pv.ended) {
    if (batch.size() >= *budget) break;
    std::string prefix = keys::Ino(snap);
    auto it = t->kv().NewBoundedIterator(Cf::kPins, keys::Ino(snap + 1));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (batch.size() >= *budget) break;
      batch.push_back(
          Pin{snap, GetBE64(it->key().data() + 8), PinValue::Decode(it->value()), &job});
    }
    RETURN_IF_ERROR(it->status().WithContext("scan pins"));
  }
  if (batch.empty()) return false;
  *budget -= batch.size();
  *released += batch.size();
  for (const auto& p : batch) {
    (void)t->kv().Delete(Cf::kPins, keys::Pair(p.snap, p.ino));
    (void)t->kv().Delete(Cf::kPinned, keys::Pair(p.ino, p.snap));
    t->gone_pins.insert({p.ino, p.snap});
  }
  t->snapshots_changed = true;
  for (const auto& p : batch) {
    if (t->IsPurged(p.ino)) continue;
    ASSIGN_OR_RETURN(bool pinned, IsPinned(t, p.ino));
    if (pinned) continue;
    // As EndSnapshot: hidden entries kept only for the ending snapshots go.
    RETURN_IF_ERROR(ReleaseUnpinned(t, p.ino));
    if (t->IsPurged(p.ino)) continue;
    // As the single-transaction removal: a referenced file nothing else references goes
    // too.
    RETURN_IF_ERROR(UnlinkReferencedInTxn(t, p.ino, ReferencedPaths(p.value, *p.job), report));
  }
  return true;
}

bool SnapshotEngine::IsWaitedFor(uint64_t folder) {
  MutexLock l(&purger_mu_);
  return waited_.count(folder) > 0;
}

Result<SnapshotEngine::TreeStep> SnapshotEngine::PurgeChildrenInTxn(NsTxn* t, uint64_t dir,
                                                                    size_t* budget,
                                                                    RemoveReport* report) {
  TreeStep step;
  // Entries already hidden (kept for other snapshots by an earlier batch) cost nothing
  // but their read: each batch makes progress on the others, or finishes.
  std::vector<std::pair<std::string, Dentry>> children;
  size_t to_do = 0;
  bool more = false;
  {
    std::string prefix = keys::Ino(dir);
    auto* it = t->It(Cf::kDentries);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (t->gone_dentries.count(std::string(it->key()))) continue;
      Dentry c;
      RETURN_IF_ERROR(Namespace::DecodeEntry(it->value(), &c));
      if (c.hidden && !S_ISDIR(c.mode)) {
        step.kept = true;
        continue;
      }
      if (!c.hidden && ++to_do > *budget) {
        more = true;
        break;
      }
      children.emplace_back(std::string(it->key().data() + 8, it->key().size() - 8), c);
    }
    RETURN_IF_ERROR(it->status().WithContext("scan folder"));
  }
  step.done = !more;
  for (auto& [n, c] : children) {
    if (*budget == 0 && !c.hidden) {
      step.done = false;
      break;
    }
    ASSIGN_OR_RETURN(TreeStep s, PurgeTreeInTxn(t, dir, n, c, budget, report));
    step.kept |= s.kept;
    if (!s.done) {
      step.done = false;
      break;
    }
  }
  if (!step.done) step.kept = true;
  return step;
}

Result<SnapshotEngine::TreeStep> SnapshotEngine::PurgeTreeInTxn(NsTxn* t, uint64_t parent,
                                                                std::string_view name,
                                                                const Dentry& e, size_t* budget,
                                                                RemoveReport* report) {
  if (t->gone_dentries.count(keys::Dentry(parent, name))) return TreeStep{true, false};
  if (!S_ISDIR(e.mode)) {
    if (e.hidden) return TreeStep{true, true};  // already kept for another snapshot
    if (*budget == 0) return TreeStep{false, true};
    (*budget)--;
    RETURN_IF_ERROR(UnlinkInTxn(t, parent, name, e, report));
    return TreeStep{true, !t->gone_dentries.count(keys::Dentry(parent, name))};
  }
  ASSIGN_OR_RETURN(TreeStep c, PurgeChildrenInTxn(t, e.child, budget, report));
  if (!c.done) return c;
  // As RemoveTreeInTxn, once everything under the folder was handled.
  if (c.kept) {
    if (!e.hidden) RETURN_IF_ERROR(HideEntry(t, parent, name, e));
    return TreeStep{true, true};
  }
  if (e.hidden) {
    RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, e.child));
    return TreeStep{true, false};
  }
  Namespace::RemoveEntry(t->kv(), parent, name, e.seq);
  t->gone_dentries.insert(keys::Dentry(parent, name));
  t->touched.emplace_back(parent, std::string(name));
  ASSIGN_OR_RETURN(Inode * p, t->Get(parent));
  if (p->nlink > 2) p->nlink--;  // a detached folder (its name taken) has 0
  p->mtime_ns = p->ctime_ns = NowNs();
  ASSIGN_OR_RETURN(Inode * node, t->Get(e.child));
  RETURN_IF_ERROR(ns_->DropLink(t, node, p->mtime_ns));
  return TreeStep{true, false};
}

Result<bool> SnapshotEngine::PurgeFolderInTxn(NsTxn* t, uint64_t folder, size_t* budget,
                                              RemoveReport* report) {
  auto node = t->Get(folder);
  if (!node.ok()) {
    if (node.status().Is(Code::kNotFound)) return true;  // went already (collapsed)
    return node.status();
  }
  const uint64_t parent = (*node)->parent;
  const std::string name = (*node)->name;
  Dentry e;
  if (!name.empty() && t->Lookup(parent, name, &e).ok() && e.child == folder) {
    ASSIGN_OR_RETURN(TreeStep s, PurgeTreeInTxn(t, parent, name, e, budget, report));
    return s.done;
  }
  // A new entry took its name (the hidden entry made way): it lives detached; its
  // contents go, then the folder with them unless it still holds hidden entries.
  ASSIGN_OR_RETURN(TreeStep s, PurgeChildrenInTxn(t, folder, budget, report));
  if (s.done) t->collapse.insert(folder);
  return s.done;
}

Result<PurgeProgress> SnapshotEngine::PurgeStep(size_t budget, const std::set<uint64_t>* only) {
  budget = std::max<size_t>(1, budget);
  InvalidatePending();
  PurgeProgress out;
  std::vector<std::pair<uint64_t, std::string>> touched;
  Status s;
  {
    ReaderMutexLock running(&purge_run_mu_);
    s = kv::RetryOnConflict([&]() -> Status {
      out = PurgeProgress{};
      touched.clear();
      MutexLock l(ns_->mu());
      NsTxn t(*ns_);
      std::vector<std::pair<uint64_t, PurgeValue>> items;
      {
        auto it = t.kv().NewIterator(Cf::kDefault);
        for (it->Seek(keys::kPurgePrefix); it->Valid() && it->key().starts_with(keys::kPurgePrefix);
             it->Next()) {
          ASSIGN_OR_RETURN(uint64_t folder, keys::DecodeSuffixId(it->key(), keys::kPurgePrefix));
          if (only ? !only->count(folder) : IsWaitedFor(folder)) continue;
          ASSIGN_OR_RETURN(PurgeValue pv, PurgeValue::Decode(it->value()));
          items.emplace_back(folder, std::move(pv));
        }
        RETURN_IF_ERROR(it->status().WithContext("scan the purge queue"));
      }
      if (items.empty()) return Status::OK();
      RemoveReport report;
      size_t left = budget;
      size_t chosen = 0;
      bool released = false;
      for (size_t i = 0; i < items.size() && !released; i++) {
        ASSIGN_OR_RETURN(released,
                         ReleasePinsInTxn(&t, items[i].second, &left, &report, &out.pins));
        if (released) chosen = i;
      }
      auto& [folder, pv] = items[chosen];
      // The decision rests on the queue key: read it conflict-checked, write it back.
      const std::string qk = keys::Purge(folder);
      std::string v;
      RETURN_IF_ERROR(t.kv().Get(Cf::kDefault, qk, &v));
      ASSIGN_OR_RETURN(pv, PurgeValue::Decode(v));
      bool done = false;
      if (!released) {
        ASSIGN_OR_RETURN(done, PurgeFolderInTxn(&t, folder, &left, &report));
      }
      RETURN_IF_ERROR(CollapseHiddenDirs(&t));
      pv.removed += report.files_removed;
      pv.hidden += report.files_hidden;
      if (done) {
        t.kv().Delete(Cf::kDefault, qk);
        out.folders_done = 1;
        out.folder_removed = pv.removed;
        out.folder_hidden = pv.hidden;
        SNAPFS_LOG_INFO("purged removed folder " + std::to_string(folder) + ": " +
                        std::to_string(pv.removed) + " entries removed, " +
                        std::to_string(pv.hidden) + " kept hidden for other snapshots, " +
                        std::to_string((NowNs() - pv.queued_ns) / 1000000) + " ms after its rm");
      } else {
        t.kv().Put(Cf::kDefault, qk, pv.Encode());
      }
      out.removed = report.files_removed;
      out.hidden = report.files_hidden;
      out.more = !done || items.size() > 1;
      RETURN_IF_ERROR(t.Commit());
      touched = std::move(t.touched);
      return Status::OK();
    });
  }
  RETURN_IF_ERROR(s);
  // After the pause lock: the kernel may wait on a request of ours to invalidate.
  for (auto& [parent, name] : touched) InvalidateEntry(parent, name);
  return out;
}

void SnapshotEngine::InvalidatePending() {
  std::vector<std::pair<uint64_t, std::string>> todo;
  {
    MutexLock l(&purger_mu_);
    todo.swap(pending_invalidations_);
  }
  for (auto& [parent, name] : todo) InvalidateEntry(parent, name);
}

void SnapshotEngine::WithPurgesPaused(const std::function<void()>& f) {
  WriterMutexLock paused(&purge_run_mu_);
  f();
}

Result<PurgeBacklog> SnapshotEngine::GetPurgeBacklog() {
  PurgeBacklog b;
  auto it = meta_.NewIterator(Cf::kDefault);
  for (it->Seek(keys::kPurgePrefix); it->Valid() && it->key().starts_with(keys::kPurgePrefix);
       it->Next()) {
    ASSIGN_OR_RETURN(PurgeValue pv, PurgeValue::Decode(it->value()));
    b.folders++;
    b.removed += pv.removed;
    if (b.oldest_queued_ns == 0 || pv.queued_ns < b.oldest_queued_ns) {
      b.oldest_queued_ns = pv.queued_ns;
    }
  }
  RETURN_IF_ERROR(it->status().WithContext("scan the purge queue"));
  return b;
}

}  // namespace snapfs
