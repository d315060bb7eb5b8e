#include "core/meta/meta_store.h"

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
  std::string v;
  Status s = Get(Cf::kRefs, keys::Chunk(id), &v);
  if (s.Is(Code::kNotFound)) return int64_t{0};
  RETURN_IF_ERROR(s);
  auto n = kv::DecodeCounter(v);
  if (!n.ok()) return n.status().WithContext("refcount of " + id.Short());
  return *n;
}

}  // namespace snapfs
