// MetaStore: the store's metadata engine (core/meta/kv.h) and the few helpers every layer
// above shares: committed-state reads, iterators, and the count of log syncs (what a
// durability promise costs). Keys and values: core/meta/schema.h (and
// docs/metadata-schema.md). Nothing above core/meta names an engine: the RocksDB engine
// (embedded default) and any other (the memory engine in tests, a shared SQL engine)
// sit behind the same kv::Engine.
//
// Thread-safety: safe for concurrent use (engines are). Read-modify-write sequences are
// engine transactions (engine().Begin(), kv::RunTxn).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/chunk_id.h"
#include "base/status.h"
#include "core/meta/kv.h"
#include "core/meta/schema.h"
#include "core/meta/spaces.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace snapfs {

class MetaStore {
 public:
  // The RocksDB engine in `dir` (with `create`: a new one; error if it exists).
  // `env`: as RocksEngine::Open's (nullptr: RocksDB's default).
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& dir, bool create,
                                                 rocksdb::Env* env = nullptr);
  // Any engine (tests: the memory engine).
  explicit MetaStore(std::unique_ptr<kv::Engine> engine);
  ~MetaStore();

  // The transactional engine (core/meta/kv.h).
  kv::Engine& engine() { return *engine_; }

  // Latest committed state, outside any transaction. NotFound if the key is absent.
  Status Get(Cf c, std::string_view key, std::string* value);
  std::unique_ptr<kv::Iterator> NewIterator(Cf c);
  // The same, ending before `upper_bound` (kv::Engine::NewBoundedIterator).
  std::unique_ptr<kv::Iterator> NewBoundedIterator(Cf c, std::string_view upper_bound);
  // For a background sweep of a whole space (kv::Engine::NewScanIterator).
  std::unique_ptr<kv::Iterator> NewScanIterator(Cf c) { return engine_->NewScanIterator(c); }
  // Makes every commit so far durable (counted as a log sync).
  Status SyncWal();
  // Log syncs so far (synced commits and SyncWal calls): what a durability promise costs,
  // for metrics and for tests that check a commit was made durable.
  uint64_t log_syncs() const { return log_syncs_.load(std::memory_order_relaxed); }
  // For synced commits made through engine() directly.
  void CountLogSync() { log_syncs_.fetch_add(1, std::memory_order_relaxed); }
  // Current refcount of a chunk (adds resolved); 0 if absent.
  Result<int64_t> RefCount(const ChunkId& id);
  // The same for many chunks, in the order given, read in batches (kv::Engine::MultiGet):
  // ids in order share RocksDB's block reads, and PostgreSQL answers a batch per round trip.
  Result<std::vector<int64_t>> RefCounts(const std::vector<ChunkId>& ids);
  // Sweeps the garbage candidates (Cf::kGarbage) a batch at a time: `fn` gets each batch
  // of ids with their current refcounts. GC's plan and the store gauges read them this
  // way, because a read per candidate was a database round trip each on a shared store.
  using GarbageBatchFn =
      std::function<Status(const std::vector<ChunkId>& ids, const std::vector<int64_t>& refs)>;
  Status ScanGarbage(const GarbageBatchFn& fn);

 private:
  std::unique_ptr<kv::Engine> engine_;
  std::atomic<uint64_t> log_syncs_{0};
};

}  // namespace snapfs
