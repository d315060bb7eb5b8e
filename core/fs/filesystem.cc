// Filesystem: namespace operations. File data lives in filesystem_data.cc.
#include "core/fs/filesystem.h"

#include <fcntl.h>

#include <set>

#include "base/coding.h"
#include "core/fs/extent_map.h"
#include "core/fs/ns_txn.h"
#include "core/fs/open_file.h"
#include "core/snap/snapshot_views.h"

namespace snapfs {

namespace {

constexpr uint32_t kLinkMax = 65000;
constexpr size_t kSymlinkMax = 4095;

Status CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("invalid name");
  }
  if (name.size() > kNameMax) return Status::NameTooLong();
  return Status::OK();
}

}  // namespace

Filesystem::Filesystem(Store* store)
    : store_(store),
      meta_(store->meta()),
      chunks_(store->chunks()),
      chunker_(store->config().chunker) {
  std::string names = store->config().marker_names;
  for (size_t i = 0; i <= names.size();) {
    size_t j = names.find(',', i);
    if (j == std::string::npos) j = names.size();
    std::string n = names.substr(i, j - i);
    while (!n.empty() && n.front() == ' ') n.erase(0, 1);
    while (!n.empty() && n.back() == ' ') n.pop_back();
    if (!n.empty()) marker_names_.push_back(n);
    i = j + 1;
  }
  views_ = std::make_unique<Views>(this);
}

Filesystem::~Filesystem() { (void)FlushAll(); }

Result<std::unique_ptr<Filesystem>> Filesystem::Open(Store* store) {
  std::unique_ptr<Filesystem> fs(new Filesystem(store));
  {
    MutexLock l(&fs->ns_mu_);  // nobody else has it yet; the analysis wants it held
    std::string v;
    Status ms = fs->meta_.Get(Cf::kDefault, kMountPointsKey, &v);
    if (ms.ok()) {
      for (size_t i = 0; i < v.size();) {
        size_t j = v.find('\n', i);
        if (j == std::string::npos) j = v.size();
        if (j > i) fs->mount_points_.push_back(v.substr(i, j - i));
        i = j + 1;
      }
    } else if (!ms.Is(Code::kNotFound)) {
      return ms;
    }
  }
  RETURN_IF_ERROR(fs->PurgeDeadOrphans().status());
  return fs;
}

Result<size_t> Filesystem::PurgeDeadOrphans() {
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
      MutexLock l(&ns_mu_);
      Txn t(this);
      RETURN_IF_ERROR(PurgeIfUnused(&t, ino));
      return t.Commit();
    }));
  }
  return orphans.size();
}

// ---- metadata helpers ----

Result<Inode> Filesystem::LoadInode(uint64_t ino) {
  std::string v;
  Status s = meta_.Get(Cf::kInodes, keys::Ino(ino), &v);
  if (s.Is(Code::kNotFound)) return Status::NotFound();
  RETURN_IF_ERROR(s);
  return Inode::Decode(ino, v);
}

Status Filesystem::DecodeEntry(std::string_view v, Entry* e) {
  ASSIGN_OR_RETURN(auto d, DentryValue::Decode(v));
  e->child = d.child;
  e->seq = d.seq;
  e->mode = d.mode;
  e->hidden = d.hidden;
  return Status::OK();
}

Status Filesystem::LookupEntry(uint64_t parent, std::string_view name, Entry* e) {
  std::string v;
  RETURN_IF_ERROR(meta_.Get(Cf::kDentries, keys::Dentry(parent, name), &v));
  return DecodeEntry(v, e);
}

Status Filesystem::LookupEntry(uint64_t parent, std::string_view name, uint64_t* child,
                               uint64_t* seq, uint32_t* mode, bool* hidden) {
  Entry e;
  RETURN_IF_ERROR(LookupEntry(parent, name, &e));
  *child = e.child;
  if (seq) *seq = e.seq;
  if (mode) *mode = e.mode;
  if (hidden) *hidden = e.hidden;
  return Status::OK();
}

Result<uint64_t> Filesystem::AllocIno() {
  MutexLock l(&ino_mu_);
  if (next_ino_ == ino_limit_) {
    // A range of numbers is reserved in its own small transaction, so that creates do
    // not all read and write one counter (every create would conflict with every other,
    // in this daemon and in any other on the store). Numbers reserved and not used when
    // the process ends are skipped, never reused.
    uint64_t start = 0;
    RETURN_IF_ERROR(kv::RunTxn(meta_.engine(), [&](kv::Txn& t) -> Status {
      ASSIGN_OR_RETURN(int64_t next, t.GetCounter(Cf::kDefault, keys::kNextIno));
      if (next < static_cast<int64_t>(kRootIno) + 1) {
        return Status::Corruption("next inode counter is " + std::to_string(next));
      }
      start = static_cast<uint64_t>(next);
      t.Put(Cf::kDefault, keys::kNextIno, kv::EncodeCounter(next + kInoBatch));
      return Status::OK();
    }).WithContext("reserve inode numbers"));
    next_ino_ = start;
    ino_limit_ = start + kInoBatch;
  }
  return next_ino_++;
}

void Filesystem::AddEntry(kv::Txn& t, Inode* dir, std::string_view name, const Inode& child) {
  uint64_t seq = dir->next_seq++;
  t.Put(Cf::kDentries, keys::Dentry(dir->ino, name),
        DentryValue{child.ino, seq, child.mode, false}.Encode());
  t.Put(Cf::kDirIndex, keys::DirIndex(dir->ino, seq),
        DirIndexValue::Encode(child.ino, child.mode, name));
}

void Filesystem::RemoveEntry(kv::Txn& t, uint64_t parent, std::string_view name, uint64_t seq) {
  t.Delete(Cf::kDentries, keys::Dentry(parent, name));
  t.Delete(Cf::kDirIndex, keys::DirIndex(parent, seq));
}

bool Filesystem::InUse(uint64_t ino) {
  MutexLock l(&files_mu_);
  auto it = refs_.find(ino);
  return it != refs_.end() && it->second > 0;
}

Status Filesystem::DropLink(Txn* t, Inode* ino, int64_t now) {
  if (ino->is_dir()) {
    ino->nlink = 0;
  } else if (ino->nlink > 0) {
    ino->nlink--;
  }
  ino->ctime_ns = now;
  t->Put(*ino);
  if (ino->nlink > 0) return Status::OK();
  return PurgeIfUnused(t, ino->ino);
}

Status Filesystem::PurgeIfUnused(Txn* t, uint64_t ino) {
  auto node = t->Get(ino);
  if (!node.ok()) return node.status().Is(Code::kNotFound) ? Status::OK() : node.status();
  if ((*node)->nlink > 0) return Status::OK();
  ASSIGN_OR_RETURN(bool pinned, IsPinned(t, ino));
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
  if (InUse(ino)) {
    // Open or known to the kernel: purged when the last user lets go, or at the next
    // start after a crash.
    // A shared store records whose it is (PurgeDeadOrphans).
    (void)t->kv().Put(Cf::kOrphans, keys::Ino(ino),
                      store_->shared() ? EncodeBE64(store_->session_id()) : std::string());
    return Status::OK();
  }
  return PurgeInode(t, ino);
}

Status Filesystem::PurgeInode(Txn* t, uint64_t ino) {
  t->Purged(ino);
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

void Filesystem::MaybePurgeUnused(uint64_t ino) {
  if (ino >= kViewInoBase) return;
  (void)kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    if (InUse(ino)) return Status::OK();
    // Most releases are of files that still have a name. That is decided on the
    // committed inode, read without a transaction: the transaction below commits nothing
    // in that case either, so its read would guard nothing, and an unlink that commits
    // after this read (it takes ns_mu_) finds the file unused and purges it itself.
    if (auto committed = LoadInode(ino);
        committed.status().Is(Code::kNotFound) || (committed.ok() && committed->nlink > 0)) {
      return Status::OK();
    }
    Txn t(this);
    auto node = t.Get(ino);
    if (!node.ok() || (*node)->nlink > 0) return Status::OK();
    RETURN_IF_ERROR(PurgeIfUnused(&t, ino));
    return t.Commit();
  });
}

Attr Filesystem::ToAttr(const Inode& i) {
  Attr a;
  a.ino = i.ino;
  a.mode = i.mode;
  a.nlink = i.nlink;
  a.uid = i.uid;
  a.gid = i.gid;
  a.rdev = i.rdev;
  a.size = i.size;
  a.atime_ns = i.atime_ns;
  a.mtime_ns = i.mtime_ns;
  a.ctime_ns = i.ctime_ns;
  a.generation = std::max<uint32_t>(1, i.generation);
  uint64_t allocated = i.allocated;
  if (i.is_reg()) {
    if (auto f = FindOpenFile(i.ino)) {
      std::shared_lock l(f->mu);
      if (f->loaded) {
        a.size = f->size;
        if (f->attr_dirty) a.mtime_ns = a.ctime_ns = f->mtime_ns;
        allocated += f->dirty_bytes;
      }
    }
  } else if (i.is_symlink()) {
    a.size = i.target.size();
  }
  a.blocks = (allocated + 511) / 512;
  return a;
}

// ---- lookups ----

Result<Attr> Filesystem::Lookup(uint64_t parent, std::string_view name) {
  if (name.size() > kNameMax) return Status::NameTooLong();
  if (parent >= kViewInoBase) return views_->Lookup(parent, name);
  if (parent == kRootIno && name == kViewsName) return views_->Root();
  if (name == ".") return GetAttr(parent);
  if (name == "..") {
    ASSIGN_OR_RETURN(auto p, LoadInode(parent));
    if (!p.is_dir()) return Status::NotDirectory();
    return GetAttr(p.parent);
  }
  Entry e;
  Status s = LookupEntry(parent, name, &e);
  if (s.Is(Code::kNotFound)) {
    auto p = LoadInode(parent);
    if (p.ok() && !p->is_dir()) return Status::NotDirectory();
    return s;
  }
  RETURN_IF_ERROR(s);
  ASSIGN_OR_RETURN(auto a, GetAttr(e.child));
  a.hidden = e.hidden;
  return a;
}

Result<Attr> Filesystem::GetAttr(uint64_t ino) {
  if (ino >= kViewInoBase) return views_->GetAttr(ino);
  ASSIGN_OR_RETURN(auto node, LoadInode(ino));
  return ToAttr(node);
}

// ---- creating ----

Result<Attr> Filesystem::MakeNode(uint64_t parent, std::string_view name, Inode node) {
  RETURN_IF_ERROR(CheckName(name));
  if (parent >= kViewInoBase) return Status::ReadOnly("snapshot views are read-only");
  if (parent == kRootIno && name == kViewsName) return Status::AlreadyExists();
  const Inode proto = node;
  RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
    node = proto;
    MutexLock l(&ns_mu_);
    Txn t(this);
    return MakeNodeInTxn(&t, parent, name, &node);
  }));
  return ToAttr(node);
}

Result<Inode> Filesystem::MakeRoomForEntry(Txn* t, uint64_t parent, std::string_view name) {
  ASSIGN_OR_RETURN(auto dir, t->Load(parent));
  if (!dir.is_dir()) return Status::NotDirectory();
  if (dir.nlink == 0) return Status::NotFound("folder was removed");
  // A deleted folder kept for snapshots comes back when something is created in it.
  RETURN_IF_ERROR(ResurrectDir(t, parent));
  Entry old;
  Status s = t->Lookup(parent, name, &old);
  if (s.ok() && !old.hidden) return Status::AlreadyExists();
  if (!s.ok() && !s.Is(Code::kNotFound)) return s;
  if (s.ok()) {
    // A new entry replaces a hidden one; snapshots keep reaching its data by inode.
    RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, old.child));
  }
  return t->Load(parent);  // as the steps above left it
}

Status Filesystem::MakeNodeInTxn(Txn* tp, uint64_t parent, std::string_view name, Inode* np) {
  Txn& t = *tp;
  Inode& node = *np;
  ASSIGN_OR_RETURN(Inode dir, MakeRoomForEntry(&t, parent, name));
  ASSIGN_OR_RETURN(node.ino, AllocIno());
  if (dir.mode & S_ISGID) {
    // BSD group semantics in a setgid folder, as Linux filesystems do.
    node.gid = dir.gid;
    if (node.is_dir()) node.mode |= S_ISGID;
  }
  if (node.is_dir()) {
    node.parent = parent;
    node.name = std::string(name);
    if (dir.nlink >= kLinkMax) return Status::TooManyLinks();
    dir.nlink++;
  }
  AddEntry(t.kv(), &dir, name, node);
  dir.mtime_ns = dir.ctime_ns = node.ctime_ns;
  t.Put(dir);
  t.Put(node);
  RETURN_IF_ERROR(CollapseHiddenDirs(&t));
  return t.Commit();
}

namespace {
Inode NewInode(uint32_t mode, const Caller& who) {
  Inode n;
  n.mode = mode;
  n.uid = who.uid;
  n.gid = who.gid;
  n.nlink = 1;
  n.atime_ns = n.mtime_ns = n.ctime_ns = n.btime_ns = NowNs();
  return n;
}
}  // namespace

Result<Attr> Filesystem::Mknod(uint64_t parent, std::string_view name, uint32_t mode,
                               uint64_t rdev, const Caller& who) {
  uint32_t type = mode & S_IFMT;
  if (type == 0) type = S_IFREG;
  if (type == S_IFDIR || type == S_IFLNK) return Status::InvalidArgument("mknod of dir/symlink");
  Inode n = NewInode(type | (mode & 07777), who);
  n.rdev = rdev;
  return MakeNode(parent, name, n);
}

Result<Attr> Filesystem::Mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                               const Caller& who) {
  Inode n = NewInode(S_IFDIR | (mode & 07777), who);
  n.nlink = 2;
  return MakeNode(parent, name, n);
}

Result<Attr> Filesystem::Symlink(std::string_view target, uint64_t parent, std::string_view name,
                                 const Caller& who) {
  if (target.empty()) return Status::NotFound("empty symlink target");
  if (target.size() > kSymlinkMax) return Status::NameTooLong("symlink target too long");
  Inode n = NewInode(S_IFLNK | 0777, who);
  n.target = std::string(target);
  n.size = target.size();
  return MakeNode(parent, name, n);
}

Result<std::string> Filesystem::Readlink(uint64_t ino) {
  ASSIGN_OR_RETURN(auto n, LoadInode(ino));
  if (!n.is_symlink()) return Status::InvalidArgument("not a symlink");
  return n.target;
}

Result<Attr> Filesystem::Link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  RETURN_IF_ERROR(LinkLocked(ino, new_parent, new_name));
  return GetAttr(ino);  // outside ns_mu_: ToAttr may take OpenFile::mu
}

Status Filesystem::LinkLocked(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  RETURN_IF_ERROR(CheckName(new_name));
  if (ino >= kViewInoBase || new_parent >= kViewInoBase) {
    return Status::ReadOnly("snapshot views are read-only");
  }
  if (new_parent == kRootIno && new_name == kViewsName) return Status::AlreadyExists();
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    Txn t(this);
    return LinkInTxn(&t, ino, new_parent, new_name);
  });
}

Status Filesystem::LinkInTxn(Txn* tp, uint64_t ino, uint64_t new_parent,
                             std::string_view new_name) {
  Txn& t = *tp;
  ASSIGN_OR_RETURN(auto node, t.Load(ino));
  if (node.is_dir()) return Status::Permission("hard link to a folder");
  if (node.nlink == 0) return Status::NotFound("file was removed");
  if (node.nlink >= kLinkMax) return Status::TooManyLinks();
  ASSIGN_OR_RETURN(bool ro, IsHiddenInode(&t, node));
  if (ro) return Status::ReadOnly("file was deleted; kept read-only for snapshots");
  ASSIGN_OR_RETURN(Inode dir, MakeRoomForEntry(&t, new_parent, new_name));
  ASSIGN_OR_RETURN(node, t.Load(ino));  // as making room left it
  int64_t now = NowNs();
  node.nlink++;
  node.ctime_ns = now;
  AddEntry(t.kv(), &dir, new_name, node);
  dir.mtime_ns = dir.ctime_ns = now;
  t.Put(dir);
  t.Put(node);
  RETURN_IF_ERROR(CollapseHiddenDirs(&t));
  return t.Commit();
}

// ---- removing ----

Status Filesystem::Unlink(uint64_t parent, std::string_view name) {
  RETURN_IF_ERROR(CheckName(name));
  if (parent >= kViewInoBase || (parent == kRootIno && name == kViewsName)) {
    return Status::ReadOnly("snapshot views are read-only");
  }
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    Txn t(this);
    Entry e;
    Status s = t.Lookup(parent, name, &e);
    if (s.Is(Code::kNotFound)) {
      auto p = t.Get(parent);
      if (p.ok() && !(*p)->is_dir()) return Status::NotDirectory();
    }
    RETURN_IF_ERROR(s);
    if (S_ISDIR(e.mode)) return Status::IsDirectory();
    if (e.hidden) return Status::NotFound("already deleted (kept hidden for snapshots)");
    ASSIGN_OR_RETURN(Inode * dir, t.Get(parent));
    dir->mtime_ns = dir->ctime_ns = NowNs();
    RETURN_IF_ERROR(UnlinkInTxn(&t, parent, name, e, nullptr));
    RETURN_IF_ERROR(CollapseHiddenDirs(&t));
    return t.Commit();
  });
}

Status Filesystem::Rmdir(uint64_t parent, std::string_view name) {
  if (name == ".") return Status::InvalidArgument();
  if (name == "..") return Status::NotEmpty();
  RETURN_IF_ERROR(CheckName(name));
  if (parent >= kViewInoBase || (parent == kRootIno && name == kViewsName)) {
    return Status::ReadOnly("snapshot views are read-only");
  }
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    Txn t(this);
    return RmdirInTxn(&t, parent, name);
  });
}

Status Filesystem::RmdirInTxn(Txn* tp, uint64_t parent, std::string_view name) {
  Txn& t = *tp;
  Entry e;
  RETURN_IF_ERROR(t.Lookup(parent, name, &e));
  if (!S_ISDIR(e.mode)) return Status::NotDirectory();
  if (e.hidden) return Status::NotFound("already deleted (kept hidden for snapshots)");
  // The folder's inode is the guard of its entries (every create or removal in it writes
  // the inode): reading it makes a racing create in it conflict with this removal.
  RETURN_IF_ERROR(t.Get(e.child).status());
  std::string prefix = keys::Ino(e.child);
  {
    auto* it = t.It(Cf::kDirIndex);
    it->Seek(prefix);
    if (it->Valid() && it->key().starts_with(prefix)) return Status::NotEmpty();
    RETURN_IF_ERROR(it->status().WithContext("scan folder"));
  }
  ASSIGN_OR_RETURN(Inode * dir, t.Get(parent));
  dir->mtime_ns = dir->ctime_ns = NowNs();
  ASSIGN_OR_RETURN(bool has_hidden, DirHasEntries(&t, e.child));
  if (has_hidden) {
    // Only hidden entries left: the folder goes from listings but stays resolvable.
    RETURN_IF_ERROR(HideEntry(&t, parent, name, e));
  } else {
    RemoveEntry(t.kv(), parent, name, e.seq);
    dir->nlink--;
    ASSIGN_OR_RETURN(Inode * node, t.Get(e.child));
    RETURN_IF_ERROR(DropLink(&t, node, dir->mtime_ns));
  }
  return t.Commit();
}

// ---- rename ----

Status Filesystem::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                          std::string_view new_name, unsigned flags) {
  if (flags & ~(kRenameNoReplace | kRenameExchange)) return Status::InvalidArgument("flags");
  if ((flags & kRenameNoReplace) && (flags & kRenameExchange)) {
    return Status::InvalidArgument("RENAME_NOREPLACE with RENAME_EXCHANGE");
  }
  RETURN_IF_ERROR(CheckName(name));
  RETURN_IF_ERROR(CheckName(new_name));
  if (parent >= kViewInoBase || new_parent >= kViewInoBase ||
      (parent == kRootIno && name == kViewsName) ||
      (new_parent == kRootIno && new_name == kViewsName)) {
    return Status::ReadOnly("snapshot views are read-only");
  }
  const bool exchange = flags & kRenameExchange;
  // A file landing on a marker name commits a snapshot: read it before taking ns_mu_
  // (reading takes the file's own lock, which comes first in the lock order).
  std::map<uint64_t, std::string> marker_bytes;
  auto preread = [&](uint64_t dir, std::string_view n) {
    Entry e;
    if (!LookupEntry(dir, n, &e).ok() || !S_ISREG(e.mode) || e.hidden) return;
    auto bytes = ReadMarkerBytes(e.child);
    if (bytes.ok()) marker_bytes[e.child] = std::move(*bytes);
  };
  if (IsMarkerName(new_name)) preread(parent, name);
  if (exchange && IsMarkerName(name)) preread(new_parent, new_name);

  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    Txn t(this);
    return RenameInTxn(&t, parent, name, new_parent, new_name, flags, marker_bytes);
  });
}

Status Filesystem::RenameInTxn(Txn* tp, uint64_t parent, std::string_view name,
                               uint64_t new_parent, std::string_view new_name, unsigned flags,
                               const std::map<uint64_t, std::string>& marker_bytes) {
  Txn& t = *tp;
  const bool exchange = flags & kRenameExchange;
  Entry se, de;
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
  RETURN_IF_ERROR(ResurrectDir(&t, new_parent));

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
    if (IsMarkerName(name)) {
      if (auto it = marker_bytes.find(dst); it != marker_bytes.end()) {
        RETURN_IF_ERROR(PrepareSnapshot(&t, parent, dst, name, it->second));
      }
    }
    if (IsMarkerName(new_name)) {
      if (auto it = marker_bytes.find(src); it != marker_bytes.end()) {
        RETURN_IF_ERROR(PrepareSnapshot(&t, new_parent, src, new_name, it->second));
      }
    }
    if (IsMarkerName(name)) RETURN_IF_ERROR(MarkerGone(&t, parent, name, src));
    if (IsMarkerName(new_name)) RETURN_IF_ERROR(MarkerGone(&t, new_parent, new_name, dst));
    RETURN_IF_ERROR(FinishSnapshots(&t));
    RETURN_IF_ERROR(CollapseHiddenDirs(&t));
    return t.Commit();
  }

  if (dst_exists && src == dst && !de.hidden) return Status::OK();  // two links: no-op
  if (S_ISDIR(se.mode)) {
    ASSIGN_OR_RETURN(bool loop, is_within(new_parent, src));
    if (loop) return Status::InvalidArgument("move a folder into itself");
  }
  if (dst_exists && de.hidden) {
    // The hidden entry makes way, as for any new entry of its name.
    RETURN_IF_ERROR(DropHiddenEntry(&t, new_parent, new_name, dst));
    dst_exists = false;
  }
  ASSIGN_OR_RETURN(Inode * old_dir, t.Get(parent));
  ASSIGN_OR_RETURN(Inode * new_dir, t.Get(new_parent));
  if (dst_exists && (flags & kRenameNoReplace)) return Status::AlreadyExists();
  if (IsMarkerName(new_name)) {
    // Resolved before the marker it replaces (if any) ends its snapshot.
    if (auto it = marker_bytes.find(src); it != marker_bytes.end()) {
      RETURN_IF_ERROR(PrepareSnapshot(&t, new_parent, src, new_name, it->second));
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
    if (IsMarkerName(new_name)) RETURN_IF_ERROR(MarkerGone(&t, new_parent, new_name, dst));
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
  if (IsMarkerName(name)) RETURN_IF_ERROR(MarkerGone(&t, parent, name, src));
  RETURN_IF_ERROR(FinishSnapshots(&t));
  RETURN_IF_ERROR(CollapseHiddenDirs(&t));
  return t.Commit();
}

// ---- listing ----

Status Filesystem::ReadDir(uint64_t ino, uint64_t cookie,
                           const std::function<bool(const DirEntry&)>& emit) {
  if (ino >= kViewInoBase) return views_->ReadDir(ino, cookie, emit);
  ASSIGN_OR_RETURN(auto dir, LoadInode(ino));
  if (!dir.is_dir()) return Status::NotDirectory();
  if (cookie == 0 && !emit(DirEntry{".", ino, S_IFDIR, 1})) return Status::OK();
  if (cookie <= 1 && !emit(DirEntry{"..", dir.parent, S_IFDIR, 2})) return Status::OK();
  uint64_t from = cookie <= 2 ? 0 : cookie - 2;
  std::string prefix = keys::Ino(ino);
  auto it = meta_.NewIterator(Cf::kDirIndex);
  for (it->Seek(keys::DirIndex(ino, from)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    DirEntry e;
    ASSIGN_OR_RETURN(auto di, DirIndexValue::Decode(it->value()));
    e.ino = di.child;
    e.mode = di.mode;
    e.name = std::string(di.name);
    e.cookie = GetBE64(it->key().data() + 8) + 3;
    if (!emit(e)) return Status::OK();
  }
  return it->status().WithContext("readdir");
}

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
  ASSIGN_OR_RETURN(auto node, LoadInode(ino));
  std::string v;
  Status s = meta_.Get(Cf::kXattrs, keys::Xattr(ino, name), &v);
  if (s.Is(Code::kNotFound)) return Status::NoData();
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

// ---- references ----

void Filesystem::Ref(uint64_t ino, uint64_t n) {
  MutexLock l(&files_mu_);
  refs_[ino] += n;
}

void Filesystem::Unref(uint64_t ino, uint64_t n) {
  bool last = false;
  {
    MutexLock l(&files_mu_);
    auto it = refs_.find(ino);
    if (it == refs_.end()) return;
    it->second = it->second > n ? it->second - n : 0;
    if (it->second == 0) {
      refs_.erase(it);
      last = true;
    }
  }
  if (last) MaybePurgeUnused(ino);
}

}  // namespace snapfs
