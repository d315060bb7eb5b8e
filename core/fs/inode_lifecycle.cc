// Namespace: the end of an inode's life. A file whose last link goes is purged at once,
// or, while it is open or a snapshot references it, recorded in `orphans` and purged by
// whoever lets go last (or, after a crash, by the next namespace that opens: for a shared
// store, once the session that had it open is gone).
#include <set>

#include "base/coding.h"
#include "core/fs/extent_map.h"
#include "core/fs/namespace.h"
#include "core/fs/ns_txn.h"

namespace snapfs {

Result<size_t> Namespace::PurgeDeadOrphans() {
  // Inodes unlinked while open by a process that is gone: nobody can reach them now.
  // Folder store: that is every one at open (the store is ours alone). Shared store: an
  // orphan's value names the session that has it open; those of live sessions stay.
  std::set<uint64_t> live;
  if (store_->shared()) {
    ASSIGN_OR_RETURN(auto sessions, ListSessions(meta_.engine()));
    for (const auto& s : sessions) live.insert(s.id);
  }
  std::vector<uint64_t> orphans;
  auto it = meta_.NewIterator(Cf::kOrphans);
  for (it->Seek(""); it->Valid(); it->Next()) {
    uint64_t owner = 0;
    if (it->value().size() == 8) owner = GetBE64(it->value().data());
    if (owner != 0 && (live.count(owner) != 0 || owner == store_->session_id())) continue;
    orphans.push_back(GetBE64(it->key().data()));
  }
  RETURN_IF_ERROR(it->status().WithContext("scan orphans"));
  for (uint64_t ino : orphans) {
    RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
      MutexLock l(&mu_);
      NsTxn t(*this);
      RETURN_IF_ERROR(PurgeIfUnused(&t, ino));
      return t.Commit();
    }));
  }
  return orphans.size();
}

bool Namespace::InUse(uint64_t ino, bool is_reg) {
  MutexLock l(&users_mu_);
  const auto& m = is_reg ? opens_ : users_;
  auto it = m.find(ino);
  return it != m.end() && it->second > 0;
}

Status Namespace::DropLink(NsTxn* t, Inode* ino, int64_t now) {
  if (ino->is_dir()) {
    ino->nlink = 0;
  } else if (ino->nlink > 0) {
    ino->nlink--;
  }
  ino->ctime_ns = now;
  t->Put(*ino);
  if (ino->nlink > 0) return Status::OK();
  return PurgeIfUnused(t, ino->ino, /*just_unlinked=*/true);
}

Status Namespace::PurgeIfUnused(NsTxn* t, uint64_t ino, bool just_unlinked) {
  auto node = t->Get(ino);
  if (!node.ok()) return node.status().Is(Code::kNotFound) ? Status::OK() : node.status();
  if ((*node)->nlink > 0) return Status::OK();
  if (store_->shared() && !just_unlinked) {
    // Another live session has it open (it was unlinked there while open): only that
    // session's last close purges it, or PurgeDeadOrphans once the session is gone. This
    // process may only have known it: its kernel forgetting it, a last release here, a
    // snapshot letting go of it. Before, such a process purged a file another host was
    // still writing, and that host's next flush failed with ENOENT (found by
    // MountShared.DifferentialOverThreeHosts under load). Both reads are in `t`: a reap
    // of the owner, or its purge, conflicts with this transaction.
    std::string v;
    Status s = t->kv().Get(Cf::kOrphans, keys::Ino(ino), &v);
    if (!s.ok() && !s.Is(Code::kNotFound)) return s;
    if (s.ok() && v.size() == 8 && GetBE64(v.data()) != store_->session_id()) {
      std::string row;
      Status live = t->kv().Get(Cf::kDefault, keys::Session(GetBE64(v.data())), &row);
      if (live.ok()) return Status::OK();
      if (!live.Is(Code::kNotFound)) return live;
    }
  }
  ASSIGN_OR_RETURN(bool pinned, snap_->IsPinned(t, ino));
  bool keep = pinned;  // a snapshot references it: reached through /.snapshots/
  if (!keep && (*node)->is_dir()) {
    // Replaced while it held hidden entries: it lives detached until they go.
    ASSIGN_OR_RETURN(keep, DirHasEntries(t, ino));
  }
  if (keep) {
    // Whoever ends that (ReleaseUnpinned, CollapseHiddenDirs) asks again.
    (void)t->kv().Delete(Cf::kOrphans, keys::Ino(ino));
    return Status::OK();
  }
  if (InUse(ino, (*node)->is_reg())) {
    // Open (or a folder known to the kernel): purged when the last user lets go, or at
    // the next start after a crash.
    // A shared store records whose it is (PurgeDeadOrphans).
    (void)t->kv().Put(Cf::kOrphans, keys::Ino(ino),
                      store_->shared() ? EncodeBE64(store_->session_id()) : std::string());
    MutexLock l(&users_mu_);
    orphaned_here_.insert(ino);  // a hint only: the purge's transaction decides
    return Status::OK();
  }
  return PurgeInode(t, ino);
}

Status Namespace::PurgeInode(NsTxn* t, uint64_t ino) {
  t->Purged(ino);
  {
    MutexLock l(&users_mu_);
    orphaned_here_.erase(ino);
  }
  kv::Txn& kv = t->kv();
  std::string prefix = keys::Ino(ino);
  // Collected first: the iterators must not be on a key the transaction writes.
  std::vector<std::pair<uint64_t, ExtentValue>> extents;
  auto* it = t->It(Cf::kExtents);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    ASSIGN_OR_RETURN(auto e, ExtentValue::Decode(it->value()));
    extents.emplace_back(GetBE64(it->key().data() + 8), e);
  }
  RETURN_IF_ERROR(it->status().WithContext("scan extents"));
  for (const auto& [off, e] : extents) extent_map::Remove(kv, ino, off, e);
  std::vector<std::string> xattrs;
  auto* xi = t->It(Cf::kXattrs);
  for (xi->Seek(prefix); xi->Valid() && xi->key().starts_with(prefix); xi->Next()) {
    xattrs.emplace_back(xi->key());
  }
  RETURN_IF_ERROR(xi->status().WithContext("scan xattrs"));
  for (const auto& k : xattrs) kv.Delete(Cf::kXattrs, k);
  kv.Delete(Cf::kInodes, prefix);
  kv.Delete(Cf::kOrphans, prefix);
  return Status::OK();
}

void Namespace::MaybePurgeUnused(uint64_t ino) {
  if (ino >= kViewInoBase) return;
  (void)kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&mu_);
    if (InUse(ino, /*is_reg=*/true)) return Status::OK();  // open: whatever it is
    // Most releases are of files that still have a name. That is decided on the
    // committed inode, read without a transaction: the transaction below commits nothing
    // in that case either, so its read would guard nothing, and an unlink that commits
    // after this read (it takes mu_) finds the file unused and purges it itself. A file
    // this process unlinked while in use (the kernel's reference after an unlink is one)
    // is known to need the transaction: no read first (a database round trip).
    bool orphaned_here;
    {
      MutexLock ul(&users_mu_);
      orphaned_here = orphaned_here_.count(ino) > 0;
    }
    if (!orphaned_here) {
      if (auto committed = LoadInode(ino);
          committed.status().Is(Code::kNotFound) || (committed.ok() && committed->nlink > 0)) {
        return Status::OK();
      }
    }
    NsTxn t(*this);
    auto node = t.Get(ino);
    if (!node.ok() || (*node)->nlink > 0) return Status::OK();
    RETURN_IF_ERROR(PurgeIfUnused(&t, ino));
    return t.Commit();
  });
}

}  // namespace snapfs
