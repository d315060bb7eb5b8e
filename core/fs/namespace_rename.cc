// Namespace: rename, the one operation that touches two entries, moves folders, and
// commits or ends snapshots when a file lands on or leaves a marker name (the marker's
// bytes are read by the caller beforehand: see Namespace::Rename).
#include <fcntl.h>

#include "core/fs/namespace.h"
#include "core/fs/ns_txn.h"

namespace snapfs {

Status Namespace::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                         std::string_view new_name, unsigned flags,
                         const std::map<uint64_t, std::string>& marker_bytes) {
  if (flags & ~(kRenameNoReplace | kRenameExchange)) return Status::InvalidArgument("flags");
  if ((flags & kRenameNoReplace) && (flags & kRenameExchange)) {
    return Status::InvalidArgument("RENAME_NOREPLACE with RENAME_EXCHANGE");
  }
  RETURN_IF_ERROR(CheckChangeableName(parent, name));
  RETURN_IF_ERROR(CheckChangeableName(new_parent, new_name));
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&mu_);
    NsTxn t(*this);
    return RenameInTxn(&t, parent, name, new_parent, new_name, flags, marker_bytes);
  });
}

Status Namespace::RenameInTxn(NsTxn* tp, uint64_t parent, std::string_view name,
                              uint64_t new_parent, std::string_view new_name, unsigned flags,
                              const std::map<uint64_t, std::string>& marker_bytes) {
  NsTxn& t = *tp;
  const bool exchange = flags & kRenameExchange;
  Dentry se, de;
  RETURN_IF_ERROR(t.Lookup(parent, name, &se));
  if (se.hidden) return Status::ReadOnly("deleted entry kept read-only for snapshots");
  Status ds = t.Lookup(new_parent, new_name, &de);
  if (!ds.ok() && !ds.Is(Code::kNotFound)) return ds;
  bool dst_exists = ds.ok();
  const uint64_t src = se.child;
  const uint64_t dst = dst_exists ? de.child : 0;
  if (exchange && dst_exists && de.hidden) {
    return Status::ReadOnly("deleted entry kept read-only for snapshots");
  }

  ASSIGN_OR_RETURN(auto new_dir_check, t.Load(new_parent));
  if (!new_dir_check.is_dir()) return Status::NotDirectory();
  if (new_dir_check.nlink == 0) return Status::NotFound("target folder was removed");
  RETURN_IF_ERROR(snap_->ResurrectDir(&t, new_parent));

  // Is `ancestor` equal to `ino` or one of its ancestors? Read in the transaction: a
  // concurrent move of any folder on the way (it writes that folder's inode) conflicts,
  // so two crossing moves cannot make a loop together.
  auto is_within = [&](uint64_t ino, uint64_t ancestor) -> Result<bool> {
    for (int depth = 0; depth < 4096; depth++) {
      if (ino == ancestor) return true;
      if (ino == kRootIno) return false;
      ASSIGN_OR_RETURN(auto n, t.Load(ino));
      ino = n.parent;
    }
    return Status::Loop("folder tree too deep");
  };

  int64_t now = NowNs();
  if (exchange) {
    if (!dst_exists) return Status::NotFound();
    if (src == dst) return Status::OK();
    if (S_ISDIR(se.mode) && new_parent != parent) {
      ASSIGN_OR_RETURN(bool loop, is_within(new_parent, src));
      if (loop) return Status::InvalidArgument("move a folder into itself");
    }
    if (S_ISDIR(de.mode) && new_parent != parent) {
      ASSIGN_OR_RETURN(bool loop, is_within(parent, dst));
      if (loop) return Status::InvalidArgument("move a folder into itself");
    }
    ASSIGN_OR_RETURN(Inode * old_dir, t.Get(parent));
    ASSIGN_OR_RETURN(Inode * new_dir, t.Get(new_parent));
    ASSIGN_OR_RETURN(Inode * s_node, t.Get(src));
    ASSIGN_OR_RETURN(Inode * d_node, t.Get(dst));
    kv::Txn& b = t.kv();
    // Both names stay; their targets swap (sequence numbers stay with the names).
    (void)b.Put(Cf::kDentries, keys::Dentry(parent, name),
                DentryValue{dst, se.seq, de.mode, false}.Encode());
    (void)b.Put(Cf::kDirIndex, keys::DirIndex(parent, se.seq),
                DirIndexValue::Encode(dst, de.mode, name));
    (void)b.Put(Cf::kDentries, keys::Dentry(new_parent, new_name),
                DentryValue{src, de.seq, se.mode, false}.Encode());
    (void)b.Put(Cf::kDirIndex, keys::DirIndex(new_parent, de.seq),
                DirIndexValue::Encode(src, se.mode, new_name));
    if (s_node->is_dir()) s_node->name = std::string(new_name);
    if (d_node->is_dir()) d_node->name = std::string(name);
    if (new_parent != parent) {
      if (s_node->is_dir()) {
        s_node->parent = new_parent;
        old_dir->nlink--;
        new_dir->nlink++;
      }
      if (d_node->is_dir()) {
        d_node->parent = parent;
        new_dir->nlink--;
        old_dir->nlink++;
      }
    }
    s_node->ctime_ns = d_node->ctime_ns = now;
    old_dir->mtime_ns = old_dir->ctime_ns = new_dir->mtime_ns = new_dir->ctime_ns = now;
    // Markers: a file arriving on a marker name commits a snapshot; one leaving it ends
    // its snapshot. Both new pin sets are in place before any old snapshot lets go.
    if (snap_->IsMarkerName(name)) {
      if (auto it = marker_bytes.find(dst); it != marker_bytes.end()) {
        RETURN_IF_ERROR(snap_->PrepareSnapshot(&t, parent, dst, name, it->second));
      }
    }
    if (snap_->IsMarkerName(new_name)) {
      if (auto it = marker_bytes.find(src); it != marker_bytes.end()) {
        RETURN_IF_ERROR(snap_->PrepareSnapshot(&t, new_parent, src, new_name, it->second));
      }
    }
    if (snap_->IsMarkerName(name)) RETURN_IF_ERROR(snap_->MarkerGone(&t, parent, name, src));
    if (snap_->IsMarkerName(new_name))
      RETURN_IF_ERROR(snap_->MarkerGone(&t, new_parent, new_name, dst));
    RETURN_IF_ERROR(snap_->FinishSnapshots(&t));
    RETURN_IF_ERROR(snap_->CollapseHiddenDirs(&t));
    return t.Commit();
  }

  if (dst_exists && src == dst && !de.hidden) return Status::OK();  // two links: no-op
  if (S_ISDIR(se.mode)) {
    ASSIGN_OR_RETURN(bool loop, is_within(new_parent, src));
    if (loop) return Status::InvalidArgument("move a folder into itself");
  }
  if (dst_exists && de.hidden) {
    // The hidden entry makes way, as for any new entry of its name.
    RETURN_IF_ERROR(snap_->DropHiddenEntry(&t, new_parent, new_name, dst));
    dst_exists = false;
  }
  ASSIGN_OR_RETURN(Inode * old_dir, t.Get(parent));
  ASSIGN_OR_RETURN(Inode * new_dir, t.Get(new_parent));
  if (dst_exists && (flags & kRenameNoReplace)) return Status::AlreadyExists();
  if (snap_->IsMarkerName(new_name)) {
    // Resolved before the marker it replaces (if any) ends its snapshot.
    if (auto it = marker_bytes.find(src); it != marker_bytes.end()) {
      RETURN_IF_ERROR(snap_->PrepareSnapshot(&t, new_parent, src, new_name, it->second));
    }
  }
  if (dst_exists) {
    if (S_ISDIR(se.mode) && !S_ISDIR(de.mode)) return Status::NotDirectory();
    if (!S_ISDIR(se.mode) && S_ISDIR(de.mode)) return Status::IsDirectory();
    ASSIGN_OR_RETURN(Inode * d_node, t.Get(dst));
    if (d_node->is_dir()) {
      ASSIGN_OR_RETURN(bool has, DirHasEntries(&t, dst));
      if (has) return Status::NotEmpty();
      new_dir->nlink--;
    }
    RemoveEntry(t.kv(), new_parent, new_name, de.seq);
    t.gone_dentries.insert(keys::Dentry(new_parent, new_name));
    if (snap_->IsMarkerName(new_name))
      RETURN_IF_ERROR(snap_->MarkerGone(&t, new_parent, new_name, dst));
    // A pinned file replaced here lives on (DropLink keeps it), reached through
    // /.snapshots/ until its last pin goes.
    RETURN_IF_ERROR(DropLink(&t, d_node, now));
  }
  ASSIGN_OR_RETURN(Inode * s_node, t.Get(src));
  RemoveEntry(t.kv(), parent, name, se.seq);
  t.gone_dentries.insert(keys::Dentry(parent, name));
  AddEntry(t.kv(), new_dir, new_name, *s_node);
  t.gone_dentries.erase(keys::Dentry(new_parent, new_name));
  if (s_node->is_dir()) {
    s_node->name = std::string(new_name);
    if (new_parent != parent) {
      s_node->parent = new_parent;
      old_dir->nlink--;
      new_dir->nlink++;
    }
  }
  s_node->ctime_ns = now;
  old_dir->mtime_ns = old_dir->ctime_ns = new_dir->mtime_ns = new_dir->ctime_ns = now;
  if (snap_->IsMarkerName(name)) RETURN_IF_ERROR(snap_->MarkerGone(&t, parent, name, src));
  RETURN_IF_ERROR(snap_->FinishSnapshots(&t));
  RETURN_IF_ERROR(snap_->CollapseHiddenDirs(&t));
  return t.Commit();
}

}  // namespace snapfs
