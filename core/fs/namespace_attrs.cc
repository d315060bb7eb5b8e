// Namespace: attributes (mode, owner, times: the size is FileData's), extended
// attributes, and statfs.
#include <fcntl.h>

#include "core/fs/namespace.h"
#include "core/fs/ns_txn.h"

namespace snapfs {

// ---- attributes ----

Result<Inode> Namespace::ChangeAttrs(uint64_t ino, const SetAttrRequest& req, int64_t now) {
  Inode out;
  RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&mu_);
    NsTxn t(*this);
    ASSIGN_OR_RETURN(Inode * n, t.Get(ino));
    if (req.set_mode) n->mode = (n->mode & S_IFMT) | (req.mode & 07777);
    if (req.set_uid) n->uid = req.uid;
    if (req.set_gid) n->gid = req.gid;
    if (req.set_atime) n->atime_ns = req.atime_now ? now : req.atime_ns;
    if (req.set_mtime) n->mtime_ns = req.mtime_now ? now : req.mtime_ns;
    n->ctime_ns = req.set_ctime ? req.ctime_ns : now;
    out = *n;
    return t.Commit();
  }));
  return out;
}

// ---- xattrs ----

Status Namespace::CheckXattrName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("empty xattr name");
  if (name.size() > 255) return Status::Range("xattr name too long");
  // POSIX ACLs would need enforcement we do not do: say so rather than store them inertly.
  if (name.starts_with("system.")) return Status::NotSupported("system.* xattrs");
  return Status::OK();
}

Result<std::string> Namespace::GetXattr(uint64_t ino, std::string_view name) {
  RETURN_IF_ERROR(CheckXattrName(name));
  ASSIGN_OR_RETURN(auto node, LoadInode(ino));
  std::string v;
  Status s = meta_.Get(Cf::kXattrs, keys::Xattr(ino, name), &v);
  if (s.Is(Code::kNotFound)) return Status::NoData();
  RETURN_IF_ERROR(s);
  return v;
}

Status Namespace::SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags) {
  RETURN_IF_ERROR(CheckXattrName(name));
  if (value.size() > kXattrValueMax) return Status::Range("xattr value too large");
  if ((flags & kXattrCreate) && (flags & kXattrReplace)) return Status::InvalidArgument();
  if (ino >= kViewInoBase) return Status::ReadOnly("snapshot views are read-only");
  if (name.starts_with(kXattrPrefix)) return Status::Permission("snapfs attributes are computed");
  return ChangeXattr(ino, name, [&](kv::Txn& t, bool had) -> Status {
    if ((flags & kXattrCreate) && had) return Status::AlreadyExists();
    if ((flags & kXattrReplace) && !had) return Status::NoData();
    t.Put(Cf::kXattrs, keys::Xattr(ino, name), value);
    return Status::OK();
  });
}

Status Namespace::ChangeXattr(uint64_t ino, std::string_view name,
                              const std::function<Status(kv::Txn&, bool had)>& change) {
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&mu_);
    NsTxn t(*this);
    ASSIGN_OR_RETURN(Inode * node, t.Get(ino));
    ASSIGN_OR_RETURN(bool ro, snap_->IsHiddenInode(&t, *node));
    if (ro) return Status::ReadOnly("deleted; kept read-only for snapshots");
    std::string old;
    Status s = t.kv().Get(Cf::kXattrs, keys::Xattr(ino, name), &old);
    if (!s.ok() && !s.Is(Code::kNotFound)) return s;
    RETURN_IF_ERROR(change(t.kv(), s.ok()));
    node->ctime_ns = NowNs();
    return t.Commit();
  });
}

Result<std::vector<std::string>> Namespace::ListXattr(uint64_t ino) {
  ASSIGN_OR_RETURN(auto node, LoadInode(ino));
  std::vector<std::string> names;
  std::string prefix = keys::Ino(ino);
  auto it = meta_.NewIterator(Cf::kXattrs);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    names.emplace_back(it->key().data() + 8, it->key().size() - 8);
  }
  RETURN_IF_ERROR(it->status().WithContext("list xattrs"));
  return names;
}

Status Namespace::RemoveXattr(uint64_t ino, std::string_view name) {
  RETURN_IF_ERROR(CheckXattrName(name));
  if (ino >= kViewInoBase) return Status::ReadOnly("snapshot views are read-only");
  if (name.starts_with(kXattrPrefix)) return Status::Permission("snapfs attributes are computed");
  return ChangeXattr(ino, name, [&](kv::Txn& t, bool had) -> Status {
    if (!had) return Status::NoData();
    t.Delete(Cf::kXattrs, keys::Xattr(ino, name));
    return Status::OK();
  });
}

Result<FsStats> Namespace::StatFs() {
  ASSIGN_OR_RETURN(auto space, store_->backend().Space());
  FsStats s;
  s.blocks = space.total_bytes / s.block_size;
  s.blocks_free = space.free_bytes / s.block_size;
  // What writers can still use: the reserve kept for the metadata log is not theirs.
  s.blocks_avail = (store_->space_guard() ? SpaceGuard::Usable(space.free_bytes)
                                          : space.free_bytes) / s.block_size;
  s.files = 1ull << 32;
  std::string v;
  uint64_t used = kRootIno + 1;
  if (meta_.Get(Cf::kDefault, keys::kNextIno, &v).ok()) {
    if (auto n = kv::DecodeCounter(v); n.ok() && *n > 0) used = static_cast<uint64_t>(*n);
  }
  s.files_free = s.files - std::min<uint64_t>(s.files - 1, used);
  return s;
}

}  // namespace snapfs
