// SnapshotQueries::CheckSnapshots: fsck's check of snapshots, pins, the purge queue and
// hidden entries, read from one consistent view of the metadata (kv::ReadView).
//
// Why one view: the check runs while the store is in use (a mounted daemon, other hosts
// of a shared store). Read piece by piece from the latest state, a snapshot removed, a
// pin released or a hidden entry dropped between two of its reads looked like damage
// ("marker is gone but the snapshot was not ended", "pins N, has M", "no reverse
// record"). Every namespace read below goes through the view instead; chunk bytes (the
// markers') are read by id, which names the same bytes in every state, while GC is held
// off (HoldOffGc here; on a shared store fsck and gc also hold the store-wide GC lease,
// GcLeaseHold, so that no other host's GC runs meanwhile).
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/coding.h"
#include "core/chunks/chunk_store.h"
#include "core/chunks/gc.h"
#include "core/fs/extent_map.h"
#include "core/fs/namespace.h"
#include "core/snap/marker_scan.h"
#include "core/snap/snapshot_queries.h"
#include "core/snap/snapshot_record.h"

namespace snapfs {
namespace {

// The namespace's reads (Namespace::LookupEntry, LoadInode, ResolvePath), of one view.
class ViewReads {
 public:
  ViewReads(kv::ReadView& view, ChunkStore& chunks) : v_(view), chunks_(chunks) {}

  Status Lookup(uint64_t parent, std::string_view name, Dentry* e) {
    std::string val;
    RETURN_IF_ERROR(v_.Get(Cf::kDentries, keys::Dentry(parent, name), &val));
    return Namespace::DecodeEntry(val, e);
  }
  Result<Inode> Load(uint64_t ino) {
    std::string val;
    RETURN_IF_ERROR(v_.Get(Cf::kInodes, keys::Ino(ino), &val));
    return Inode::Decode(ino, val);
  }
  bool Has(Cf space, std::string_view key) {
    std::string val;
    return v_.Get(space, key, &val).ok();
  }
  // Whether any key of `space` starts with `prefix`.
  Result<bool> AnyWithPrefix(Cf space, std::string_view prefix) {
    auto it = v_.NewIterator(space);
    it->Seek(prefix);
    if (it->Valid()) return it->key().starts_with(prefix);
    RETURN_IF_ERROR(it->status());
    return false;
  }
  // A path relative to the store's root, as Namespace::ResolvePath.
  Result<uint64_t> Resolve(std::string_view rel) {
    return Namespace::WalkPath(
        rel, [&](uint64_t parent, std::string_view name, Dentry* e) { return Lookup(parent, name, e); },
        [&](uint64_t ino) { return Load(ino); });
  }
  // The committed bytes of a regular file, up to `limit`; holes read as zeros.
  Result<std::string> ReadFile(uint64_t ino, uint64_t limit) {
    ASSIGN_OR_RETURN(Inode node, Load(ino));
    if (!node.is_reg()) return Status::InvalidArgument("not a regular file");
    std::string bytes(std::min(node.size, limit), '\0');
    auto it = v_.NewBoundedIterator(Cf::kExtents, keys::Extent(ino, bytes.size()));
    it->Seek(keys::Ino(ino));
    RETURN_IF_ERROR(extent_map::CopyExtents(it.get(), chunks_, 0, bytes.size(), bytes.data()));
    return bytes;
  }

 private:
  kv::ReadView& v_;
  ChunkStore& chunks_;
};

}  // namespace

Result<std::vector<std::string>> SnapshotQueries::CheckSnapshots(
    const std::vector<std::string>& mounts) {
  // The markers' chunks must stay where the index says until their bytes are read.
  auto gc_off = HoldOffGc();
  ASSIGN_OR_RETURN(auto view_owner, meta_.engine().NewReadView());
  kv::ReadView& view = *view_owner;
  ViewReads r(view, chunks_);
  std::vector<std::string> problems;
  auto problem = [&](std::string s) { problems.push_back(std::move(s)); };
  // A folder's path, for messages only (the latest one).
  auto name_of = [&](uint64_t dir) {
    auto path = ns_->PathOf(dir);
    return path.ok() ? *path : "folder " + std::to_string(dir);
  };

  // Snapshots: marker in place; pins match their reverse records; the marker still names
  // every pinned file it could name when the snapshot completed.
  auto it = view.NewIterator(Cf::kSnapshots);
  for (it->Seek(""); it->Valid(); it->Next()) {
    uint64_t dir = GetBE64(it->key().data());
    auto rec = SnapshotRecord::Decode(it->value());
    if (!rec.ok()) {
      problem("snapshot of folder " + std::to_string(dir) + ": " + rec.status().ToString());
      continue;
    }
    Dentry m;
    if (!r.Lookup(dir, rec->marker_name, &m).ok() || m.child != rec->marker) {
      problem("snapshot " + name_of(dir) + ": marker " + rec->marker_name +
              " is gone but the snapshot was not ended");
      continue;
    }
    std::unordered_set<uint64_t> pinned;
    std::string prefix = keys::Ino(dir);
    auto pit = view.NewIterator(Cf::kPins);
    for (pit->Seek(prefix); pit->Valid() && pit->key().starts_with(prefix); pit->Next()) {
      uint64_t ino = GetBE64(pit->key().data() + 8);
      pinned.insert(ino);
      if (!r.Has(Cf::kPinned, keys::Pair(ino, dir))) {
        problem("snapshot " + name_of(dir) + ": pin of inode " + std::to_string(ino) +
                " has no reverse record");
      }
      if (!r.Load(ino).ok()) {
        problem("snapshot " + name_of(dir) + ": pinned inode " + std::to_string(ino) +
                " is gone (data lost)");
      }
    }
    RETURN_IF_ERROR(pit->status().WithContext("scan pins"));
    if (pinned.size() != rec->pins) {
      problem("snapshot " + name_of(dir) + ": records " + std::to_string(rec->pins) +
              " pins, has " + std::to_string(pinned.size()));
    }
    auto bytes = r.ReadFile(rec->marker, kMaxMarkerScan);
    if (!bytes.ok()) {
      problem("snapshot " + name_of(dir) + ": marker unreadable: " + bytes.status().ToString());
      continue;
    }
    for (const auto& ref : ScanMarker(*bytes, mounts)) {
      Result<uint64_t> ino = Status::NotFound();
      if (ref.kind == MarkerReference::kBareName) {
        Dentry e;
        if (r.Lookup(dir, ref.path, &e).ok() && S_ISREG(e.mode)) ino = e.child;
      } else {
        ino = r.Resolve(ref.path);
      }
      if (!ino.ok() || *ino == rec->marker || pinned.count(*ino)) continue;
      auto node = r.Load(*ino);
      // Named, older than the snapshot, yet not pinned: deleting it would break it.
      if (node.ok() && node->is_reg() && node->btime_ns < rec->completed_ns) {
        problem("snapshot " + name_of(dir) + ": references " + ref.path + " but does not pin it");
      }
    }
  }
  RETURN_IF_ERROR(it->status().WithContext("scan snapshots"));

  // The purge queue (removed folders the purger has not finished): each names a folder
  // that still exists, hidden or replaced; the snapshots that ended with it may still
  // have pins (the purger releases them first).
  std::unordered_set<uint64_t> ending;
  auto qi = view.NewIterator(Cf::kDefault);
  for (qi->Seek(keys::kPurgePrefix); qi->Valid() && qi->key().starts_with(keys::kPurgePrefix);
       qi->Next()) {
    auto folder = keys::DecodeSuffixId(qi->key(), keys::kPurgePrefix);
    auto pv = PurgeValue::Decode(qi->value());
    if (!folder.ok() || !pv.ok()) {
      problem("purge queue entry " + std::string(qi->key()) + ": " +
              (folder.ok() ? pv.status() : folder.status()).ToString());
      continue;
    }
    if (!r.Load(*folder).ok()) {
      problem("purge queue names folder " + std::to_string(*folder) + ", which is gone");
    }
    for (const auto& [snap, job] : pv->ended) ending.insert(snap);
  }
  RETURN_IF_ERROR(qi->status().WithContext("scan the purge queue"));

  // Reverse pins point back; every pin belongs to a snapshot or to one ending in the
  // queue.
  auto pi = view.NewIterator(Cf::kPinned);
  std::unordered_set<uint64_t> checked;
  for (pi->Seek(""); pi->Valid(); pi->Next()) {
    uint64_t ino = GetBE64(pi->key().data()), dir = GetBE64(pi->key().data() + 8);
    if (!r.Has(Cf::kPins, keys::Pair(dir, ino))) {
      problem("inode " + std::to_string(ino) + " is pinned by folder " + std::to_string(dir) +
              " which does not pin it");
    }
    if (checked.insert(dir).second && !ending.count(dir) &&
        !r.Has(Cf::kSnapshots, keys::Ino(dir))) {
      problem("folder " + std::to_string(dir) +
              " pins files but is neither a snapshot nor queued for purge (leak)");
    }
  }
  RETURN_IF_ERROR(pi->status().WithContext("scan reverse pins"));

  // Hidden entries are real hidden dentries that something needs: a folder with entries,
  // a file a snapshot pins.
  auto hi = view.NewIterator(Cf::kHidden);
  for (hi->Seek(""); hi->Valid(); hi->Next()) {
    uint64_t ino = GetBE64(hi->key().data()), parent = GetBE64(hi->key().data() + 8);
    std::string name(hi->key().data() + 16, hi->key().size() - 16);
    Dentry e;
    if (!r.Lookup(parent, name, &e).ok() || e.child != ino || !e.hidden) {
      problem("hidden record " + std::to_string(parent) + "/" + name + " has no hidden entry");
      continue;
    }
    auto node = r.Load(ino);
    if (!node.ok()) continue;
    ASSIGN_OR_RETURN(bool needed,
                     r.AnyWithPrefix(node->is_dir() ? Cf::kDentries : Cf::kPinned, keys::Ino(ino)));
    if (!needed) {
      problem("hidden entry " + std::to_string(parent) + "/" + name +
              " is kept for nothing (leak)");
    }
  }
  RETURN_IF_ERROR(hi->status().WithContext("scan hidden records"));
  return problems;
}

}  // namespace snapfs
