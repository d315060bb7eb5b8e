// Namespace: lookups, create, link, unlink, rmdir, readdir, users of an inode, and
// paths. Rename is in namespace_rename.cc, attributes and xattrs in namespace_attrs.cc,
// the end of an inode's life in inode_lifecycle.cc.
#include "core/fs/namespace.h"

#include <fcntl.h>

#include "base/coding.h"
#include "core/fs/ns_txn.h"

namespace snapfs {

namespace {

constexpr uint32_t kLinkMax = 65000;
constexpr size_t kSymlinkMax = 4095;

}  // namespace

Status Namespace::CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("invalid name");
  }
  if (name.size() > kNameMax) return Status::NameTooLong();
  return Status::OK();
}

Status Namespace::CheckChangeableName(uint64_t parent, std::string_view name) {
  RETURN_IF_ERROR(CheckName(name));
  if (parent >= kViewInoBase || (parent == kRootIno && name == kViewsName)) {
    return Status::ReadOnly("snapshot views are read-only");
  }
  return Status::OK();
}

Namespace::Namespace(Store* store) : store_(store), meta_(store->meta()) {}

// ---- metadata helpers ----

Result<Inode> Namespace::LoadInode(uint64_t ino) {
  if (purged_here_.Has(ino)) return Status::NotFound();
  std::string v;
  Status s = meta_.Get(Cf::kInodes, keys::Ino(ino), &v);
  if (s.Is(Code::kNotFound)) return Status::NotFound();
  RETURN_IF_ERROR(s);
  return Inode::Decode(ino, v);
}

Status Namespace::DecodeEntry(std::string_view v, Dentry* e) {
  ASSIGN_OR_RETURN(auto d, DentryValue::Decode(v));
  e->child = d.child;
  e->seq = d.seq;
  e->mode = d.mode;
  e->hidden = d.hidden;
  return Status::OK();
}

Status Namespace::LookupEntry(uint64_t parent, std::string_view name, Dentry* e) {
  std::string v;
  RETURN_IF_ERROR(meta_.Get(Cf::kDentries, keys::Dentry(parent, name), &v));
  return DecodeEntry(v, e);
}

Result<uint64_t> Namespace::AllocIno() {
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

void Namespace::AddEntry(kv::Txn& t, Inode* dir, std::string_view name, const Inode& child) {
  uint64_t seq = dir->next_seq++;
  t.Put(Cf::kDentries, keys::Dentry(dir->ino, name),
        DentryValue{child.ino, seq, child.mode, false}.Encode());
  t.Put(Cf::kDirIndex, keys::DirIndex(dir->ino, seq),
        DirIndexValue::Encode(child.ino, child.mode, name));
}

void Namespace::RemoveEntry(kv::Txn& t, uint64_t parent, std::string_view name, uint64_t seq) {
  t.Delete(Cf::kDentries, keys::Dentry(parent, name));
  t.Delete(Cf::kDirIndex, keys::DirIndex(parent, seq));
}

// ---- lookups ----

Result<Dentry> Namespace::Lookup(uint64_t parent, std::string_view name) {
  if (name == ".") return Dentry{parent, 0, S_IFDIR, false};
  if (name == "..") {
    ASSIGN_OR_RETURN(auto p, LoadInode(parent));
    if (!p.is_dir()) return Status::NotDirectory();
    return Dentry{p.parent, 0, S_IFDIR, false};
  }
  Dentry e;
  Status s = LookupEntry(parent, name, &e);
  if (s.Is(Code::kNotFound)) {
    if (known_dirs_.Has(parent)) return s;
    auto p = LoadInode(parent);
    if (p.ok() && !p->is_dir()) return Status::NotDirectory();
    if (p.ok()) known_dirs_.Add(parent);
    return s;
  }
  RETURN_IF_ERROR(s);
  return e;
}

// ---- creating ----

Result<Inode> Namespace::MakeNode(uint64_t parent, std::string_view name, Inode node) {
  RETURN_IF_ERROR(CheckName(name));
  if (parent >= kViewInoBase) return Status::ReadOnly("snapshot views are read-only");
  if (parent == kRootIno && name == kViewsName) return Status::AlreadyExists();
  const Inode proto = node;
  RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
    node = proto;
    MutexLock l(&mu_);
    NsTxn t(*this);
    return MakeNodeInTxn(&t, parent, name, &node);
  }));
  return node;
}

Result<Inode> Namespace::MakeRoomForEntry(NsTxn* t, uint64_t parent, std::string_view name) {
  // The folder and the name are read below whatever happens: in one round trip where
  // the engine has round trips (a create on a shared store, docs/scale-out.md).
  RETURN_IF_ERROR(t->kv().Prefetch(
      {{Cf::kInodes, keys::Ino(parent)}, {Cf::kDentries, keys::Dentry(parent, name)}}));
  ASSIGN_OR_RETURN(auto dir, t->Load(parent));
  if (!dir.is_dir()) return Status::NotDirectory();
  if (dir.nlink == 0) return Status::NotFound("folder was removed");
  // A deleted folder kept for snapshots comes back when something is created in it.
  RETURN_IF_ERROR(snap_->ResurrectDir(t, parent));
  Dentry old;
  Status s = t->Lookup(parent, name, &old);
  if (s.ok() && !old.hidden) return Status::AlreadyExists();
  if (!s.ok() && !s.Is(Code::kNotFound)) return s;
  if (s.ok()) {
    // A new entry replaces a hidden one; snapshots keep reaching its data by inode.
    RETURN_IF_ERROR(snap_->DropHiddenEntry(t, parent, name, old.child));
  }
  return t->Load(parent);  // as the steps above left it
}

Status Namespace::MakeNodeInTxn(NsTxn* tp, uint64_t parent, std::string_view name, Inode* np) {
  NsTxn& t = *tp;
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
  RETURN_IF_ERROR(snap_->CollapseHiddenDirs(&t));
  RETURN_IF_ERROR(t.Commit());
  known_dirs_.Add(parent);
  if (node.is_dir()) known_dirs_.Add(node.ino);
  return Status::OK();
}

void Namespace::InoSet::Add(uint64_t ino) {
  MutexLock l(&mu_);
  if (set_.size() >= kMax) set_.clear();
  set_.insert(ino);
}

bool Namespace::InoSet::Has(uint64_t ino) {
  MutexLock l(&mu_);
  return set_.count(ino) != 0;
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

Result<Inode> Namespace::Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                               const Caller& who) {
  uint32_t type = mode & S_IFMT;
  if (type == 0) type = S_IFREG;
  if (type == S_IFDIR || type == S_IFLNK) return Status::InvalidArgument("mknod of dir/symlink");
  Inode n = NewInode(type | (mode & 07777), who);
  n.rdev = rdev;
  return MakeNode(parent, name, n);
}

Result<Inode> Namespace::Mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                               const Caller& who) {
  Inode n = NewInode(S_IFDIR | (mode & 07777), who);
  n.nlink = 2;
  return MakeNode(parent, name, n);
}

Result<Inode> Namespace::Symlink(std::string_view target, uint64_t parent, std::string_view name,
                                 const Caller& who) {
  if (target.empty()) return Status::NotFound("empty symlink target");
  if (target.size() > kSymlinkMax) return Status::NameTooLong("symlink target too long");
  Inode n = NewInode(S_IFLNK | 0777, who);
  n.target = std::string(target);
  n.size = target.size();
  return MakeNode(parent, name, n);
}

Result<std::string> Namespace::Readlink(uint64_t ino) {
  ASSIGN_OR_RETURN(auto n, LoadInode(ino));
  if (!n.is_symlink()) return Status::InvalidArgument("not a symlink");
  return n.target;
}

Status Namespace::Link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  RETURN_IF_ERROR(CheckName(new_name));
  if (ino >= kViewInoBase || new_parent >= kViewInoBase) {
    return Status::ReadOnly("snapshot views are read-only");
  }
  if (new_parent == kRootIno && new_name == kViewsName) return Status::AlreadyExists();
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&mu_);
    NsTxn t(*this);
    return LinkInTxn(&t, ino, new_parent, new_name);
  });
}

Status Namespace::LinkInTxn(NsTxn* tp, uint64_t ino, uint64_t new_parent,
                            std::string_view new_name) {
  NsTxn& t = *tp;
  ASSIGN_OR_RETURN(auto node, t.Load(ino));
  if (node.is_dir()) return Status::Permission("hard link to a folder");
  if (node.nlink == 0) return Status::NotFound("file was removed");
  if (node.nlink >= kLinkMax) return Status::TooManyLinks();
  ASSIGN_OR_RETURN(bool ro, snap_->IsHiddenInode(&t, node));
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
  RETURN_IF_ERROR(snap_->CollapseHiddenDirs(&t));
  return t.Commit();
}

// ---- removing ----

Status Namespace::Unlink(uint64_t parent, std::string_view name) {
  RETURN_IF_ERROR(CheckChangeableName(parent, name));
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&mu_);
    NsTxn t(*this);
    // The name and its folder are read below whatever happens: one round trip on a
    // shared store (as MakeRoomForEntry's).
    RETURN_IF_ERROR(t.kv().Prefetch(
        {{Cf::kDentries, keys::Dentry(parent, name)}, {Cf::kInodes, keys::Ino(parent)}}));
    Dentry e;
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
    RETURN_IF_ERROR(snap_->UnlinkInTxn(&t, parent, name, e, nullptr));
    RETURN_IF_ERROR(snap_->CollapseHiddenDirs(&t));
    return t.Commit();
  });
}

Status Namespace::Rmdir(uint64_t parent, std::string_view name) {
  if (name == ".") return Status::InvalidArgument();
  if (name == "..") return Status::NotEmpty();
  RETURN_IF_ERROR(CheckChangeableName(parent, name));
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&mu_);
    NsTxn t(*this);
    return RmdirInTxn(&t, parent, name);
  });
}

Status Namespace::RmdirInTxn(NsTxn* tp, uint64_t parent, std::string_view name) {
  NsTxn& t = *tp;
  Dentry e;
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
    RETURN_IF_ERROR(snap_->HideEntry(&t, parent, name, e));
  } else {
    RemoveEntry(t.kv(), parent, name, e.seq);
    dir->nlink--;
    ASSIGN_OR_RETURN(Inode * node, t.Get(e.child));
    RETURN_IF_ERROR(DropLink(&t, node, dir->mtime_ns));
  }
  return t.Commit();
}

// ---- listing ----

Status Namespace::ReadDir(uint64_t ino, uint64_t cookie,
                          const std::function<bool(const DirEntry&)>& emit) {
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

void Namespace::Ref(uint64_t ino, uint64_t n, bool open) {
  MutexLock l(&users_mu_);
  users_[ino] += n;
  if (open) opens_[ino] += n;
}

void Namespace::Unref(uint64_t ino, uint64_t n, bool open) {
  // Drops n from `m`; true when that took the count to zero.
  auto drop = [&](std::unordered_map<uint64_t, uint64_t>& m) {
    auto it = m.find(ino);
    if (it == m.end()) return false;
    it->second = it->second > n ? it->second - n : 0;
    if (it->second != 0) return false;
    m.erase(it);
    return true;
  };
  bool last = false;
  {
    MutexLock l(&users_mu_);
    last = drop(users_);
    // The last handle of a file the kernel still knows: only one unlinked while open
    // here can need a purge now. Any other close must not cost a read (a database round
    // trip on a shared store).
    if (open && drop(opens_) && orphaned_here_.count(ino) != 0) last = true;
  }
  if (last) MaybePurgeUnused(ino);
}

// ---- paths ----

Result<std::string> Namespace::PathOf(uint64_t dir,
                                      std::unordered_map<uint64_t, std::string>* memo) {
  std::vector<std::pair<uint64_t, std::string>> parts;  // from `dir` up
  uint64_t ino = dir;
  std::string path;  // of the folder the walk stopped at: the root, or one in `memo`
  for (int depth = 0; ino != kRootIno; depth++) {
    if (memo) {
      auto m = memo->find(ino);
      if (m != memo->end()) {
        path = m->second;
        break;
      }
    }
    if (depth > 4096) return Status::Loop("folder tree too deep");
    ASSIGN_OR_RETURN(auto n, LoadInode(ino));
    if (!n.is_dir()) return Status::NotDirectory();
    std::string name = n.name;
    Dentry e;
    if (name.empty() || !LookupEntry(n.parent, name, &e).ok() || e.child != ino) {
      // A folder from before names were kept, or one that was replaced: look for it.
      name.clear();
      std::string prefix = keys::Ino(n.parent);
      auto it = meta_.NewIterator(Cf::kDentries);
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        auto d = DentryValue::Decode(it->value());
        if (d.ok() && d->child == ino) {
          ASSIGN_OR_RETURN(auto k, keys::DecodeDentry(it->key()));
          name.assign(k.name);
          break;
        }
      }
      if (name.empty()) name = "?";  // detached: replaced while it held hidden entries
    }
    parts.emplace_back(ino, std::move(name));
    ino = n.parent;
  }
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!path.empty()) path.push_back('/');
    path += it->second;
    if (memo) memo->emplace(it->first, path);
  }
  return path;
}
Result<uint64_t> Namespace::ResolvePath(std::string_view rel) {
  return WalkPath(
      rel, [&](uint64_t parent, std::string_view name, Dentry* e) { return LookupEntry(parent, name, e); },
      [&](uint64_t ino) { return LoadInode(ino); });
}

Result<uint64_t> Namespace::WalkPath(
    std::string_view rel, const std::function<Status(uint64_t, std::string_view, Dentry*)>& lookup,
    const std::function<Result<Inode>(uint64_t)>& load) {
  uint64_t ino = kRootIno;
  size_t i = 0;
  while (i < rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string_view::npos) j = rel.size();
    std::string_view part = rel.substr(i, j - i);
    i = j + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      ASSIGN_OR_RETURN(auto n, load(ino));
      ino = n.parent;
      continue;
    }
    Dentry e;
    RETURN_IF_ERROR(lookup(ino, part, &e).WithContext(std::string(rel)));
    ino = e.child;
  }
  return ino;
}
Result<bool> Namespace::DirHasEntries(NsTxn* t, uint64_t dir) {
  std::string prefix = keys::Ino(dir);
  // Bounded to this folder's keys: past them lie the tombstones of every entry removed
  // since the last compaction (a deep tree removed bottom up: one per level, so each
  // unbounded seek walked all of them and rmdir got linear in the depth).
  auto it = t->kv().NewBoundedIterator(Cf::kDentries, keys::Ino(dir + 1));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (!t->gone_dentries.count(std::string(it->key()))) return true;
  }
  RETURN_IF_ERROR(it->status().WithContext("scan folder"));
  return false;
}
}  // namespace snapfs
