// SnapshotQueries: read-only answers about snapshots (snapshot_queries.h).
#include "core/snap/snapshot_queries.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "base/coding.h"
#include "core/fs/file_data.h"
#include "core/fs/namespace.h"
#include "core/fs/ns_txn.h"
#include "core/snap/marker_scan.h"
#include "core/snap/snapshot_record.h"

namespace snapfs {

SnapshotQueries::SnapshotQueries(Store* store, Namespace* ns, FileData* data)
    : meta_(store->meta()), chunks_(store->chunks()), ns_(ns), data_(data) {}

// A snapshot's record (its key in kSnapshots is `dir`) as a SnapshotInfo without its path.
static Result<SnapshotInfo> InfoOf(uint64_t dir, std::string_view v) {
  ASSIGN_OR_RETURN(auto r, SnapshotRecord::Decode(v));
  SnapshotInfo info;
  info.dir = dir;
  info.marker = r.marker;
  info.marker_name = r.marker_name;
  info.completed_ns = r.completed_ns;
  info.pins = r.pins;
  return info;
}

Result<SnapshotInfo> SnapshotQueries::LoadSnapshot(uint64_t dir, NsTxn* t) {
  std::string v;
  Status s = t ? t->kv().Get(Cf::kSnapshots, keys::Ino(dir), &v)
               : meta_.Get(Cf::kSnapshots, keys::Ino(dir), &v);
  if (s.Is(Code::kNotFound)) return Status::NotFound("not a snapshot (no committed marker)");
  RETURN_IF_ERROR(s);
  return InfoOf(dir, v);
}
Result<std::vector<std::pair<uint64_t, std::string>>> SnapshotQueries::PinsOf(uint64_t dir,
                                                                              NsTxn* t) {
  std::vector<std::pair<uint64_t, std::string>> pins;
  std::string prefix = keys::Ino(dir);
  std::unique_ptr<kv::Iterator> own;
  kv::Iterator* it = t ? t->It(Cf::kPins) : (own = meta_.engine().NewIterator(Cf::kPins)).get();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    pins.emplace_back(GetBE64(it->key().data() + 8), std::string(it->value()));
  }
  RETURN_IF_ERROR(it->status().WithContext("scan pins"));
  return pins;
}
Result<SnapshotInfo> SnapshotQueries::SnapshotOfMarker(uint64_t ino) {
  std::string v;
  RETURN_IF_ERROR(meta_.Get(Cf::kDefault, keys::MarkerIndex(ino), &v));
  if (v.size() != 8)
    return Status::Corruption("marker index value of inode " + std::to_string(ino));
  ASSIGN_OR_RETURN(auto snap, LoadSnapshot(GetBE64(v.data())));
  if (snap.marker != ino) return Status::NotFound("not the snapshot's marker");
  return snap;
}

Result<SnapshotInfo> SnapshotQueries::GetSnapshot(uint64_t dir) {
  ASSIGN_OR_RETURN(auto info, LoadSnapshot(dir));
  ASSIGN_OR_RETURN(info.path, ns_->PathOf(dir));
  return info;
}

Result<std::vector<SnapshotInfo>> SnapshotQueries::ListSnapshots(uint64_t under) {
  std::string prefix;
  if (under != kRootIno) {
    ASSIGN_OR_RETURN(prefix, ns_->PathOf(under));
  }
  std::vector<SnapshotInfo> out;
  // The record is the one the scan found (no second read), and the paths of the
  // snapshots' parents are read once for all of them (on a shared store, ~3 round trips
  // a snapshot fewer: `snapfs ls`, `du`, `prune`).
  std::unordered_map<uint64_t, std::string> paths;
  auto it = meta_.NewIterator(Cf::kSnapshots);
  for (it->Seek(""); it->Valid(); it->Next()) {
    auto info = InfoOf(GetBE64(it->key().data()), it->value());
    if (!info.ok()) continue;
    auto path = ns_->PathOf(info->dir, &paths);
    if (!path.ok()) continue;  // its folder went meanwhile
    info->path = std::move(*path);
    if (!prefix.empty() && info->path != prefix && !info->path.starts_with(prefix + "/")) continue;
    out.push_back(std::move(*info));
  }
  RETURN_IF_ERROR(it->status().WithContext("scan snapshots"));
  std::sort(out.begin(), out.end(),
            [](const SnapshotInfo& a, const SnapshotInfo& b) { return a.path < b.path; });
  return out;
}

Status SnapshotQueries::ForEachListed(
    uint64_t dir, const std::function<Status(uint64_t, uint32_t, std::string_view)>& fn) {
  std::string key = keys::Ino(dir);
  auto it = meta_.NewIterator(Cf::kDirIndex);
  for (it->Seek(key); it->Valid() && it->key().starts_with(key); it->Next()) {
    ASSIGN_OR_RETURN(auto di, DirIndexValue::Decode(it->value()));
    RETURN_IF_ERROR(fn(di.child, di.mode, di.name));
  }
  return it->status().WithContext("scan folder");
}

Status SnapshotQueries::OwnFiles(uint64_t dir, const std::string& prefix,
                                 std::vector<std::pair<std::string, uint64_t>>* out) {
  return ForEachListed(dir, [&](uint64_t child, uint32_t mode, std::string_view name) {
    std::string path = prefix + std::string(name);
    if (S_ISDIR(mode)) return OwnFiles(child, path + "/", out);
    if (S_ISREG(mode)) out->emplace_back(std::move(path), child);
    return Status::OK();
  });
}

Result<std::vector<ViewFile>> SnapshotQueries::SnapshotFiles(uint64_t dir) {
  ASSIGN_OR_RETURN(auto snap, LoadSnapshot(dir));
  std::vector<std::pair<std::string, uint64_t>> files;
  files.emplace_back(snap.marker_name, snap.marker);
  ASSIGN_OR_RETURN(auto pins, PinsOf(dir));
  for (auto& [ino, v] : pins) {
    files.emplace_back(PinValue::Decode(v).view_path, ino);
  }
  RETURN_IF_ERROR(OwnFiles(dir, "", &files));
  std::vector<std::pair<std::string, uint64_t>> kept;
  std::unordered_set<std::string> paths;
  std::unordered_set<uint64_t> inos;
  for (auto& [path, ino] : files) {
    if (!paths.insert(path).second || !inos.insert(ino).second) continue;
    kept.emplace_back(std::move(path), ino);
  }
  // The inodes in one batched read (a round trip per file on PostgreSQL otherwise).
  std::vector<std::string> keys;
  keys.reserve(kept.size());
  for (const auto& f : kept) keys.push_back(keys::Ino(f.second));
  std::vector<std::optional<std::string>> values;
  RETURN_IF_ERROR(meta_.engine().MultiGet(Cf::kInodes, keys, &values).WithContext("read inodes"));
  std::vector<ViewFile> out;
  for (size_t i = 0; i < kept.size(); i++) {
    if (!values[i]) continue;  // gone meanwhile
    auto node = Inode::Decode(kept[i].second, *values[i]);
    if (!node.ok()) continue;  // fsck names it; a listing shows the rest
    out.push_back(ViewFile{std::move(kept[i].first), kept[i].second, node->size, node->nlink});
  }
  std::sort(out.begin(), out.end(),
            [](const ViewFile& a, const ViewFile& b) { return a.path < b.path; });
  return out;
}

namespace {
// The chunks a group's files hold, counted as their extents are read.
struct ChunkCounts {
  std::unordered_map<ChunkId, uint32_t, ChunkIdHash> distinct;  // id -> length
  // Chunks of the files that go with the group: id -> (references from them, length).
  std::unordered_map<ChunkId, std::pair<int64_t, uint32_t>, ChunkIdHash> freed;
  void Add(const ExtentValue& e, bool of_freed_file) {
    distinct.emplace(e.id, e.length);
    if (!of_freed_file) return;
    auto& c = freed[e.id];
    c.first++;
    c.second = e.length;
  }
};
}  // namespace

// What measuring one group of snapshots finds before the refcounts are read (Settle).
struct SnapshotQueries::Tally {
  SnapshotUsage u;     // files and logical; exclusive and shared once settled
  uint64_t total = 0;  // bytes of the distinct chunks the group's files hold
  // The chunks of the files that go with the group: references from those files, length.
  std::vector<std::tuple<ChunkId, int64_t, uint32_t>> freed;
  // Takes what the group's extents counted: total and freed (the maps go).
  void Take(ChunkCounts&& c) {
    for (const auto& [id, len] : c.distinct) total += len;
    freed.reserve(freed.size() + c.freed.size());
    for (const auto& [id, n] : c.freed) freed.emplace_back(id, n.first, n.second);
    c = ChunkCounts();
  }
};

// All the groups of one MeasureEach together (`snapfs du`'s total), counted in the same
// pass: each file once, freed when no snapshot outside all of them pins it.
struct SnapshotQueries::Together {
  std::unordered_set<uint64_t> set;   // every group's folders
  std::unordered_set<uint64_t> seen;  // files counted
  Tally t;
  ChunkCounts chunks;
};

Status SnapshotQueries::TallyGroup(const std::vector<uint64_t>& dirs, kv::Iterator* pinned,
                                   kv::Iterator* extents, Tally* t, Together* all) {
  std::unordered_set<uint64_t> set(dirs.begin(), dirs.end());
  // Every file of a view is the marker, a referenced file or one of the folder's own:
  // all go with the snapshots unless another snapshot pins them or another name links them.
  std::vector<ViewFile> view;
  std::unordered_set<uint64_t> seen;
  for (uint64_t dir : dirs) {
    ASSIGN_OR_RETURN(auto files, SnapshotFiles(dir));
    for (auto& f : files) {
      if (seen.insert(f.ino).second) view.push_back(std::move(f));
    }
  }
  // In inode order: a checkpoint's files were made together, so their pins and extents
  // lie together and the seeks below read neighbouring blocks.
  std::sort(view.begin(), view.end(), [](const ViewFile& a, const ViewFile& b) { return a.ino < b.ino; });
  ChunkCounts chunks;
  for (const auto& f : view) {
    t->u.files++;
    t->u.logical += f.size;
    const bool first_in_all = all && all->seen.insert(f.ino).second;
    if (first_in_all) {
      all->t.u.files++;
      all->t.u.logical += f.size;
    }
    const std::string prefix = keys::Ino(f.ino);
    bool other_pin = false, outside_all = false;
    for (pinned->Seek(prefix); pinned->Valid() && pinned->key().starts_with(prefix); pinned->Next()) {
      const uint64_t by = GetBE64(pinned->key().data() + 8);
      if (!set.count(by)) other_pin = true;
      if (all && !all->set.count(by)) outside_all = true;
    }
    RETURN_IF_ERROR(pinned->status().WithContext("scan pins"));
    const bool is_freed = !other_pin && f.nlink <= 1;
    const bool freed_with_all = first_in_all && !outside_all && f.nlink <= 1;
    for (extents->Seek(prefix); extents->Valid() && extents->key().starts_with(prefix);
         extents->Next()) {
      ASSIGN_OR_RETURN(auto e, ExtentValue::Decode(extents->value()));
      chunks.Add(e, is_freed);
      if (first_in_all) all->chunks.Add(e, freed_with_all);
    }
    RETURN_IF_ERROR(extents->status().WithContext("scan extents"));
  }
  t->Take(std::move(chunks));
  return Status::OK();
}

Status SnapshotQueries::Settle(std::vector<Tally>* tallies) {
  // A chunk goes with a group if the group's freed files hold all its references. The
  // refcounts are keyed by hash, so one read each would be a random read (a disk read
  // once the store outgrows the block cache: finding 22); read in chunk order instead,
  // all groups' chunks in one batched sweep.
  std::vector<ChunkId> ids;
  for (const auto& t : *tallies) {
    for (const auto& f : t.freed) ids.push_back(std::get<0>(f));
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ASSIGN_OR_RETURN(auto refs, meta_.RefCounts(ids));
  for (auto& t : *tallies) {
    for (const auto& [id, held, len] : t.freed) {
      const size_t i = static_cast<size_t>(std::lower_bound(ids.begin(), ids.end(), id) - ids.begin());
      if (refs[i] <= held) t.u.exclusive += len;
    }
    t.u.shared = t.total > t.u.exclusive ? t.total - t.u.exclusive : 0;
    std::vector<std::tuple<ChunkId, int64_t, uint32_t>>().swap(t.freed);
  }
  return Status::OK();
}

Result<SnapshotUsage> SnapshotQueries::MeasureSnapshots(const std::vector<uint64_t>& dirs) {
  auto pinned = meta_.NewIterator(Cf::kPinned);
  auto extents = meta_.NewIterator(Cf::kExtents);
  std::vector<Tally> t(1);
  RETURN_IF_ERROR(TallyGroup(dirs, pinned.get(), extents.get(), &t[0], nullptr));
  RETURN_IF_ERROR(Settle(&t));
  return t[0].u;
}

Result<std::vector<std::optional<SnapshotUsage>>> SnapshotQueries::MeasureEach(
    const std::vector<uint64_t>& dirs, SnapshotUsage* together) {
  // Groups are settled together once their chunks reach this many (about 40 bytes each
  // held meanwhile): one sorted sweep of the refcounts per batch, not a read per chunk.
  constexpr size_t kChunksPerSettle = size_t{1} << 18;
  std::vector<std::optional<SnapshotUsage>> out(dirs.size());
  std::vector<Tally> pending;
  std::vector<size_t> at;
  size_t chunks = 0;
  auto settle = [&]() -> Status {
    RETURN_IF_ERROR(Settle(&pending));
    for (size_t j = 0; j < pending.size(); j++) out[at[j]] = pending[j].u;
    pending.clear();
    at.clear();
    chunks = 0;
    return Status::OK();
  };
  std::unique_ptr<Together> all;
  if (together) {
    all = std::make_unique<Together>();
    all->set.insert(dirs.begin(), dirs.end());
  }
  auto pinned = meta_.NewIterator(Cf::kPinned);
  auto extents = meta_.NewIterator(Cf::kExtents);
  for (size_t i = 0; i < dirs.size(); i++) {
    Tally t;
    Status s = TallyGroup({dirs[i]}, pinned.get(), extents.get(), &t, all.get());
    if (s.Is(Code::kNotFound)) continue;  // not a snapshot (ended meanwhile): left empty
    RETURN_IF_ERROR(s);
    chunks += t.freed.size();
    pending.push_back(std::move(t));
    at.push_back(i);
    if (chunks >= kChunksPerSettle) {
      RETURN_IF_ERROR(settle());
      // Fresh iterators: RocksDB's pin the state they were made at.
      pinned = meta_.NewIterator(Cf::kPinned);
      extents = meta_.NewIterator(Cf::kExtents);
    }
  }
  RETURN_IF_ERROR(settle());
  if (all) {
    // A snapshot that ended meanwhile is in all->set but contributed no file: as if it
    // had not been asked (its files, if any are left, are pinned by nothing of it).
    all->t.Take(std::move(all->chunks));
    std::vector<Tally> t(1);
    t[0] = std::move(all->t);
    all.reset();
    RETURN_IF_ERROR(Settle(&t));
    *together = t[0].u;
  }
  return out;
}

Result<std::vector<PinInfo>> SnapshotQueries::WhyPinned(uint64_t ino) {
  std::vector<PinInfo> out;
  std::string prefix = keys::Ino(ino);
  auto it = meta_.NewIterator(Cf::kPinned);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    uint64_t dir = GetBE64(it->key().data() + 8);
    auto snap = GetSnapshot(dir);
    if (!snap.ok()) continue;
    PinInfo p;
    p.snapshot = std::move(*snap);
    std::string v;
    if (meta_.Get(Cf::kPins, keys::Pair(dir, ino), &v).ok())
      p.view_path = PinValue::Decode(v).view_path;
    out.push_back(std::move(p));
  }
  RETURN_IF_ERROR(it->status().WithContext("scan pins"));
  return out;
}

Result<std::vector<HiddenEntry>> SnapshotQueries::ListHidden() {
  std::vector<HiddenEntry> out;
  auto it = meta_.NewIterator(Cf::kHidden);
  for (it->Seek(""); it->Valid(); it->Next()) {
    HiddenEntry h;
    h.ino = GetBE64(it->key().data());
    uint64_t parent = GetBE64(it->key().data() + 8);
    std::string name(it->key().data() + 16, it->key().size() - 16);
    auto ppath = ns_->PathOf(parent);
    std::string pp = ppath.ok() ? *ppath : "?";
    h.path = pp.empty() ? name : pp + "/" + name;
    auto node = ns_->LoadInode(h.ino);
    if (node.ok()) {
      h.is_dir = node->is_dir();
      h.size = node->is_reg() ? node->size : 0;
    }
    ASSIGN_OR_RETURN(auto why, WhyPinned(h.ino));
    for (auto& p : why) h.pinned_by.push_back(p.snapshot.path);
    out.push_back(std::move(h));
  }
  RETURN_IF_ERROR(it->status().WithContext("scan hidden"));
  std::sort(out.begin(), out.end(),
            [](const HiddenEntry& a, const HiddenEntry& b) { return a.path < b.path; });
  return out;
}

Result<std::vector<InodeLocation>> SnapshotQueries::LocateInodes(
    const std::vector<uint64_t>& inos) {
  std::unordered_map<uint64_t, size_t> at;
  std::vector<InodeLocation> out;
  for (uint64_t ino : inos) {
    if (at.emplace(ino, out.size()).second) out.push_back(InodeLocation{ino, {}, {}, {}});
  }
  // Nothing to place (fsck of a store without damaged chunks asks with none): the scans
  // below read every entry and every snapshot's files, a third of fsck's time on a store
  // of 1,000,000 files (docs/reliability.md, "Scale").
  if (out.empty()) return out;
  // Hidden folders above a name make it hidden too; folders are asked once each.
  std::unordered_map<uint64_t, bool> dir_hidden{{kRootIno, false}};
  std::function<bool(uint64_t)> under_hidden = [&](uint64_t dir) -> bool {
    auto c = dir_hidden.find(dir);
    if (c != dir_hidden.end()) return c->second;
    bool hidden = true;  // a folder we cannot place is detached: reached only by snapshots
    auto n = ns_->LoadInode(dir);
    Dentry e;
    if (n.ok() && !n->name.empty() && ns_->LookupEntry(n->parent, n->name, &e).ok() &&
        e.child == dir) {
      dir_hidden[dir] = true;  // a loop in a broken tree ends here
      hidden = e.hidden || under_hidden(n->parent);
    }
    dir_hidden[dir] = hidden;
    return hidden;
  };
  auto it = meta_.NewIterator(Cf::kDentries);
  for (it->Seek(""); it->Valid(); it->Next()) {
    Dentry e;
    if (!Namespace::DecodeEntry(it->value(), &e).ok()) continue;
    auto a = at.find(e.child);
    if (a == at.end()) continue;
    uint64_t parent = GetBE64(it->key().data());
    std::string name(it->key().data() + 8, it->key().size() - 8);
    auto ppath = ns_->PathOf(parent);
    std::string pp = ppath.ok() ? *ppath : "?";
    out[a->second].names.push_back(
        FileName{pp.empty() ? name : pp + "/" + name, e.hidden || under_hidden(parent)});
  }
  RETURN_IF_ERROR(it->status().WithContext("scan entries"));
  ASSIGN_OR_RETURN(auto snaps, ListSnapshots());
  for (const auto& s : snaps) {
    auto files = SnapshotFiles(s.dir);
    if (!files.ok()) continue;  // ended meanwhile
    for (const auto& f : *files) {
      auto a = at.find(f.ino);
      if (a == at.end()) continue;
      out[a->second].snapshots.push_back(s.path);
      out[a->second].view_paths.push_back(s.path.empty() ? f.path : s.path + "/" + f.path);
    }
  }
  for (auto& l : out) {
    std::sort(l.names.begin(), l.names.end(),
              [](const FileName& a, const FileName& b) { return a.path < b.path; });
  }
  return out;
}

Result<std::vector<OrphanFile>> SnapshotQueries::FindOrphans(uint64_t under,
                                                             int64_t older_than_ns) {
  std::vector<OrphanFile> out;
  int64_t cutoff = NowNs() - older_than_ns;
  ASSIGN_OR_RETURN(std::string base, ns_->PathOf(under));
  std::vector<std::pair<uint64_t, std::string>> stack{{under, base}};
  while (!stack.empty()) {
    const uint64_t dir = stack.back().first;
    const std::string path = std::move(stack.back().second);
    stack.pop_back();
    // Everything in a snapshot folder belongs to that snapshot.
    if (LoadSnapshot(dir).ok()) continue;
    RETURN_IF_ERROR(
        ForEachListed(dir, [&](uint64_t child, uint32_t mode, std::string_view name) -> Status {
          std::string cpath = path.empty() ? std::string(name) : path + "/" + std::string(name);
          if (S_ISDIR(mode)) {
            stack.emplace_back(child, cpath);
            return Status::OK();
          }
          if (!S_ISREG(mode)) return Status::OK();
          auto node = ns_->LoadInode(child);
          if (!node.ok() || node->mtime_ns > cutoff) return Status::OK();
          std::string pk = keys::Ino(child);
          auto pit = meta_.NewIterator(Cf::kPinned);
          pit->Seek(pk);
          if (pit->Valid() && pit->key().starts_with(pk)) return Status::OK();
          out.push_back(
              OrphanFile{cpath, dir, std::string(name), child, node->size, node->mtime_ns});
          return Status::OK();
        }));
  }
  std::sort(out.begin(), out.end(),
            [](const OrphanFile& a, const OrphanFile& b) { return a.path < b.path; });
  return out;
}

}  // namespace snapfs
