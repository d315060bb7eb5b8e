#include "core/gc.h"

#include <map>
#include <mutex>
#include <unordered_set>

#include "core/coding.h"
#include "core/pack_format.h"

namespace snapfs {

namespace {
constexpr size_t kBatchChunks = 1024;
}

Result<GcPlan> PlanGc(Store& store, const GcOptions& opts) {
  MetaStore& meta = store.meta();
  GcPlan plan;
  std::unordered_set<ChunkId, ChunkIdHash> dead;
  auto it = meta.NewIterator(Cf::kGarbage);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != ChunkId::kSize) continue;
    ChunkId id = ChunkId::FromBytes(it->key().data());
    ASSIGN_OR_RETURN(int64_t count, meta.RefCount(id));
    std::string v;
    Status s = meta.Get(Cf::kChunks, keys::Chunk(id), &v);
    if (count > 0 || s.Is(Code::kNotFound)) {
      plan.revived.push_back(id);
      continue;
    }
    RETURN_IF_ERROR(s);
    ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(v));
    plan.dead_chunks.push_back(id);
    plan.dead_bytes += loc.length;
    dead.insert(id);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan garbage"));

  // Live bytes per pack, from the index (dead chunks excluded).
  std::map<PackId, uint64_t> live;
  auto ci = meta.NewIterator(Cf::kChunks);
  for (ci->SeekToFirst(); ci->Valid(); ci->Next()) {
    ChunkId id = ChunkId::FromBytes(ci->key().data());
    if (dead.count(id)) continue;
    ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(ci->value().ToStringView()));
    live[loc.pack] += loc.length + pack::kRecordHeaderSize;
  }
  RETURN_IF_ERROR(FromRocks(ci->status(), "scan chunk index"));

  ASSIGN_OR_RETURN(auto packs, store.backend().List());
  PackId active = store.chunks().active_pack();
  for (const auto& p : packs) {
    if (p.id == active) continue;
    uint64_t l = live.count(p.id) ? live[p.id] : 0;
    if (static_cast<double>(l) < opts.rewrite_below_live_fraction * static_cast<double>(p.size) ||
        l == 0) {
      plan.rewrite.push_back(PackUsage{p.id, p.size, l});
      plan.bytes_to_copy += l;
      plan.bytes_to_free += p.size - std::min(p.size, l);
    }
  }
  return plan;
}

namespace {

// Drops chunks whose count is zero and no writer holds; forgets revived candidates.
Status CollectDead(Store& store, const std::vector<ChunkId>& ids, bool revived,
                   GcResult* result) {
  MetaStore& meta = store.meta();
  ChunkStore& chunks = store.chunks();
  for (size_t i = 0; i < ids.size(); i += kBatchChunks) {
    std::lock_guard cl(chunks.gc_lock());
    std::unique_lock ml(meta.commit_lock());
    rocksdb::WriteBatch b;
    for (size_t j = i; j < std::min(ids.size(), i + kBatchChunks); j++) {
      const ChunkId& id = ids[j];
      if (chunks.IsHeldLocked(id)) continue;  // a writer is about to reference it
      ASSIGN_OR_RETURN(int64_t count, meta.RefCount(id));
      if (count > 0) {
        (void)b.Delete(meta.cf(Cf::kGarbage), keys::Chunk(id));
        continue;
      }
      if (revived) {
        std::string v;
        if (meta.Get(Cf::kChunks, keys::Chunk(id), &v).ok()) continue;  // dead again: next run
        (void)b.Delete(meta.cf(Cf::kGarbage), keys::Chunk(id));
        (void)b.Delete(meta.cf(Cf::kRefs), keys::Chunk(id));
        continue;
      }
      (void)b.Delete(meta.cf(Cf::kChunks), keys::Chunk(id));
      (void)b.Delete(meta.cf(Cf::kRefs), keys::Chunk(id));
      (void)b.Delete(meta.cf(Cf::kGarbage), keys::Chunk(id));
      chunks.DropFromCache(id);
      result->chunks_deleted++;
    }
    RETURN_IF_ERROR(meta.WriteLocked(&b, /*sync=*/false));
  }
  return Status::OK();
}

// Copies the indexed chunks of one pack to the active pack, repoints the index, and
// removes the pack.
Status RewritePack(Store& store, const PackUsage& p, GcResult* result) {
  MetaStore& meta = store.meta();
  ChunkStore& chunks = store.chunks();
  std::string data(p.size, '\0');
  Status rs = store.backend().Read(p.id, 0, p.size, reinterpret_cast<uint8_t*>(data.data()));
  if (rs.Is(Code::kNotFound)) return Status::OK();  // an earlier run of this plan removed it
  RETURN_IF_ERROR(rs.WithContext("gc read pack " + std::to_string(p.id)));
  struct Move {
    ChunkId id;
    ChunkLocation from, to;
  };
  std::vector<Move> moves;
  size_t pos = pack::IsHeader(data) ? pack::kHeaderSize : data.size();
  while (pos + pack::kRecordHeaderSize <= data.size()) {
    pack::RecordHeader h;
    if (!pack::ParseRecordHeader(std::string_view(data).substr(pos), &h)) break;  // torn tail
    uint64_t off = pos + pack::kRecordHeaderSize;
    if (off + h.length > data.size()) break;
    std::string v;
    Status s = meta.Get(Cf::kChunks, keys::Chunk(h.id), &v);
    if (s.ok()) {
      ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(v));
      if (loc.pack == p.id && loc.offset == off) {
        std::span bytes(reinterpret_cast<const uint8_t*>(data.data() + off), h.length);
        if (chunks.Hash(bytes.data(), bytes.size()) != h.id) {
          return Status::Corruption("gc: chunk " + h.id.Hex() + " in pack " +
                                    std::to_string(p.id) + " is corrupt; run snapfs fsck");
        }
        ASSIGN_OR_RETURN(auto to, chunks.Relocate(h.id, bytes));
        moves.push_back(Move{h.id, loc, to});
        result->bytes_copied += h.length;
      }
    } else if (!s.Is(Code::kNotFound)) {
      return s;
    }
    pos = off + h.length;
  }
  // The copies are durable before the index points at them.
  RETURN_IF_ERROR(chunks.SyncAll());
  {
    std::lock_guard cl(chunks.gc_lock());
    std::unique_lock ml(meta.commit_lock());
    rocksdb::WriteBatch b;
    for (const auto& m : moves) {
      std::string v;
      Status s = meta.Get(Cf::kChunks, keys::Chunk(m.id), &v);
      if (!s.ok()) continue;
      ASSIGN_OR_RETURN(auto now, ChunkLocation::Decode(v));
      if (now.pack != m.from.pack || now.offset != m.from.offset) continue;
      (void)b.Put(meta.cf(Cf::kChunks), keys::Chunk(m.id), m.to.Encode());
    }
    // Durable before the old pack goes: a crash must never leave the index pointing at it.
    RETURN_IF_ERROR(meta.WriteLocked(&b, /*sync=*/true));
    // A writer that has not committed yet may point into this pack (chunks it appended,
    // or another writer's uncommitted chunks it dedups against): then the pack stays
    // until a later GC, when nothing uncommitted points into it.
    if (chunks.PackHasInflightLocked(p.id)) return Status::OK();
    // Removed under the locks: no writer can pick up a location in it meanwhile.
    RETURN_IF_ERROR(store.backend().Remove(p.id).WithContext("gc remove pack"));
  }
  result->packs_removed++;
  result->bytes_freed += p.size;
  return Status::OK();
}

}  // namespace

Result<GcResult> ExecuteGc(Store& store, const GcPlan& plan) {
  GcResult r;
  RETURN_IF_ERROR(CollectDead(store, plan.revived, /*revived=*/true, &r));
  RETURN_IF_ERROR(CollectDead(store, plan.dead_chunks, /*revived=*/false, &r));
  // Dead-chunk deletions reach the log before any pack they pointed into is removed.
  RETURN_IF_ERROR(store.meta().SyncWal());
  PackId active = store.chunks().active_pack();
  for (const auto& p : plan.rewrite) {
    if (p.id == active) continue;
    RETURN_IF_ERROR(RewritePack(store, p, &r));
  }
  if (r.bytes_copied > r.bytes_freed) r.bytes_freed = 0;
  else r.bytes_freed -= r.bytes_copied;
  return r;
}

Result<GcResult> RunGc(Store& store, const GcOptions& opts) {
  static std::mutex gc_mu;
  std::lock_guard l(gc_mu);
  ASSIGN_OR_RETURN(auto plan, PlanGc(store, opts));
  return ExecuteGc(store, plan);
}

}  // namespace snapfs
