#include "core/meta/meta_store.h"

#include "base/coding.h"

namespace snapfs {


Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir, bool create) {
  std::unique_ptr<MetaStore> m(new MetaStore());
  ASSIGN_OR_RETURN(m->engine_, kv::RocksEngine::Open(dir, create));
  return m;
}

MetaStore::~MetaStore() = default;

Status MetaStore::Get(Cf c, std::string_view key, std::string* value) {
  return engine_->Get(c, key, value);
}

Status MetaStore::Write(rocksdb::WriteBatch* batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  if (sync) log_syncs_.fetch_add(1, std::memory_order_relaxed);
  return FromRocks(db()->Write(wo, batch), "metadata write");
}

Status MetaStore::SyncWal() {
  log_syncs_.fetch_add(1, std::memory_order_relaxed);
  return engine_->Sync();
}

std::unique_ptr<rocksdb::Iterator> MetaStore::NewIterator(Cf c) {
  return std::unique_ptr<rocksdb::Iterator>(db()->NewIterator(rocksdb::ReadOptions(), cf(c)));
}

Result<int64_t> MetaStore::RefCount(const ChunkId& id) {
  std::string v;
  Status s = Get(Cf::kRefs, keys::Chunk(id), &v);
  if (s.Is(Code::kNotFound)) return int64_t{0};
  RETURN_IF_ERROR(s);
  if (v.size() != 8) return Status::Corruption("refcount of " + id.Short() + " has wrong size");
  return static_cast<int64_t>(GetLE64(v.data()));
}

}  // namespace snapfs
