// Filesystem: namespace operations (lookup, create, link, unlink, rmdir, rename,
// readdir). File data lives in filesystem_data.cc, attributes in filesystem_attrs.cc,
// the end of an inode's life in inode_lifecycle.cc.
#include "core/fs/filesystem.h"

#include <fcntl.h>

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
    // Bounded, as in DirHasEntries: an unbounded seek walks the tombstones after it.
    auto it = t.kv().NewBoundedIterator(Cf::kDirIndex, keys::Ino(e.child + 1));
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
