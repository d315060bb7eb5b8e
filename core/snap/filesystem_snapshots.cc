// Filesystem: snapshots inside the namespace. Recognition (a committed marker), pins (the
// inodes a marker references), deferred delete (hidden entries) and the explicit removal
// of snapshots. Queries live in snapshot_query.cc, the /.snapshots/ views in
// snapshot_views.cc. The model is in DESIGN.md section 2 and docs/snapshots.md.
#include <xxhash.h>

#include <algorithm>

#include "base/coding.h"
#include "core/fs/extent_map.h"
#include "base/log.h"
#include "core/snap/marker_scan.h"
#include "core/fs/ns_txn.h"
#include "core/fs/open_file.h"
#include "core/snap/snapshot_record.h"

namespace snapfs {

namespace {
// Markers are small (Flink's hold references and state under 20 KiB); a bigger one is
// scanned up to here, so a stray huge file named like a marker cannot stall the daemon.
constexpr uint64_t kMaxMarkerScan = 64ull << 20;

// Pin value: view path, NUL, the path relative to the mount the marker named.
}  // namespace


bool Filesystem::IsMarkerName(std::string_view name) const {
  return std::find(marker_names_.begin(), marker_names_.end(), name) != marker_names_.end();
}

Result<bool> Filesystem::IsPinned(Txn* t, uint64_t ino) {
  auto np = t->new_pins.lower_bound({ino, 0});
  if (np != t->new_pins.end() && np->first == ino) return true;
  std::string prefix = keys::Ino(ino);
  // Bounded to this inode's keys: a snapshot removal deletes the pins of thousands of
  // files in this transaction, and an unbounded seek would walk all of them (kv.h).
  auto it = t->kv().NewBoundedIterator(Cf::kPinned, keys::Ino(ino + 1));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    uint64_t snap = GetBE64(it->key().data() + 8);
    if (!t->gone_pins.count({ino, snap})) return true;
  }
  RETURN_IF_ERROR(it->status().WithContext("scan pins"));
  return false;
}

Result<std::vector<std::pair<uint64_t, std::string>>> Filesystem::HiddenEntriesOf(Txn* t,
                                                                                 uint64_t ino) {
  std::vector<std::pair<uint64_t, std::string>> entries;  // (parent, name)
  std::string prefix = keys::Ino(ino);
  auto* it = t->It(Cf::kHidden);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (t->gone_hidden.count(std::string(it->key()))) continue;
    entries.emplace_back(GetBE64(it->key().data() + 8),
                         std::string(it->key().data() + 16, it->key().size() - 16));
  }
  RETURN_IF_ERROR(it->status().WithContext("scan hidden"));
  return entries;
}

Result<bool> Filesystem::IsHiddenInode(Txn* t, const Inode& node) {
  ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, node.ino));
  if (entries.empty()) {
    // No name left at all (replaced or renamed over) but kept for a snapshot: its bytes
    // are the snapshot's, whoever still holds a descriptor.
    if (node.nlink > 0 || !node.is_reg()) return false;
    return IsPinned(t, node.ino);
  }
  return node.is_dir() || entries.size() >= node.nlink;
}

Result<bool> Filesystem::DirHasEntries(Txn* t, uint64_t dir) {
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

Status Filesystem::HideEntry(Txn* t, uint64_t parent, std::string_view name, const Entry& e) {
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

Status Filesystem::UnhideEntry(Txn* t, uint64_t parent, std::string_view name, const Entry& e) {
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

Status Filesystem::ResurrectDir(Txn* t, uint64_t dir) {
  for (int depth = 0; dir != kRootIno && depth < 4096; depth++) {
    ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, dir));
    if (entries.empty()) {
      // The top of the hidden chain must hang off a live folder: one replaced while it
      // held hidden entries (nlink 0) leads nowhere, and nothing new may be made in it.
      ASSIGN_OR_RETURN(Inode * node, t->Get(dir));
      if (node->nlink == 0) return Status::NotFound("folder was removed");
      return Status::OK();
    }
    for (auto& [parent, name] : entries) {
      Entry e;
      RETURN_IF_ERROR(t->Lookup(parent, name, &e));
      RETURN_IF_ERROR(UnhideEntry(t, parent, name, e));
    }
    dir = entries.front().first;
  }
  return Status::OK();
}

Status Filesystem::DetachForSnapshots(uint64_t ino) {
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    Txn t(this);
    return DetachInTxn(&t, ino);
  });
}

Status Filesystem::DetachInTxn(Txn* tp, uint64_t ino) {
  Txn& t = *tp;
  ASSIGN_OR_RETURN(bool pinned, IsPinned(&t, ino));
  if (!pinned) return Status::OK();  // raced with another open that did it
  ASSIGN_OR_RETURN(Inode * x, t.Get(ino));
  Inode copy = *x;
  x->btime_ns = NowNs();  // the name's file is a new file from now on
  ASSIGN_OR_RETURN(copy.ino, AllocIno());
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
    }
  }
  ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(&t, ino));
  for (auto& [parent, name] : entries) {
    Entry e;
    RETURN_IF_ERROR(t.Lookup(parent, name, &e));
    RETURN_IF_ERROR(UnhideEntry(&t, parent, name, e));
    RETURN_IF_ERROR(ResurrectDir(&t, parent));
  }
  t.snapshots_changed = true;
  return t.Commit();
}

Status Filesystem::DropHiddenEntry(Txn* t, uint64_t parent, std::string_view name,
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
  return DropLink(t, c, NowNs());
}

Status Filesystem::ReleaseUnpinned(Txn* t, uint64_t ino) {
  // Its hidden entries go now; then the inode itself unless something still uses it.
  ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, ino));
  for (auto& [parent, name] : entries) RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, ino));
  auto node = t->Get(ino);
  if (!node.ok()) return node.status().Is(Code::kNotFound) ? Status::OK() : node.status();
  if ((*node)->is_dir()) t->collapse.insert(ino);
  return PurgeIfUnused(t, ino);
}

Status Filesystem::CollapseHiddenDirs(Txn* t) {
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
    ASSIGN_OR_RETURN(bool has, DirHasEntries(t, d));
    if (has) continue;
    // An empty folder that only stayed for hidden entries: it goes too.
    ASSIGN_OR_RETURN(auto entries, HiddenEntriesOf(t, d));
    for (auto& [parent, name] : entries) RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, d));
    if (entries.empty()) RETURN_IF_ERROR(PurgeIfUnused(t, d));
  }
  return Status::OK();
}

Result<SnapshotInfo> Filesystem::LoadSnapshot(uint64_t dir, Txn* t) {
  std::string v;
  Status s = t ? t->kv().Get(Cf::kSnapshots, keys::Ino(dir), &v)
               : meta_.Get(Cf::kSnapshots, keys::Ino(dir), &v);
  if (s.Is(Code::kNotFound)) return Status::NotFound("not a snapshot (no committed marker)");
  RETURN_IF_ERROR(s);
  ASSIGN_OR_RETURN(auto r, SnapshotRecord::Decode(v));
  SnapshotInfo info;
  info.dir = dir;
  info.marker = r.marker;
  info.marker_name = r.marker_name;
  info.completed_ns = r.completed_ns;
  info.pins = r.pins;
  return info;
}

Result<std::vector<std::pair<uint64_t, std::string>>> Filesystem::PinsOf(uint64_t dir, Txn* t) {
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


Status Filesystem::EndSnapshot(Txn* t, uint64_t dir) {
  if (!t->ended.insert(dir).second) return Status::OK();
  auto snap = LoadSnapshot(dir, t);
  if (snap.ok()) {
    if (auto p = PathOf(dir); p.ok()) SNAPFS_LOG_INFO("snapshot ended: /" + *p);
    (void)t->kv().Delete(Cf::kDefault, keys::MarkerIndex(snap->marker));
  } else if (!snap.status().Is(Code::kNotFound)) {
    return snap.status();
  }
  (void)t->kv().Delete(Cf::kSnapshots, keys::Ino(dir));
  t->snapshots_changed = true;
  ASSIGN_OR_RETURN(auto pins, PinsOf(dir, t));
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

Status Filesystem::MarkerGone(Txn* t, uint64_t parent, std::string_view name, uint64_t ino) {
  // A folder getting a new marker in this transaction ends its old snapshot when it is
  // written (FinishSnapshots), after the new pins are in place.
  if (t->ended.count(parent) || t->prepared.count(parent)) return Status::OK();
  auto snap = LoadSnapshot(parent, t);
  if (!snap.ok()) return snap.status().Is(Code::kNotFound) ? Status::OK() : snap.status();
  if (snap->marker != ino || snap->marker_name != name) return Status::OK();
  return EndSnapshot(t, parent);
}

Result<uint64_t> Filesystem::ResolvePath(std::string_view rel) {
  uint64_t ino = kRootIno;
  size_t i = 0;
  while (i < rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string_view::npos) j = rel.size();
    std::string_view part = rel.substr(i, j - i);
    i = j + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      ASSIGN_OR_RETURN(auto n, LoadInode(ino));
      ino = n.parent;
      continue;
    }
    Entry e;
    RETURN_IF_ERROR(LookupEntry(ino, part, &e).WithContext(std::string(rel)));
    ino = e.child;
  }
  return ino;
}

Status Filesystem::PrepareSnapshot(Txn* t, uint64_t dir, uint64_t marker_ino,
                                   std::string_view marker_name, std::string_view bytes) {
  auto refs = ScanMarker(bytes, mount_points_);
  ASSIGN_OR_RETURN(std::string spath, PathOf(dir));
  std::string job;
  if (auto slash = spath.rfind('/'); slash != std::string::npos) job = spath.substr(0, slash);
  Txn::Prepared p;
  p.marker = marker_ino;
  p.content_hash = XXH3_64bits(bytes.data(), bytes.size());
  p.marker_name = std::string(marker_name);
  // Each referenced file once: its view path inside the snapshot and the path it was named by.
  for (const auto& r : refs) {
    uint64_t ino = 0;
    std::string view, mount_path;
    if (r.kind == MarkerReference::kBareName) {
      Entry e;
      if (!t->Lookup(dir, r.path, &e).ok() || !S_ISREG(e.mode)) continue;
      ino = e.child;
      view = r.path;
      mount_path = spath.empty() ? r.path : spath + "/" + r.path;
    } else {
      auto found = ResolvePath(r.path);
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
                  std::to_string(refs.size()) + " references, " +
                  std::to_string(p.pins.size()) + " files pinned)");
  t->prepared[dir] = std::move(p);
  return Status::OK();
}

Status Filesystem::FinishSnapshots(Txn* t) {
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

Status Filesystem::CommitSnapshot(Txn* t, uint64_t dir, uint64_t marker_ino,
                                  std::string_view marker_name, std::string_view bytes) {
  RETURN_IF_ERROR(PrepareSnapshot(t, dir, marker_ino, marker_name, bytes));
  return FinishSnapshots(t);
}

Result<std::string> Filesystem::ReadMarkerBytes(uint64_t ino) {
  if (auto f = FindOpenFile(ino)) {
    std::lock_guard l(f->mu);
    RETURN_IF_ERROR(FlushLocked(f.get(), true, false));
  }
  ASSIGN_OR_RETURN(auto node, LoadInode(ino));
  if (!node.is_reg()) return Status::InvalidArgument("marker is not a regular file");
  std::string bytes(std::min(node.size, kMaxMarkerScan), '\0');
  RETURN_IF_ERROR(ReadCommitted(ino, 0, bytes.size(), bytes.data()));
  return bytes;
}

Status Filesystem::CommitMarkerAt(uint64_t parent, std::string_view name, uint64_t ino) {
  auto bytes = ReadMarkerBytes(ino);
  // An unreadable marker must not fail the writer's close: it just makes no snapshot.
  if (!bytes.ok()) return Status::OK();
  return kv::RetryOnConflict([&]() -> Status {
    MutexLock l(&ns_mu_);
    Txn t(this);
    Entry e;
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

Status Filesystem::UnlinkInTxn(Txn* t, uint64_t parent, std::string_view name, const Entry& e,
                               RemoveReport* report) {
  ASSIGN_OR_RETURN(bool pinned, IsPinned(t, e.child));
  if (pinned) {
    // Deferred delete: the name leaves listings; the exact path still resolves.
    RETURN_IF_ERROR(HideEntry(t, parent, name, e));
    if (report) report->files_hidden++;
  } else {
    RemoveEntry(t->kv(), parent, name, e.seq);
    t->gone_dentries.insert(keys::Dentry(parent, name));
    t->touched.emplace_back(parent, std::string(name));
    ASSIGN_OR_RETURN(Inode * node, t->Get(e.child));
    RETURN_IF_ERROR(DropLink(t, node, NowNs()));
    if (report) report->files_removed++;
  }
  if (IsMarkerName(name)) RETURN_IF_ERROR(MarkerGone(t, parent, name, e.child));
  return Status::OK();
}

Result<bool> Filesystem::RemoveTreeInTxn(Txn* t, uint64_t parent, std::string_view name,
                                         const Entry& e, RemoveReport* report) {
  if (t->gone_dentries.count(keys::Dentry(parent, name))) return false;
  if (!S_ISDIR(e.mode)) {
    if (e.hidden) return true;  // already kept for another snapshot
    RETURN_IF_ERROR(UnlinkInTxn(t, parent, name, e, report));
    return !t->gone_dentries.count(keys::Dentry(parent, name));
  }
  std::vector<std::pair<std::string, Entry>> children;
  {
    std::string prefix = keys::Ino(e.child);
    auto* it = t->It(Cf::kDentries);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (t->gone_dentries.count(std::string(it->key()))) continue;
      Entry c;
      RETURN_IF_ERROR(DecodeEntry(it->value(), &c));
      children.emplace_back(std::string(it->key().data() + 8, it->key().size() - 8), c);
    }
    RETURN_IF_ERROR(it->status().WithContext("scan folder"));
  }
  bool kept = false;
  for (auto& [n, c] : children) {
    ASSIGN_OR_RETURN(bool k, RemoveTreeInTxn(t, e.child, n, c, report));
    kept |= k;
  }
  if (kept) {
    if (!e.hidden) RETURN_IF_ERROR(HideEntry(t, parent, name, e));
    return true;
  }
  if (e.hidden) {
    RETURN_IF_ERROR(DropHiddenEntry(t, parent, name, e.child));
    return false;
  }
  RemoveEntry(t->kv(), parent, name, e.seq);
  t->gone_dentries.insert(keys::Dentry(parent, name));
  t->touched.emplace_back(parent, std::string(name));
  ASSIGN_OR_RETURN(Inode * p, t->Get(parent));
  p->nlink--;
  p->mtime_ns = p->ctime_ns = NowNs();
  ASSIGN_OR_RETURN(Inode * node, t->Get(e.child));
  RETURN_IF_ERROR(DropLink(t, node, p->mtime_ns));
  return false;
}

Result<RemoveReport> Filesystem::RemoveSnapshots(const std::vector<uint64_t>& dirs, bool dry_run) {
  ASSIGN_OR_RETURN(auto usage, MeasureSnapshots(dirs));
  RemoveReport report;
  std::vector<std::pair<uint64_t, std::string>> touched;
  RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
    report = RemoveReport{};
    report.bytes_freed = usage.exclusive;
    MutexLock l(&ns_mu_);
    Txn t(this);
    RETURN_IF_ERROR(RemoveSnapshotsInTxn(&t, dirs, &report));
    if (dry_run) return Status::OK();
    RETURN_IF_ERROR(t.Commit());
    touched = std::move(t.touched);
    return Status::OK();
  }));
  for (auto& [parent, name] : touched) InvalidateEntry(parent, name);
  return report;
}

Status Filesystem::RemoveSnapshotsInTxn(Txn* tp, const std::vector<uint64_t>& dirs,
                                        RemoveReport* out) {
  Txn& t = *tp;
  RemoveReport& report = *out;
  // Referenced files: (ino, where to look for their name). The job folder may have moved
  // since the marker named them: its view path under the job folder's current path comes
  // first, then the path the marker named.
  std::vector<std::pair<uint64_t, std::vector<std::string>>> outside;
  for (uint64_t dir : dirs) {
    ASSIGN_OR_RETURN(auto snap, LoadSnapshot(dir, &t));
    ASSIGN_OR_RETURN(std::string spath, PathOf(dir));
    std::string job;
    if (auto slash = spath.rfind('/'); slash != std::string::npos) job = spath.substr(0, slash);
    ASSIGN_OR_RETURN(auto pins, PinsOf(dir, &t));
    for (auto& [ino, v] : pins) {
      std::string view, mount_path;
      PinValue pv = PinValue::Decode(v);
      view = pv.view_path;
      mount_path = pv.mount_path;
      std::vector<std::string> where;
      if (!view.starts_with(std::string(kOtherJobsDir) + "/")) {
        where.push_back(job.empty() ? view : job + "/" + view);
      }
      where.push_back(mount_path);
      outside.emplace_back(ino, std::move(where));
    }
  }
  // Every snapshot goes before any folder is walked, those nested in the removed folders
  // too: a file they pin must not be hidden for a snapshot that is about to end.
  std::vector<uint64_t> ending(dirs.begin(), dirs.end());
  for (uint64_t dir : dirs) {
    ASSIGN_OR_RETURN(auto nested, ListSnapshots(dir));
    for (const auto& n : nested) ending.push_back(n.dir);
  }
  for (uint64_t dir : ending) RETURN_IF_ERROR(EndSnapshot(&t, dir));
  for (uint64_t dir : dirs) {
    if (dir == kRootIno) return Status::InvalidArgument("will not remove the mount root");
    if (t.IsPurged(dir)) continue;  // inside another removed folder
    ASSIGN_OR_RETURN(Inode * node, t.Get(dir));
    uint64_t parent = node->parent;
    std::string name = node->name;
    Entry e;
    if (name.empty() || !t.Lookup(parent, name, &e).ok() || e.child != dir) {
      return Status::NotFound("snapshot folder has no name (detached)");
    }
    if (t.gone_dentries.count(keys::Dentry(parent, name))) continue;  // removed with another
    ASSIGN_OR_RETURN(bool kept, RemoveTreeInTxn(&t, parent, name, e, &report));
    (void)kept;
  }
  // Referenced files outside the folders that nothing else references go too.
  for (auto& [ino, where] : outside) {
    if (t.IsPurged(ino)) continue;
    ASSIGN_OR_RETURN(bool pinned, IsPinned(&t, ino));
    if (pinned) continue;
    for (const auto& path : where) {
      if (path.empty()) continue;
      size_t slash = path.rfind('/');
      std::string parent_path = slash == std::string::npos ? "" : path.substr(0, slash);
      std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
      auto parent = ResolvePath(parent_path);
      if (!parent.ok()) continue;
      Entry e;
      if (!t.Lookup(*parent, name, &e).ok() || e.child != ino || e.hidden) continue;
      if (t.gone_dentries.count(keys::Dentry(*parent, name))) break;
      RETURN_IF_ERROR(UnlinkInTxn(&t, *parent, name, e, &report));
      break;
    }
    // Not found under either path (moved elsewhere): left alone; `snapfs orphans` finds it.
  }
  RETURN_IF_ERROR(CollapseHiddenDirs(&t));
  // Snapshot folders inside the removed folders ended with them.
  report.snapshots = t.ended.size();
  return Status::OK();
}

void Filesystem::SetEntryInvalidator(std::function<void(uint64_t, std::string_view)> f) {
  MutexLock l(&invalidator_mu_);
  invalidator_ = std::move(f);
}

void Filesystem::InvalidateEntry(uint64_t parent, std::string_view name) {
  MutexLock l(&invalidator_mu_);
  if (invalidator_) invalidator_(parent, name);
}

}  // namespace snapfs
