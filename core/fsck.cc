#include "core/fsck.h"

#include <algorithm>
#include <map>
#include <random>
#include <unordered_map>

#include "base/coding.h"
#include "core/fs/inode.h"
#include "core/meta/kv.h"
#include "core/meta/schema.h"
#include "core/chunks/gc.h"
#include "core/chunks/pack_format.h"

namespace snapfs {

namespace {

constexpr size_t kMaxProblems = 1000;

// A damaged key, for a problem line.
std::string KeyHex(std::string_view k) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : k.substr(0, 40)) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return k.size() > 40 ? out + "..." : out;
}

struct InodeFacts {
  uint32_t nlink = 0;
  bool is_dir = false;
  uint64_t parent = 0;   // for folders: the recorded parent ("..")
  uint64_t links = 0;    // dentries naming it
  uint64_t subdirs = 0;  // for folders: child folders
};

}  // namespace

Result<FsckReport> Fsck(Store& store, const FsckOptions& opts) {
  // Every read below is of one snapshot, so that a store in use (a live daemon, other
  // hosts of a shared store) shows no transient mismatch between what was scanned first
  // and what was scanned later.
  // GC of this process waits meanwhile: it would remove or rewrite packs the snapshot
  // still points into, and they would look missing or damaged.
  auto gc_off = HoldOffGc();
  auto view_owner = store.meta().engine().NewReadView();
  if (!view_owner.ok()) return view_owner.status().WithContext("fsck: open a snapshot");
  kv::ReadView& meta = **view_owner;
  FsckReport r;
  auto problem = [&](std::string s) {
    if (r.problems.size() < kMaxProblems) r.problems.push_back(std::move(s));
  };
  // Damaged chunks by id -> their place in r.damaged.
  std::unordered_map<ChunkId, size_t, ChunkIdHash> damaged_at;
  auto damage = [&](const ChunkId& id, const ChunkLocation& loc, std::string what,
                    std::string description) {
    problem(description);
    if (r.damaged.size() >= kMaxProblems || damaged_at.count(id)) return;
    damaged_at[id] = r.damaged.size();
    DamagedChunk d;
    d.id = id;
    d.pack = loc.pack;
    d.offset = loc.is_inline() ? 0 : loc.offset;
    d.length = loc.length;
    d.problem = std::move(what);
    d.description = std::move(description);
    r.damaged.push_back(std::move(d));
  };

  // Namespace.
  std::unordered_map<uint64_t, InodeFacts> inodes;
  {
    auto it = meta.NewIterator(Cf::kInodes);
    for (it->Seek(""); it->Valid(); it->Next()) {
      auto k = keys::DecodeIno(it->key());
      if (!k.ok()) {
        problem("inode key " + KeyHex(it->key()) + ": " + k.status().message());
        continue;
      }
      const uint64_t ino = *k;
      auto node = Inode::Decode(ino, it->value());
      if (!node.ok()) {
        problem(node.status().ToString());
        continue;
      }
      r.inodes++;
      if (node->is_reg()) r.logical_bytes += node->size;
      inodes[ino] = InodeFacts{node->nlink, node->is_dir(), node->parent, 0, 0};
    }
    RETURN_IF_ERROR(it->status().WithContext("fsck scan inodes"));
  }
  if (!inodes.count(kRootIno)) problem("root folder (inode 1) is missing");
  std::unordered_map<uint64_t, uint64_t> entries_in;  // dentries per folder, hidden too
  {
    auto it = meta.NewIterator(Cf::kDentries);
    for (it->Seek(""); it->Valid(); it->Next()) {
      r.dentries++;
      auto k = keys::DecodeDentry(it->key());
      if (!k.ok()) {
        problem("dentry key " + KeyHex(it->key()) + ": " + k.status().message());
        continue;
      }
      const uint64_t parent = k->id;
      const std::string name(k->name);
      auto d = DentryValue::Decode(it->value());
      if (!d.ok()) {
        problem("dentry " + std::to_string(parent) + "/" + name + ": " + d.status().message());
        continue;
      }
      const uint64_t child = d->child, seq = d->seq;
      auto c = inodes.find(child);
      if (c == inodes.end()) {
        problem("entry " + name + " in folder " + std::to_string(parent) +
                " points at missing inode " + std::to_string(child));
        continue;
      }
      c->second.links++;
      if (c->second.is_dir) {
        inodes[parent].subdirs++;
        if (c->second.parent != parent) {
          problem("folder " + std::to_string(child) + " (" + name + ") records parent " +
                  std::to_string(c->second.parent) + " but lives in " + std::to_string(parent));
        }
      }
      entries_in[parent]++;
      if (d->hidden) continue;  // hidden: not listed by design
      std::string iv;
      Status s = meta.Get(Cf::kDirIndex, keys::DirIndex(parent, seq), &iv);
      auto di = s.ok() ? DirIndexValue::Decode(iv) : Result<DirIndexValue>(s);
      if (!di.ok() || di->name != name || di->child != child) {
        problem("entry " + name + " in folder " + std::to_string(parent) +
                " has no matching listing record");
      }
    }
    RETURN_IF_ERROR(it->status().WithContext("fsck scan dentries"));
  }
  std::unordered_map<uint64_t, bool> orphan;
  {
    auto it = meta.NewIterator(Cf::kOrphans);
    for (it->Seek(""); it->Valid(); it->Next()) {
      auto k = keys::DecodeIno(it->key());
      if (k.ok()) {
        orphan[*k] = true;
      } else {
        problem("orphan key " + KeyHex(it->key()) + ": " + k.status().message());
      }
    }
  }
  for (const auto& [ino, f] : inodes) {
    uint64_t expect = f.is_dir ? 2 + f.subdirs : f.links;
    if (f.is_dir && ino != kRootIno && f.links == 0 && orphan.count(ino)) continue;
    if (!f.is_dir && f.links == 0 && orphan.count(ino)) continue;
    if (ino != kRootIno && f.links == 0) {
      // Kept for snapshots: a replaced file a snapshot pins, or a replaced folder that
      // still holds hidden entries.
      std::string pk = keys::Ino(ino);
      auto pit = meta.NewIterator(Cf::kPinned);
      pit->Seek(pk);
      if (pit->Valid() && pit->key().starts_with(pk)) continue;
      if (f.is_dir && entries_in.count(ino)) continue;
      // A removed folder whose name was taken before the purger got to it.
      std::string q;
      if (f.is_dir && meta.Get(Cf::kDefault, keys::Purge(ino), &q).ok()) continue;
      problem("inode " + std::to_string(ino) + " is not named by any folder (leaked)");
      continue;
    }
    if (f.nlink != expect) {
      problem("inode " + std::to_string(ino) + " has link count " + std::to_string(f.nlink) +
              ", expected " + std::to_string(expect));
    }
  }

  // Index -> packs, first: the damaged chunks are known before the one pass over the
  // extents that finds who uses them.
  ASSIGN_OR_RETURN(auto packs, store.backend().List());
  std::map<PackId, uint64_t> pack_size;
  for (const auto& p : packs) pack_size[p.id] = p.size;
  r.packs = packs.size();
  double fraction = std::clamp(opts.verify_fraction, 0.0, 1.0);
  if (opts.verify_data && opts.verify_bytes > 0) {
    uint64_t total = 0;
    auto it = meta.NewIterator(Cf::kChunks);
    for (it->Seek(""); it->Valid(); it->Next()) {
      auto loc = ChunkLocation::Decode(it->value());
      if (loc.ok()) total += loc->length;
    }
    RETURN_IF_ERROR(it->status().WithContext("fsck scan chunk index"));
    fraction = total == 0 ? 1.0 : std::min(1.0, static_cast<double>(opts.verify_bytes) / total);
  }
  if (opts.verify_data) r.verify_fraction = fraction;
  uint64_t seed = opts.seed;
  if (seed == 0)
    seed = (static_cast<uint64_t>(std::random_device{}()) << 32) | std::random_device{}();
  auto chosen = [&](const ChunkId& id) {
    if (!opts.verify_data || fraction <= 0) return false;
    if (fraction >= 1) return true;
    // Ids are uniform hashes already; mixing in the seed makes each run's choice fresh.
    uint64_t x = GetBE64(id.AsSlice().data()) ^ seed;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return static_cast<double>(x) < fraction * 18446744073709551616.0;
  };
  // The length of every chunk in the index, sorted by id, for the pass over the extents:
  // a point read of the index per extent is a random read (ids are hashes, extents go by
  // inode), and once the index outgrows the block cache (small files keep their bytes in
  // it) each one is a disk read: fsck of 1,000,000 files spent most of its time there
  // (docs/reliability.md, "Scale"). 24 bytes per chunk. Unknown length: an entry that did
  // not decode (reported here already).
  struct IndexedChunk {
    ChunkId id;
    uint32_t length;
    bool decoded;
  };
  std::vector<IndexedChunk> indexed;
  {
    auto it = meta.NewIterator(Cf::kChunks);
    std::string buf;
    for (it->Seek(""); it->Valid(); it->Next()) {
      r.chunks++;
      auto k = keys::DecodeChunk(it->key());
      if (!k.ok()) {
        problem("chunk index key " + KeyHex(it->key()) + ": " + k.status().message());
        continue;
      }
      const ChunkId id = *k;
      auto loc = ChunkLocation::Decode(it->value());
      indexed.push_back(IndexedChunk{id, loc.ok() ? loc->length : 0, loc.ok()});
      if (!loc.ok()) {
        problem("index entry of " + id.Hex() + ": " + loc.status().ToString());
        continue;
      }
      r.stored_bytes += loc->length;
      if (loc->is_inline()) {
        if (chosen(id)) {
          r.verified_chunks++;
          r.verified_bytes += loc->length;
          if (store.chunks().Hash(loc->inline_data.data(), loc->length) != id) {
            damage(id, *loc, "hash mismatch",
                   "inline chunk " + id.Hex() + ": bytes do not match their hash");
          }
        }
        continue;
      }
      auto ps = pack_size.find(loc->pack);
      std::string where =
          " (pack " + std::to_string(loc->pack) + ", offset " + std::to_string(loc->offset) + ")";
      if (ps == pack_size.end()) {
        damage(id, *loc, "missing pack", "chunk " + id.Hex() + " is in missing pack" + where);
        continue;
      }
      if (loc->offset < pack::kRecordHeaderSize || loc->offset + loc->length > ps->second) {
        damage(id, *loc, "outside its pack",
               "chunk " + id.Hex() + " lies outside its pack" + where);
        continue;
      }
      buf.resize(pack::kRecordHeaderSize);
      Status s =
          store.backend().Read(loc->pack, loc->offset - pack::kRecordHeaderSize,
                               pack::kRecordHeaderSize, reinterpret_cast<uint8_t*>(buf.data()));
      pack::RecordHeader h;
      if (!s.ok() || !pack::ParseRecordHeader(buf, &h) || h.id != id || h.length != loc->length) {
        damage(id, *loc, "record header mismatch",
               "chunk " + id.Hex() + ": pack record header does not match the index" + where);
        continue;
      }
      if (chosen(id)) {
        r.verified_chunks++;
        r.verified_bytes += loc->length;
        Status rs = store.chunks().ReadAt(*loc, &buf);
        if (!rs.ok()) {
          damage(id, *loc, "unreadable: " + rs.ToString(),
                 "chunk " + id.Hex() + ": " + rs.ToString() + where);
        } else if (store.chunks().Hash(buf.data(), buf.size()) != id) {
          damage(id, *loc, "hash mismatch",
                 "chunk " + id.Hex() + ": bytes do not match their hash" + where);
        }
      }
    }
    RETURN_IF_ERROR(it->status().WithContext("fsck scan chunk index"));
  }
  std::sort(indexed.begin(), indexed.end(),
            [](const IndexedChunk& a, const IndexedChunk& b) { return a.id < b.id; });
  // Extents -> refcounts.
  std::unordered_map<ChunkId, int64_t, ChunkIdHash> counted;
  {
    auto it = meta.NewIterator(Cf::kExtents);
    for (it->Seek(""); it->Valid(); it->Next()) {
      r.extents++;
      auto k = keys::DecodePair(it->key());
      if (!k.ok()) {
        problem("extent key " + KeyHex(it->key()) + ": " + k.status().message());
        continue;
      }
      const uint64_t ino = k->a, off = k->b;
      auto e = ExtentValue::Decode(it->value());
      if (!e.ok()) {
        problem("extent of inode " + std::to_string(ino) + ": " + e.status().ToString());
        continue;
      }
      counted[e->id]++;
      if (!damaged_at.empty()) {
        auto d = damaged_at.find(e->id);
        if (d != damaged_at.end()) r.damaged[d->second].inodes.push_back(ino);
      }
      if (!inodes.count(ino)) {
        problem("extent at " + std::to_string(off) + " of missing inode " + std::to_string(ino));
      }
      auto in =
          std::lower_bound(indexed.begin(), indexed.end(), e->id,
                           [](const IndexedChunk& c, const ChunkId& id) { return c.id < id; });
      if (in != indexed.end() && in->id == e->id) {
        if (in->decoded && in->length != e->length) {
          problem("inode " + std::to_string(ino) + " offset " + std::to_string(off) +
                  ": extent length differs from chunk " + e->id.Short());
        }
        continue;
      }
      // Not in the index (scanned in the same snapshot): missing.
      std::string what = "inode " + std::to_string(ino) + " offset " + std::to_string(off) +
                         " references chunk " + e->id.Hex() + " missing from the index";
      ChunkLocation none;
      none.length = e->length;
      if (damaged_at.count(e->id)) {  // its inode was added above
        problem(what);
        continue;
      }
      damage(e->id, none, "missing from the index", what);
      auto d = damaged_at.find(e->id);
      if (d != damaged_at.end()) r.damaged[d->second].inodes.push_back(ino);
    }
    RETURN_IF_ERROR(it->status().WithContext("fsck scan extents"));
  }
  {
    // Indexed chunks that nothing references (refcount 0 or none) are reclaimed only
    // through their garbage marker: one without is leaked. The index (sorted above), the
    // refcounts and the garbage markers are all in chunk id order, so this is a merge of
    // the scans, not a read per chunk (each a database round trip on a shared store).
    auto gi = meta.NewIterator(Cf::kGarbage);
    gi->Seek("");
    size_t next = 0;  // the first chunk of `indexed` not settled yet
    auto unreferenced = [&](const IndexedChunk& c) {
      if (!c.decoded) return;  // reported with the index
      r.garbage_chunks++;
      const std::string key = keys::Chunk(c.id);
      while (gi->Valid() && gi->key() < key) gi->Next();
      if (!gi->Valid() || gi->key() != key) {
        problem("chunk " + c.id.Hex() + " is unreferenced but not marked for GC (leaked)");
      }
    };
    auto no_refcount_before = [&](const ChunkId* id) {  // null: to the end
      for (; next < indexed.size() && (!id || indexed[next].id < *id); next++) {
        unreferenced(indexed[next]);
      }
    };
    auto it = meta.NewIterator(Cf::kRefs);
    for (it->Seek(""); it->Valid(); it->Next()) {
      auto k = keys::DecodeChunk(it->key());
      if (!k.ok()) {
        problem("refcount key " + KeyHex(it->key()) + ": " + k.status().message());
        continue;
      }
      const ChunkId id = *k;
      auto count = kv::DecodeCounter(it->value());
      int64_t stored = count.ok() ? *count : -1;
      no_refcount_before(&id);
      if (next < indexed.size() && indexed[next].id == id) {
        if (stored == 0) unreferenced(indexed[next]);
        next++;
      }
      auto c = counted.find(id);
      int64_t expect = c == counted.end() ? 0 : c->second;
      if (stored != expect) {
        problem("chunk " + id.Hex() + " has refcount " + std::to_string(stored) + ", but " +
                std::to_string(expect) + " extents point at it");
      }
      if (c != counted.end()) counted.erase(c);
    }
    RETURN_IF_ERROR(it->status().WithContext("fsck scan refcounts"));
    no_refcount_before(nullptr);
    RETURN_IF_ERROR(gi->status().WithContext("fsck scan garbage markers"));
    for (const auto& [id, n] : counted) {
      problem("chunk " + id.Hex() + " has no refcount, but " + std::to_string(n) +
              " extents point at it");
    }
  }

  for (auto& d : r.damaged) {
    std::sort(d.inodes.begin(), d.inodes.end());
    d.inodes.erase(std::unique(d.inodes.begin(), d.inodes.end()), d.inodes.end());
  }
  return r;
}

}  // namespace snapfs
