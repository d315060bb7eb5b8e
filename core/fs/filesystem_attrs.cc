// Filesystem: attributes (setattr: mode, owner, size, times), extended attributes, and
// statfs.
#include <fcntl.h>

#include "base/coding.h"
#include "core/fs/filesystem.h"
#include "core/fs/ns_txn.h"
#include "core/fs/open_file.h"
#include "core/snap/snapshot_views.h"

namespace snapfs {

// ---- attributes ----

Result<Attr> Filesystem::SetAttr(uint64_t ino, const SetAttrRequest& req) {
  if (ino >= kViewInoBase) return Status::ReadOnly("snapshot views are read-only");
  ASSIGN_OR_RETURN(auto node, LoadInode(ino));
  {
    bool pinned;
    {
      MutexLock l(&ns_mu_);
      Txn t(this);  // reads only
      ASSIGN_OR_RETURN(bool ro, IsHiddenInode(&t, node));
      if (ro) return Status::ReadOnly("deleted; kept read-only for snapshots");
      ASSIGN_OR_RETURN(pinned, IsPinned(&t, ino));
    }
    // A truncate must not cut the bytes a snapshot references: they get a copy first.
    if (pinned && req.set_size && node.is_reg()) RETURN_IF_ERROR(DetachForSnapshots(ino));
  }
  std::shared_ptr<OpenFile> f;
  std::unique_lock<std::shared_mutex> fl;
  int64_t now = NowNs();
  if (node.is_reg()) {
    f = req.set_size ? OpenFileFor(ino) : FindOpenFile(ino);
    if (f) {
      fl = std::unique_lock(f->mu);
      // A truncate works on committed data. Other changes leave the buffer alone (the
      // kernel's writeback cache sets times in the middle of streamed writes, and a
      // flush there would cut a chunk at an arbitrary point).
      if (req.set_size) RETURN_IF_ERROR(FlushLocked(f.get(), /*all=*/true, /*sync=*/false));
    }
  }
  if (req.set_size) {
    if (node.is_dir()) return Status::IsDirectory();
    if (!node.is_reg()) return Status::InvalidArgument("truncate of a special file");
    if (req.size > kMaxFileSize) return Status::FileTooBig();
    RETURN_IF_ERROR(f->EnsureLoaded(meta_));
    if (!req.grow_only || req.size > f->size) RETURN_IF_ERROR(TruncateLocked(f.get(), req.size, now));
  }
  bool other = req.set_mode || req.set_uid || req.set_gid || req.set_atime || req.set_mtime ||
               req.set_ctime;
  if (other) {
    // Read and written in one transaction: a data commit of the same inode (size,
    // mtime) in between makes it conflict and run again, so neither change is lost.
    RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
      MutexLock l(&ns_mu_);
      Txn t(this);
      ASSIGN_OR_RETURN(Inode * n, t.Get(ino));
      if (req.set_mode) n->mode = (n->mode & S_IFMT) | (req.mode & 07777);
      if (req.set_uid) n->uid = req.uid;
      if (req.set_gid) n->gid = req.gid;
      if (req.set_atime) n->atime_ns = req.atime_now ? now : req.atime_ns;
      if (req.set_mtime) n->mtime_ns = req.mtime_now ? now : req.mtime_ns;
      n->ctime_ns = req.set_ctime ? req.ctime_ns : now;
      // The buffer's pending mtime must not overwrite an explicit one at the next flush.
      if (f && f->loaded && req.set_mtime) f->mtime_ns = n->mtime_ns;
      return t.Commit();
    }));
  }
  if (fl.owns_lock()) fl.unlock();
  return GetAttr(ino);
}

// ---- xattrs ----

namespace {
Status CheckXattrName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("empty xattr name");
  if (name.size() > 255) return Status::Range("xattr name too long");
  // POSIX ACLs would need enforcement we do not do: say so rather than store them inertly.
  if (name.starts_with("system.")) return Status::NotSupported("system.* xattrs");
  return Status::OK();
}
}  // namespace

Result<std::string> Filesystem::GetXattr(uint64_t ino, std::string_view name) {
  RETURN_IF_ERROR(CheckXattrName(name));
  if (ino >= kViewInoBase || name.starts_with(kXattrPrefix)) {
    return views_->GetXattr(ino, name);
  }
  // The kernel asks for security.capability before every write() (file_remove_privs;
  // a FUSE inode never gets S_NOSEC): ~100,000 asks per Flink checkpoint run, each two
  // metadata reads (two database transactions on a shared store, where it took more time
  // than the writes). While the file is open here the answer "absent" is remembered; our
  // own xattr changes forget it (xattr_gen), another host's are seen at the next open:
  // close-to-open, as for the file's data (docs/scale-out.md).
  std::shared_ptr<OpenFile> open;
  uint64_t gen = 0;
  if (name == kCapabilityXattr) {
    open = FindOpenFile(ino);
    if (open) {
      gen = open->xattr_gen.load();
      if (open->caps_absent_at.load() == gen + 1) return Status::NoData();
    }
  }
  ASSIGN_OR_RETURN(auto node, LoadInode(ino));
  std::string v;
  Status s = meta_.Get(Cf::kXattrs, keys::Xattr(ino, name), &v);
  if (s.Is(Code::kNotFound)) {
    if (open) open->caps_absent_at.store(gen + 1);
    return Status::NoData();
  }
  RETURN_IF_ERROR(s);
  return v;
}

Status Filesystem::SetXattr(uint64_t ino, std::string_view name, std::string_view value,
                            int flags) {
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

Status Filesystem::ChangeXattr(uint64_t ino, std::string_view name,
                               const std::function<Status(kv::Txn&, bool had)>& change) {
  // Whatever happens below, a remembered "no security.capability" is void afterwards.
  struct Forget {
    Filesystem* fs;
    uint64_t ino;
    ~Forget() {
      if (auto f = fs->FindOpenFile(ino)) f->xattr_gen.fetch_add(1);
    }
  } forget{this, ino};
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    Txn t(this);
    ASSIGN_OR_RETURN(Inode * node, t.Get(ino));
    ASSIGN_OR_RETURN(bool ro, IsHiddenInode(&t, *node));
    if (ro) return Status::ReadOnly("deleted; kept read-only for snapshots");
    std::string old;
    Status s = t.kv().Get(Cf::kXattrs, keys::Xattr(ino, name), &old);
    if (!s.ok() && !s.Is(Code::kNotFound)) return s;
    RETURN_IF_ERROR(change(t.kv(), s.ok()));
    node->ctime_ns = NowNs();
    return t.Commit();
  });
}

Result<std::vector<std::string>> Filesystem::ListXattr(uint64_t ino) {
  if (ino >= kViewInoBase) return std::vector<std::string>{};
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

Status Filesystem::RemoveXattr(uint64_t ino, std::string_view name) {
  RETURN_IF_ERROR(CheckXattrName(name));
  if (ino >= kViewInoBase) return Status::ReadOnly("snapshot views are read-only");
  if (name.starts_with(kXattrPrefix)) return Status::Permission("snapfs attributes are computed");
  return ChangeXattr(ino, name, [&](kv::Txn& t, bool had) -> Status {
    if (!had) return Status::NoData();
    t.Delete(Cf::kXattrs, keys::Xattr(ino, name));
    return Status::OK();
  });
}

Result<FsStats> Filesystem::StatFs() {
  ASSIGN_OR_RETURN(auto space, store_->backend().Space());
  FsStats s;
  s.blocks = space.total_bytes / s.block_size;
  s.blocks_free = s.blocks_avail = space.free_bytes / s.block_size;
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
