// SnapshotEngine: recognition, pins, deferred delete and copy-on-write
// (snapshot_engine.h). The removal of snapshots is in snapshot_removal.cc, the queries in
// snapshot_queries.cc, the /.snapshots/ views in snapshot_views.cc.
#include "core/snap/snapshot_engine.h"

#include <xxhash.h>

#include <algorithm>

#include "base/coding.h"
#include "base/log.h"
#include "core/fs/extent_map.h"
#include "core/fs/file_data.h"
#include "core/fs/ns_txn.h"
#include "core/snap/marker_scan.h"
#include "core/snap/snapshot_queries.h"
#include "core/snap/snapshot_record.h"

namespace snapfs {

SnapshotEngine::SnapshotEngine(Store* store, Namespace* ns, FileData* data,
                               SnapshotQueries* queries)
    : meta_(store->meta()), ns_(ns), data_(data), queries_(queries) {
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
}

bool SnapshotEngine::IsMarkerName(std::string_view name) const {
  return std::find(marker_names_.begin(), marker_names_.end(), name) != marker_names_.end();
}

Result<bool> SnapshotEngine::IsPinned(NsTxn* t, uint64_t ino) {
  auto np = t->new_pins.lower_bound({ino, 0});
  if (np != t->new_pins.end() && np->first == ino) return true;
  if (t->unpinned.count(ino)) return false;
  std::string prefix = keys::Ino(ino);
  // Bounded to this inode's keys: a snapshot removal deletes the pins of thousands of
  // files in this transaction, and an unbounded seek would walk all of them (kv.h).
  auto it = t->kv().NewBoundedIterator(Cf::kPinned, keys::Ino(ino + 1));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    uint64_t snap = GetBE64(it->key().data() + 8);
    if (!t->gone_pins.count({ino, snap})) return true;
  }
  RETURN_IF_ERROR(it->status().WithContext("scan pins"));
  t->unpinned.insert(ino);
  return false;
}

Result<std::vector<std::pair<uint64_t, std::string>>> SnapshotEngine::HiddenEntriesOf(
    NsTxn* t, uint64_t ino) {
  std::vector<std::pair<uint64_t, std::string>> entries;  // (parent, name)
  std::string prefix = keys::Ino(ino);
  // Bounded at the next inode: a create asks this of its folder, and an unbounded scan
  // would read (a page of) other folders' hidden entries past the end of this one's.
  auto it = t->kv().NewBoundedIterator(Cf::kHidden, keys::Ino(ino + 1));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (t->gone_hidden.count(std::string(it->key()))) continue;
    entries.emplace_back(GetBE64(it->key().data() + 8),
                         std::string(it->key().data() + 16, it->key().size() - 16));
  }
  RETURN_IF_ERROR(it->status().WithContext("scan hidden"));
  return entries;
}

Result<bool> SnapshotEngine::IsHiddenInode(NsTxn* t, const Inode& node) {
  ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, node.ino));
  if (entries.empty()) {
    // No name left at all (replaced or renamed over) but kept for a snapshot: its bytes
    // are the snapshot's, whoever still holds a descriptor.
    if (node.nlink > 0 || !node.is_reg()) return false;
    return IsPinned(t, node.ino);
  }
  return node.is_dir() || entries.size() >= node.nlink;
}

Status SnapshotEngine::HideEntry(NsTxn* t, uint64_t parent, std::string_view name,
                                 const Dentry& e) {
  (void)t->kv().Delete(Cf::kDirIndex, keys::DirIndex(parent, e.seq));
  (void)t->kv().Put(Cf::kDentries, keys::Dentry(parent, name),
                    DentryValue{e.child, e.seq, e.mode, true}.Encode());
  (void)t->kv().Put(Cf::kHidden, keys::Hidden(e.child, parent, name), "");
  t->snapshots_changed = true;
  t->touched.emplace_back(parent, std::string(name));
  if (S_ISDIR(e.mode)) {
    ASSIGN_OR_RETURN(Inode * d, t->Get(e.child));
    d->generation = std::max<uint32_t>(1, d->generation) + 1;
  }
  return Status::OK();
}

Status SnapshotEngine::UnhideEntry(NsTxn* t, uint64_t parent, std::string_view name,
                                   const Dentry& e) {
  (void)t->kv().Put(Cf::kDirIndex, keys::DirIndex(parent, e.seq),
                    DirIndexValue::Encode(e.child, e.mode, name));
  (void)t->kv().Put(Cf::kDentries, keys::Dentry(parent, name),
                    DentryValue{e.child, e.seq, e.mode, false}.Encode());
  std::string hk = keys::Hidden(e.child, parent, name);
  (void)t->kv().Delete(Cf::kHidden, hk);
  t->gone_hidden.insert(hk);
  t->snapshots_changed = true;
  return Status::OK();
}

Status SnapshotEngine::ResurrectDir(NsTxn* t, uint64_t dir) {
  for (int depth = 0; dir != kRootIno && depth < 4096; depth++) {
    ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, dir));
    if (entries.empty()) {
      // The top of the hidden chain must hang off a live folder: one replaced while it
      // held hidden entries (nlink 0) leads nowhere, and nothing new may be made in it.
      ASSIGN_OR_RETURN(Inode * node, t->Get(dir));
      if (node->nlink == 0) return Status::NotFound("folder was removed");
      return Status::OK();
    }
    // A folder `snapfs rm` removed is hidden until the purger is done with it: nothing
    // new goes in (it would bring the half-purged folder back).
    std::string v;
    Status q = t->kv().Get(Cf::kDefault, keys::Purge(dir), &v);
    if (q.ok()) return Status::NotFound("folder was removed (snapfs rm; being purged)");
    if (!q.Is(Code::kNotFound)) return q;
    for (auto& [parent, name] : entries) {
      Dentry e;
      RETURN_IF_ERROR(t->Lookup(parent, name, &e));
      RETURN_IF_ERROR(UnhideEntry(t, parent, name, e));
    }
    dir = entries.front().first;
  }
  return Status::OK();
}

Status SnapshotEngine::DetachForSnapshots(uint64_t ino) {
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(ns_->mu());
    NsTxn t(*ns_);
    return DetachInTxn(&t, ino);
  });
}

Status SnapshotEngine::DetachInTxn(NsTxn* tp, uint64_t ino) {
  NsTxn& t = *tp;
  ASSIGN_OR_RETURN(bool pinned, IsPinned(&t, ino));
  if (!pinned) return Status::OK();  // raced with another open that did it
  ASSIGN_OR_RETURN(Inode * x, t.Get(ino));
  Inode copy = *x;
  x->btime_ns = NowNs();  // the name's file is a new file from now on
  ASSIGN_OR_RETURN(copy.ino, ns_->AllocIno());
  copy.nlink = 0;  // reachable only through the snapshots that pin it
  t.Put(copy);
  std::string prefix = keys::Ino(ino);
  // Each scan is collected before the transaction writes (iterators must not be on a key
  // being written).
  {
    std::vector<std::pair<uint64_t, ExtentValue>> extents;
    auto* it = t.It(Cf::kExtents);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      ASSIGN_OR_RETURN(auto e, ExtentValue::Decode(it->value()));
      extents.emplace_back(GetBE64(it->key().data() + 8), e);
    }
    RETURN_IF_ERROR(it->status().WithContext("scan extents"));
    for (const auto& [off, e] : extents) extent_map::Put(t.kv(), copy.ino, off, e);
  }
  {
    std::vector<uint64_t> snaps;
    auto* it = t.It(Cf::kPinned);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      snaps.push_back(GetBE64(it->key().data() + 8));
    }
    RETURN_IF_ERROR(it->status().WithContext("scan pins"));
    for (uint64_t snap : snaps) {
      std::string v;
      RETURN_IF_ERROR(t.kv().Get(Cf::kPins, keys::Pair(snap, ino), &v));
      t.kv().Delete(Cf::kPins, keys::Pair(snap, ino));
      t.kv().Delete(Cf::kPinned, keys::Pair(ino, snap));
      t.kv().Put(Cf::kPins, keys::Pair(snap, copy.ino), v);
      t.kv().Put(Cf::kPinned, keys::Pair(copy.ino, snap), "");
      t.unpinned.erase(copy.ino);
    }
  }
  ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(&t, ino));
  for (auto& [parent, name] : entries) {
    Dentry e;
    RETURN_IF_ERROR(t.Lookup(parent, name, &e));
    RETURN_IF_ERROR(UnhideEntry(&t, parent, name, e));
    RETURN_IF_ERROR(ResurrectDir(&t, parent));
  }
  t.snapshots_changed = true;
  return t.Commit();
}

Status SnapshotEngine::DropHiddenEntry(NsTxn* t, uint64_t parent, std::string_view name,
                                       uint64_t child) {
  std::string dk = keys::Dentry(parent, name);
  (void)t->kv().Delete(Cf::kDentries, dk);
  t->gone_dentries.insert(dk);
  t->touched.emplace_back(parent, std::string(name));
  std::string hk = keys::Hidden(child, parent, name);
  (void)t->kv().Delete(Cf::kHidden, hk);
  t->gone_hidden.insert(hk);
  t->snapshots_changed = true;
  ASSIGN_OR_RETURN(Inode * p, t->Get(parent));
  ASSIGN_OR_RETURN(Inode * c, t->Get(child));
  if (c->is_dir()) {
    if (p->nlink > 2) p->nlink--;
    t->collapse.insert(child);  // if it lives on detached, it goes once it is empty
  }
  t->collapse.insert(parent);
  return ns_->DropLink(t, c, NowNs());
}

Status SnapshotEngine::ReleaseUnpinned(NsTxn* t, uint64_t ino) {
  // Its hidden entries go now; then the inode itself unless something still uses it.
  ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, ino));
  for (auto& [parent, name] : entries) RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, ino));
  auto node = t->Get(ino);
  if (!node.ok()) return node.status().Is(Code::kNotFound) ? Status::OK() : node.status();
  if ((*node)->is_dir()) t->collapse.insert(ino);
  return ns_->PurgeIfUnused(t, ino);
}

Status SnapshotEngine::CollapseHiddenDirs(NsTxn* t) {
  while (!t->collapse.empty()) {
    uint64_t d = *t->collapse.begin();
    t->collapse.erase(t->collapse.begin());
    if (d == kRootIno) continue;
    auto node = t->Get(d);
    if (!node.ok()) {
      if (node.status().Is(Code::kNotFound)) continue;
      return node.status();
    }
    if (!(*node)->is_dir()) continue;
    ASSIGN_OR_RETURN(bool has, ns_->DirHasEntries(t, d));
    if (has) continue;
    // An empty folder that only stayed for hidden entries: it goes too.
    ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, d));
    for (auto& [parent, name] : entries) RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, d));
    if (entries.empty()) RETURN_IF_ERROR(ns_->PurgeIfUnused(t, d));
  }
  return Status::OK();
}

Status SnapshotEngine::EndSnapshot(NsTxn* t, uint64_t dir) {
  if (!t->ended.insert(dir).second) return Status::OK();
  auto snap = queries_->LoadSnapshot(dir, t);
  if (snap.ok()) {
    if (auto p = ns_->PathOf(dir); p.ok()) SNAPFS_LOG_INFO("snapshot ended: /" + *p);
    (void)t->kv().Delete(Cf::kDefault, keys::MarkerIndex(snap->marker));
  } else if (!snap.status().Is(Code::kNotFound)) {
    return snap.status();
  }
  (void)t->kv().Delete(Cf::kSnapshots, keys::Ino(dir));
  t->snapshots_changed = true;
  ASSIGN_OR_RETURN(auto pins, queries_->PinsOf(dir, t));
  for (auto& [ino, view] : pins) {
    (void)t->kv().Delete(Cf::kPins, keys::Pair(dir, ino));
    (void)t->kv().Delete(Cf::kPinned, keys::Pair(ino, dir));
    t->gone_pins.insert({ino, dir});
  }
  for (auto& [ino, view] : pins) {
    ASSIGN_OR_RETURN(bool pinned, IsPinned(t, ino));
    if (!pinned) RETURN_IF_ERROR(ReleaseUnpinned(t, ino));
  }
  return Status::OK();
}

Status SnapshotEngine::MarkerGone(NsTxn* t, uint64_t parent, std::string_view name, uint64_t ino) {
  // A folder getting a new marker in this transaction ends its old snapshot when it is
  // written (FinishSnapshots), after the new pins are in place.
  if (t->ended.count(parent) || t->prepared.count(parent)) return Status::OK();
  auto snap = queries_->LoadSnapshot(parent, t);
  if (!snap.ok()) return snap.status().Is(Code::kNotFound) ? Status::OK() : snap.status();
  if (snap->marker != ino || snap->marker_name != name) return Status::OK();
  return EndSnapshot(t, parent);
}

Status SnapshotEngine::PrepareSnapshot(NsTxn* t, uint64_t dir, uint64_t marker_ino,
                                       std::string_view marker_name, std::string_view bytes) {
  auto refs = ScanMarker(bytes, MountPoints());
  ASSIGN_OR_RETURN(std::string spath, ns_->PathOf(dir));
  std::string job;
  if (auto slash = spath.rfind('/'); slash != std::string::npos) job = spath.substr(0, slash);
  NsTxn::Prepared p;
  p.marker = marker_ino;
  p.content_hash = XXH3_64bits(bytes.data(), bytes.size());
  p.marker_name = std::string(marker_name);
  // Each referenced file once: its view path inside the snapshot and the path it was named by.
  for (const auto& r : refs) {
    uint64_t ino = 0;
    std::string view, mount_path;
    if (r.kind == MarkerReference::kBareName) {
      Dentry e;
      if (!t->Lookup(dir, r.path, &e).ok() || !S_ISREG(e.mode)) continue;
      ino = e.child;
      view = r.path;
      mount_path = spath.empty() ? r.path : spath + "/" + r.path;
    } else {
      auto found = ns_->ResolvePath(r.path);
      if (!found.ok()) continue;  // a dangling reference pins nothing
      auto node = t->Load(*found);
      if (!node.ok() || !node->is_reg()) continue;
      ino = *found;
      mount_path = r.path;
      if (!spath.empty() && r.path.starts_with(spath + "/")) {
        view = r.path.substr(spath.size() + 1);
      } else if (job.empty()) {
        view = r.path;
      } else if (r.path.starts_with(job + "/")) {
        view = r.path.substr(job.size() + 1);
      } else {
        view = std::string(kOtherJobsDir) + "/" + r.path;
      }
    }
    if (ino == marker_ino) continue;
    p.pins.emplace(ino, std::make_pair(view, mount_path));
  }
  // New pins count from now on, before any old snapshot (of this folder, or the one a
  // rename replaces) lets go of its own: files both need are never released in between.
  for (auto& [ino, v] : p.pins) t->new_pins.insert({ino, dir});
  SNAPFS_LOG_INFO("snapshot recognised: /" + spath + " (" + std::string(marker_name) + ", " +
                  std::to_string(refs.size()) + " references, " + std::to_string(p.pins.size()) +
                  " files pinned)");
  t->prepared[dir] = std::move(p);
  return Status::OK();
}

Status SnapshotEngine::FinishSnapshots(NsTxn* t) {
  if (!t->prepared.empty()) t->commits_snapshot = true;
  for (auto& [dir, p] : t->prepared) {
    RETURN_IF_ERROR(EndSnapshot(t, dir));  // the folder's previous snapshot, if any
    t->ended.erase(dir);
    SnapshotRecord rec;
    rec.marker = p.marker;
    rec.marker_name = p.marker_name;
    rec.completed_ns = NowNs();
    rec.pins = p.pins.size();
    rec.content_hash = p.content_hash;
    (void)t->kv().Put(Cf::kSnapshots, keys::Ino(dir), rec.Encode());
    (void)t->kv().Put(Cf::kDefault, keys::MarkerIndex(p.marker), keys::Ino(dir));
    for (auto& [ino, v] : p.pins) {
      (void)t->kv().Put(Cf::kPins, keys::Pair(dir, ino), PinValue{v.first, v.second}.Encode());
      (void)t->kv().Put(Cf::kPinned, keys::Pair(ino, dir), "");
    }
    t->snapshots_changed = true;
  }
  t->prepared.clear();
  return Status::OK();
}

Status SnapshotEngine::CommitSnapshot(NsTxn* t, uint64_t dir, uint64_t marker_ino,
                                      std::string_view marker_name, std::string_view bytes) {
  RETURN_IF_ERROR(PrepareSnapshot(t, dir, marker_ino, marker_name, bytes));
  return FinishSnapshots(t);
}

Result<std::string> SnapshotEngine::ReadMarkerBytes(uint64_t ino) {
  return data_->ReadFile(ino, kMaxMarkerScan);
}

std::map<uint64_t, std::string> SnapshotEngine::ReadRenamedMarkers(uint64_t parent,
                                                                   std::string_view name,
                                                                   uint64_t new_parent,
                                                                   std::string_view new_name,
                                                                   unsigned flags) {
  // A file landing on a marker name commits a snapshot (both ways for an exchange).
  std::map<uint64_t, std::string> marker_bytes;
  auto preread = [&](uint64_t dir, std::string_view n) {
    Dentry e;
    if (!ns_->LookupEntry(dir, n, &e).ok() || !S_ISREG(e.mode) || e.hidden) return;
    auto bytes = ReadMarkerBytes(e.child);
    if (bytes.ok()) marker_bytes[e.child] = std::move(*bytes);
  };
  if (IsMarkerName(new_name)) preread(parent, name);
  if ((flags & kRenameExchange) && IsMarkerName(name)) preread(new_parent, new_name);
  return marker_bytes;
}

Result<SnapshotEngine::ChangeCheck> SnapshotEngine::CheckChange(const Inode& node) {
  ChangeCheck c;
  MutexLock l(ns_->mu());
  NsTxn t(*ns_);  // reads only
  ASSIGN_OR_RETURN(c.read_only, IsHiddenInode(&t, node));
  ASSIGN_OR_RETURN(c.pinned, IsPinned(&t, node.ino));
  return c;
}

Status SnapshotEngine::CommitMarkerAt(uint64_t parent, std::string_view name, uint64_t ino) {
  auto bytes = ReadMarkerBytes(ino);
  // An unreadable marker must not fail the writer's close: it just makes no snapshot.
  if (!bytes.ok()) return Status::OK();
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(ns_->mu());
    NsTxn t(*ns_);
    Dentry e;
    if (!t.Lookup(parent, name, &e).ok() || e.child != ino || e.hidden) return Status::OK();
    std::string v;
    if (t.kv().Get(Cf::kSnapshots, keys::Ino(parent), &v).ok()) {
      auto rec = SnapshotRecord::Decode(v);
      if (rec.ok() && rec->marker == ino && rec->marker_name == name &&
          rec->content_hash == XXH3_64bits(bytes->data(), bytes->size())) {
        return Status::OK();  // already the snapshot of exactly these bytes
      }
    }
    RETURN_IF_ERROR(CommitSnapshot(&t, parent, ino, name, *bytes));
    RETURN_IF_ERROR(CollapseHiddenDirs(&t));
    return t.Commit();
  });
}

// ---- mount points ----

Status SnapshotEngine::LoadMountPoints() {
  std::string v;
  Status s = meta_.Get(Cf::kDefault, kMountPointsKey, &v);
  if (s.Is(Code::kNotFound)) return Status::OK();
  RETURN_IF_ERROR(s);
  MutexLock l(&mount_mu_);
  mount_points_.clear();
  for (size_t i = 0; i < v.size();) {
    size_t j = v.find('\n', i);
    if (j == std::string::npos) j = v.size();
    if (j > i) mount_points_.push_back(v.substr(i, j - i));
    i = j + 1;
  }
  return Status::OK();
}

Status SnapshotEngine::RecordMountPoint(const std::string& abs_path) {
  MutexLock l(&mount_mu_);
  if (std::find(mount_points_.begin(), mount_points_.end(), abs_path) != mount_points_.end()) {
    return Status::OK();
  }
  // The newest first: it decides the paths shown for references under several of them.
  mount_points_.insert(mount_points_.begin(), abs_path);
  std::string v;
  for (const auto& m : mount_points_) v += m + "\n";
  const std::vector<std::string> mine = mount_points_;
  // Mount points only accumulate: a racing writer's list is merged on retry.
  return kv::RunTxn(
      meta_.engine(),
      [&](kv::Txn& t) -> Status {
        std::string old;
        Status s = t.Get(Cf::kDefault, kMountPointsKey, &old);
        if (!s.ok() && !s.Is(Code::kNotFound)) return s;
        std::string merged = v;
        for (size_t i = 0; i < old.size();) {
          size_t j = old.find('\n', i);
          if (j == std::string::npos) j = old.size();
          std::string m = old.substr(i, j - i);
          if (!m.empty() && std::find(mine.begin(), mine.end(), m) == mine.end()) {
            merged += m + "\n";
          }
          i = j + 1;
        }
        t.Put(Cf::kDefault, kMountPointsKey, merged);
        return Status::OK();
      },
      kv::RunOptions{.sync = true});
}

std::vector<std::string> SnapshotEngine::MountPoints() {
  MutexLock l(&mount_mu_);
  return mount_points_;
}

}  // namespace snapfs
