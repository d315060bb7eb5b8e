#include "core/meta/meta_store.h"

#include <algorithm>

#include "core/meta/rocksdb_engine.h"

namespace snapfs {

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir, bool create,
                                                   rocksdb::Env* env) {
  ASSIGN_OR_RETURN(auto engine, kv::RocksEngine::Open(dir, create, env));
  return std::make_unique<MetaStore>(std::move(engine));
}

MetaStore::MetaStore(std::unique_ptr<kv::Engine> engine) : engine_(std::move(engine)) {}

MetaStore::~MetaStore() = default;

Status MetaStore::Get(Cf c, std::string_view key, std::string* value) {
  return engine_->Get(c, key, value);
}

Status MetaStore::SyncWal() {
  log_syncs_.fetch_add(1, std::memory_order_relaxed);
  return engine_->Sync();
}

std::unique_ptr<kv::Iterator> MetaStore::NewIterator(Cf c) { return engine_->NewIterator(c); }
std::unique_ptr<kv::Iterator> MetaStore::NewBoundedIterator(Cf c, std::string_view upper_bound) {
  return engine_->NewBoundedIterator(c, upper_bound);
}

Result<int64_t> MetaStore::RefCount(const ChunkId& id) {
  auto n = kv::ReadCounter(*engine_, Cf::kRefs, keys::Chunk(id));
  if (!n.ok()) return n.status().WithContext("refcount of " + id.Short());
  return *n;
}

Result<std::vector<int64_t>> MetaStore::RefCounts(const std::vector<ChunkId>& ids) {
  // Batches bound the memory a read holds (RocksDB pins each value it returns).
  constexpr size_t kBatch = 4096;
  std::vector<int64_t> out;
  out.reserve(ids.size());
  std::vector<std::string> keys;
  std::vector<std::optional<std::string>> values;
  for (size_t from = 0; from < ids.size(); from += kBatch) {
    const size_t n = std::min(kBatch, ids.size() - from);
    keys.clear();
    for (size_t i = 0; i < n; i++) keys.push_back(keys::Chunk(ids[from + i]));
    RETURN_IF_ERROR(engine_->MultiGet(Cf::kRefs, keys, &values));
    for (size_t i = 0; i < n; i++) {
      if (!values[i]) {
        out.push_back(0);
        continue;
      }
      auto c = kv::DecodeCounter(*values[i]);
      if (!c.ok()) return c.status().WithContext("refcount of " + ids[from + i].Short());
      out.push_back(*c);
    }
  }
  return out;
}

Status MetaStore::ScanGarbage(const GarbageBatchFn& fn) {
  constexpr size_t kBatch = 4096;
  std::vector<ChunkId> batch;
  auto settle = [&]() -> Status {
    if (batch.empty()) return Status::OK();
    ASSIGN_OR_RETURN(auto refs, RefCounts(batch));
    RETURN_IF_ERROR(fn(batch, refs));
    batch.clear();
    return Status::OK();
  };
  auto it = NewScanIterator(Cf::kGarbage);
  for (it->Seek(""); it->Valid(); it->Next()) {
    if (it->key().size() != ChunkId::kSize) continue;
    batch.push_back(ChunkId::FromBytes(it->key().data()));
    if (batch.size() == kBatch) RETURN_IF_ERROR(settle());
  }
  RETURN_IF_ERROR(it->status().WithContext("scan garbage"));
  return settle();
}

}  // namespace snapfs
