// MetaStore: the store's metadata engine (RocksDB, core/meta/rocksdb_engine.h) with the
// helpers the code that has not moved to kv transactions yet still uses. Keys and values:
// core/meta/schema.h (and docs/metadata-schema.md).
//
// Thread-safety: MetaStore is safe for concurrent use (RocksDB is). Read-modify-write
// sequences are engine transactions (engine(), core/meta/kv.h); the namespace's
// WriteBatch path is still serialised by Filesystem::ns_mu_ (docs/architecture.md).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/chunk_id.h"
#include "core/meta/kv.h"
#include "core/meta/rocksdb_engine.h"
#include "core/meta/schema.h"
#include "core/meta/spaces.h"
#include "base/status.h"

namespace snapfs {


using kv::FromRocks;

class MetaStore {
 public:
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& dir, bool create);
  ~MetaStore();

  // The transactional engine (core/meta/kv.h): new code writes through it.
  kv::Engine& engine() { return *engine_; }
  // The WriteBatch path below is the one the namespace still uses; its writes take part
  // in the engine's conflict checks (core/meta/rocksdb_engine.h).
  rocksdb::DB* db() { return engine_->db(); }
  rocksdb::ColumnFamilyHandle* cf(Cf c) { return engine_->cf(c); }

  // Returns NotFound if the key is absent.
  Status Get(Cf c, std::string_view key, std::string* value);
  // Applies a batch atomically. `sync` also makes it (and everything before) durable.
  Status Write(rocksdb::WriteBatch* batch, bool sync = false);
  // Makes every write so far durable.
  Status SyncWal();
  // Log syncs so far (synced writes and SyncWal calls): what a durability promise costs,
  // for metrics and for tests that check a commit was made durable.
  uint64_t log_syncs() const { return log_syncs_.load(std::memory_order_relaxed); }
  // For synced commits made through engine() directly.
  void CountLogSync() { log_syncs_.fetch_add(1, std::memory_order_relaxed); }
  std::unique_ptr<rocksdb::Iterator> NewIterator(Cf c);
  // Current refcount of a chunk (merge operands resolved); 0 if absent.
  Result<int64_t> RefCount(const ChunkId& id);

 private:
  MetaStore() = default;
  std::unique_ptr<kv::RocksEngine> engine_;
  std::atomic<uint64_t> log_syncs_{0};
};

}  // namespace snapfs
