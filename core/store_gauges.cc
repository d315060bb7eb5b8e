#include "core/store_gauges.h"

#include <unordered_set>
#include <vector>

#include "base/coding.h"
#include "core/fs/inode.h"
#include "core/chunks/pack_format.h"

namespace snapfs {

namespace {

Result<uint64_t> CountKeys(MetaStore& meta, Cf cf) {
  uint64_t n = 0;
  auto it = meta.NewScanIterator(cf);
  for (it->Seek(""); it->Valid(); it->Next()) n++;
  RETURN_IF_ERROR(it->status().WithContext("count keys"));
  return n;
}

}  // namespace

Result<StoreGauges> CountSnapshots(Store& store) {
  StoreGauges g;
  ASSIGN_OR_RETURN(g.snapshots, CountKeys(store.meta(), Cf::kSnapshots));
  ASSIGN_OR_RETURN(g.pins, CountKeys(store.meta(), Cf::kPins));
  ASSIGN_OR_RETURN(g.hidden_entries, CountKeys(store.meta(), Cf::kHidden));
  auto it = store.meta().NewScanIterator(Cf::kDefault);
  for (it->Seek(keys::kPurgePrefix); it->Valid() && it->key().starts_with(keys::kPurgePrefix);
       it->Next()) {
    g.purge_folders++;
    auto pv = PurgeValue::Decode(it->value());
    if (pv.ok()) g.purge_removed += pv->removed;
  }
  RETURN_IF_ERROR(it->status().WithContext("scan the purge queue"));
  return g;
}

Result<StoreGauges> ComputeStoreGauges(Store& store) {
  ASSIGN_OR_RETURN(StoreGauges g, CountSnapshots(store));
  MetaStore& meta = store.meta();
  {
    auto it = meta.NewScanIterator(Cf::kInodes);
    for (it->Seek(""); it->Valid(); it->Next()) {
      auto node = Inode::Decode(GetBE64(it->key().data()), it->value());
      if (node.ok() && node->is_reg()) g.logical_bytes += node->size;
    }
    RETURN_IF_ERROR(it->status().WithContext("scan inodes"));
  }
  // Chunks with a zero count are garbage candidates: their bytes count as dead.
  std::unordered_set<ChunkId, ChunkIdHash> garbage;
  RETURN_IF_ERROR(meta.ScanGarbage([&](const std::vector<ChunkId>& ids,
                                       const std::vector<int64_t>& refs) -> Status {
    for (size_t i = 0; i < ids.size(); i++) {
      if (refs[i] <= 0) garbage.insert(ids[i]);
    }
    return Status::OK();
  }));
  uint64_t live_in_packs = 0;
  {
    auto it = meta.NewScanIterator(Cf::kChunks);
    for (it->Seek(""); it->Valid(); it->Next()) {
      auto loc = ChunkLocation::Decode(it->value());
      if (!loc.ok()) continue;
      g.chunks++;
      g.stored_bytes += loc->length;
      ChunkId id = ChunkId::FromBytes(it->key().data());
      if (!loc->is_inline() && !garbage.count(id)) {
        live_in_packs += loc->length + pack::kRecordHeaderSize;
      }
    }
    RETURN_IF_ERROR(it->status().WithContext("scan chunk index"));
  }
  ASSIGN_OR_RETURN(auto packs, store.backend().List());
  for (const auto& p : packs) {
    g.packs++;
    g.pack_bytes += p.size;
  }
  uint64_t overhead = g.packs * pack::kHeaderSize;
  g.dead_bytes =
      g.pack_bytes > live_in_packs + overhead ? g.pack_bytes - live_in_packs - overhead : 0;
  return g;
}

}  // namespace snapfs
