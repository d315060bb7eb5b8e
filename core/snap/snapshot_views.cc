#include "core/snap/snapshot_views.h"

#include <sys/stat.h>

#include <vector>

#include "base/coding.h"
#include "core/fs/file_data.h"
#include "core/fs/namespace.h"
#include "core/meta/meta_store.h"
#include "core/snap/snapshot_queries.h"

namespace snapfs {

SnapshotViews::SnapshotViews(Store* store, Namespace* ns, FileData* data,
                             SnapshotQueries* queries)
    : meta_(store->meta()), ns_(ns), data_(data), queries_(queries) {}

namespace {
// A view rebuilds when snapshots change, and at least this often (own files of a
// snapshot folder may change without any snapshot changing).
constexpr int64_t kTreeTtlNs = 2'000'000'000;

std::string Join(const std::string& a, std::string_view b) {
  return a.empty() ? std::string(b) : a + "/" + std::string(b);
}
}  // namespace

uint64_t SnapshotViews::IdOf(const ViewNode& n) {
  auto key = std::make_tuple(n.snap, n.path, n.real);
  auto it = ids_.find(key);
  if (it != ids_.end()) return it->second;
  uint64_t id = next_id_++;
  ids_.emplace(key, id);
  nodes_.emplace(id, n);
  return id;
}

Result<ViewNode> SnapshotViews::Node(uint64_t ino) {
  if (ino == kViewInoBase) return ViewNode{};
  MutexLock l(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return Status::NotFound("stale snapshot view node");
  return it->second;
}

Result<std::map<std::string, uint64_t>> SnapshotViews::SnapshotPaths() {
  std::map<std::string, uint64_t> out;
  ASSIGN_OR_RETURN(auto snaps, queries_->ListSnapshots());
  for (auto& s : snaps) {
    if (!s.path.empty() && !s.path.starts_with("?")) out.emplace(s.path, s.dir);
  }
  return out;
}

Result<const SnapshotViews::Tree*> SnapshotViews::TreeOf(uint64_t snap) {
  uint64_t gen = ns_->snapshot_gen();
  int64_t now = NowNs();
  auto it = trees_.find(snap);
  if (it != trees_.end() && it->second.gen == gen && now - it->second.built_ns < kTreeTtlNs) {
    return &it->second;
  }
  ASSIGN_OR_RETURN(auto files, queries_->SnapshotFiles(snap));
  Tree t;
  t.gen = gen;
  t.built_ns = now;
  t.dirs.insert("");
  for (auto& f : files) {
    t.files.emplace(f.path, f.ino);
    for (size_t slash = f.path.find('/'); slash != std::string::npos;
         slash = f.path.find('/', slash + 1)) {
      t.dirs.insert(f.path.substr(0, slash));
    }
  }
  auto& slot = trees_[snap];
  slot = std::move(t);
  return &slot;
}

Result<std::vector<SnapshotViews::Child>> SnapshotViews::Children(const ViewNode& n) {
  std::vector<Child> out;
  if (n.snap == 0) {
    ASSIGN_OR_RETURN(auto paths, SnapshotPaths());
    std::set<std::string> seen;
    std::string prefix = n.path.empty() ? "" : n.path + "/";
    for (auto& [path, dir] : paths) {
      if (!path.starts_with(prefix)) continue;
      std::string rest = path.substr(prefix.size());
      std::string name = rest.substr(0, rest.find('/'));
      if (name.empty() || !seen.insert(name).second) continue;
      Child c;
      c.name = name;
      std::string full = Join(n.path, name);
      if (auto s = paths.find(full); s != paths.end()) {
        c.node = ViewNode{s->second, "", 0};
      } else {
        c.node = ViewNode{0, full, 0};
      }
      out.push_back(std::move(c));
    }
    return out;
  }
  MutexLock l(&mu_);
  ASSIGN_OR_RETURN(const Tree* t, TreeOf(n.snap));
  if (!t->dirs.count(n.path)) return Status::NotFound("gone from the snapshot view");
  std::string prefix = n.path.empty() ? "" : n.path + "/";
  std::set<std::string> seen;
  auto add = [&](const std::string& full, bool is_dir, uint64_t real) {
    if (!full.starts_with(prefix) || full == n.path) return;
    std::string rest = full.substr(prefix.size());
    if (rest.empty() || rest.find('/') != std::string::npos) return;
    if (!seen.insert(rest).second) return;
    out.push_back(Child{rest, ViewNode{n.snap, full, real}, is_dir});
  };
  for (auto it = t->dirs.lower_bound(prefix); it != t->dirs.end() && it->starts_with(prefix); ++it) {
    add(*it, true, 0);
  }
  for (auto it = t->files.lower_bound(prefix); it != t->files.end() && it->first.starts_with(prefix);
       ++it) {
    add(it->first, false, it->second);
  }
  return out;
}

Result<Attr> SnapshotViews::AttrOf(uint64_t ino, const ViewNode& n, bool is_dir) {
  if (!is_dir) {
    ASSIGN_OR_RETURN(auto node, ns_->LoadInode(n.real));
    Attr a = data_->ToAttr(node);
    a.ino = ino;
    a.mode &= ~static_cast<uint32_t>(0222);
    a.nlink = 1;
    return a;
  }
  ASSIGN_OR_RETURN(auto node, ns_->LoadInode(n.snap ? n.snap : kRootIno));
  Attr a;
  a.ino = ino;
  a.nlink = 2;
  a.atime_ns = a.mtime_ns = a.ctime_ns = node.mtime_ns;
  // Permissions and owner: the real folder's (with allow_other, the kernel checks them).
  if (uint64_t real = RealDirOf(n); real != (n.snap ? n.snap : kRootIno)) {
    ASSIGN_OR_RETURN(node, ns_->LoadInode(real));
  }
  a.mode = S_IFDIR | (node.mode & 0555);
  a.uid = node.uid;
  a.gid = node.gid;
  if (n.snap) {
    if (auto snap = queries_->LoadSnapshot(n.snap); snap.ok()) {
      a.atime_ns = a.mtime_ns = a.ctime_ns = snap->completed_ns;
    }
  }
  return a;
}

uint64_t SnapshotViews::RealDirOf(const ViewNode& n) {
  // The folder at `rel` below `from`, following folders only; 0 if there is none.
  auto walk = [this](uint64_t from, std::string_view rel) -> uint64_t {
    uint64_t ino = from;
    for (size_t i = 0; ino && i <= rel.size();) {
      size_t j = rel.find('/', i);
      if (j == std::string_view::npos) j = rel.size();
      Dentry e;
      if (j > i) {
        if (!ns_->LookupEntry(ino, rel.substr(i, j - i), &e).ok() || !S_ISDIR(e.mode)) return 0;
        ino = e.child;
      }
      i = j + 1;
    }
    return ino;
  };
  if (n.snap == 0) {
    uint64_t d = walk(kRootIno, n.path);
    return d ? d : kRootIno;
  }
  // Inside a snapshot's view: the folder of the snapshot itself, else of its job folder
  // (shared/, taskowned/), else of the mount (_other_jobs/<path>); a folder that is gone
  // takes the snapshot folder's.
  if (n.path.empty()) return n.snap;
  if (uint64_t d = walk(n.snap, n.path)) return d;
  if (auto snap = ns_->LoadInode(n.snap); snap.ok() && snap->parent) {
    if (uint64_t d = walk(snap->parent, n.path)) return d;
  }
  std::string other = std::string(kOtherJobsDir) + "/";
  if (n.path.starts_with(other)) {
    if (uint64_t d = walk(kRootIno, std::string_view(n.path).substr(other.size()))) return d;
  }
  return n.snap;
}

Result<Attr> SnapshotViews::Root() { return AttrOf(kViewInoBase, ViewNode{}, true); }

Result<Attr> SnapshotViews::Lookup(uint64_t parent, std::string_view name) {
  ASSIGN_OR_RETURN(auto p, Node(parent));
  if (p.real) return Status::NotDirectory();
  if (name == ".") return GetAttr(parent);
  if (name == "..") {
    if (parent == kViewInoBase) {
      ASSIGN_OR_RETURN(auto root, ns_->LoadInode(kRootIno));
      return data_->ToAttr(root);
    }
    // The view's folders are never moved; going up recomputes the parent node.
    ViewNode up;
    if (p.snap && !p.path.empty()) {
      size_t slash = p.path.rfind('/');
      up = ViewNode{p.snap, slash == std::string::npos ? "" : p.path.substr(0, slash), 0};
    } else {
      std::string full = p.path;
      if (p.snap) {
        ASSIGN_OR_RETURN(full, ns_->PathOf(p.snap));
      }
      size_t slash = full.rfind('/');
      if (slash == std::string::npos) return Root();
      up = ViewNode{0, full.substr(0, slash), 0};
    }
    uint64_t id;
    {
      MutexLock l(&mu_);
      id = IdOf(up);
    }
    return AttrOf(id, up, true);
  }
  ASSIGN_OR_RETURN(auto children, Children(p));
  for (auto& c : children) {
    if (c.name != name) continue;
    uint64_t id;
    {
      MutexLock l(&mu_);
      id = IdOf(c.node);
    }
    return AttrOf(id, c.node, c.is_dir);
  }
  return Status::NotFound();
}

Result<Attr> SnapshotViews::GetAttr(uint64_t ino) {
  ASSIGN_OR_RETURN(auto n, Node(ino));
  if (n.snap) {
    // Gone with its snapshot.
    if (!queries_->LoadSnapshot(n.snap).ok()) return Status::NotFound("snapshot was removed");
  }
  return AttrOf(ino, n, n.real == 0);
}

Status SnapshotViews::ReadDir(uint64_t ino, uint64_t cookie,
                                  const std::function<bool(const DirEntry&)>& emit) {
  ASSIGN_OR_RETURN(auto n, Node(ino));
  if (n.real) return Status::NotDirectory();
  if (cookie == 0 && !emit(DirEntry{".", ino, S_IFDIR, 1})) return Status::OK();
  if (cookie <= 1 && !emit(DirEntry{"..", ino == kViewInoBase ? kRootIno : ino, S_IFDIR, 2})) {
    return Status::OK();
  }
  ASSIGN_OR_RETURN(auto children, Children(n));
  // Cookies are positions in the sorted child list (it changes only with snapshots).
  for (uint64_t i = cookie <= 2 ? 0 : cookie - 2; i < children.size(); i++) {
    auto& c = children[i];
    uint64_t id;
    {
      MutexLock l(&mu_);
      id = IdOf(c.node);
    }
    if (!emit(DirEntry{c.name, id, c.is_dir ? uint32_t{S_IFDIR} : uint32_t{S_IFREG}, i + 3})) break;
  }
  return Status::OK();
}

Result<uint64_t> SnapshotViews::RealInode(uint64_t ino) {
  ASSIGN_OR_RETURN(auto n, Node(ino));
  if (n.snap && !queries_->LoadSnapshot(n.snap).ok()) return Status::NotFound("snapshot was removed");
  return n.real;
}

Result<std::string> SnapshotViews::FileXattr(uint64_t ino, std::string_view key) {
  ASSIGN_OR_RETURN(auto node, ns_->LoadInode(ino));
  if (key == "pinned_by") {
    ASSIGN_OR_RETURN(auto why, queries_->WhyPinned(ino));
    std::string v;
    for (auto& p : why) v += p.snapshot.path + "\n";
    return v;
  }
  if (node.is_dir()) {
    auto snap = queries_->LoadSnapshot(ino);
    if (!snap.ok()) return Status::NoData();
    if (key == "marker") return snap->marker_name;
    ASSIGN_OR_RETURN(auto u, queries_->MeasureSnapshots({ino}));
    if (key == "logical_bytes") return std::to_string(u.logical);
    if (key == "exclusive_bytes") return std::to_string(u.exclusive);
    if (key == "shared_bytes") return std::to_string(u.shared);
    if (key == "files") return std::to_string(u.files);
    return Status::NoData();
  }
  if (!node.is_reg()) return Status::NoData();
  if (key != "chunks" && key != "exclusive_bytes") return Status::NoData();
  // Count this file's references to each chunk; a chunk is its alone when no other
  // extent anywhere points at it.
  std::unordered_map<ChunkId, std::pair<int64_t, uint32_t>, ChunkIdHash> uses;
  uint64_t chunks = 0;
  std::string prefix = keys::Ino(ino);
  auto it = meta_.NewIterator(Cf::kExtents);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    ASSIGN_OR_RETURN(auto e, ExtentValue::Decode(it->value()));
    auto& u = uses[e.id];
    u.first++;
    u.second = e.length;
    chunks++;
  }
  RETURN_IF_ERROR(it->status().WithContext("scan extents"));
  if (key == "chunks") return std::to_string(chunks);
  // The refcounts in one batch (a round trip per 256 chunks on a shared store, not one
  // per chunk of the file).
  std::vector<ChunkId> ids;
  ids.reserve(uses.size());
  for (const auto& [id, u] : uses) ids.push_back(id);
  ASSIGN_OR_RETURN(auto refs, meta_.RefCounts(ids));
  uint64_t alone = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    const auto& u = uses[ids[i]];
    if (refs[i] <= u.first) alone += u.second;
  }
  return std::to_string(alone);
}

Result<std::string> SnapshotViews::GetXattr(uint64_t ino, std::string_view name) {
  std::string_view key = name;
  bool ours = key.starts_with(kXattrPrefix);
  if (ours) key.remove_prefix(std::string_view(kXattrPrefix).size());
  if (ino < kViewInoBase) return FileXattr(ino, key);
  if (!ours) return Status::NoData();
  ASSIGN_OR_RETURN(auto n, Node(ino));
  if (n.real) return FileXattr(n.real, key);
  if (n.snap && n.path.empty()) return FileXattr(n.snap, key);
  return Status::NoData();
}

}  // namespace snapfs
