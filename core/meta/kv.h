// The metadata engine interface: an ordered, transactional key-value store in the style
// of JuiceFS's tkv and FoundationDB. Namespace, data commits, snapshots and GC say every
// change they make as one transaction; the engine, not a mutex of ours, decides between
// two transactions that race (in one daemon or in two). docs/architecture.md has the
// picture; docs/metadata-schema.md what the keys hold.
//
// Semantics (every engine; the conformance suite tests/kv_conformance_test.cc checks it):
// - Keys are byte strings ordered by memcmp within a key space (core/meta/spaces.h).
// - A transaction reads one snapshot of the store, plus its own writes (read-your-own-
//   writes, for Get and iterators alike). The snapshot is taken no later than its first
//   operation (read, scan or write): RocksDB takes it at Begin(), PostgreSQL with the
//   first statement (so that Begin costs no round trip). Callers must not depend on
//   anything in between: a transaction begins when it first touches the store.
// - Commit() applies every write of the transaction atomically, or none. It fails with
//   Code::kConflict when another transaction committed, after this one's snapshot, a
//   write to a key this one read with Get() or wrote with Put()/Delete(): snapshot
//   isolation plus conflict-checked reads (no lost update, no write skew on keys that
//   were read). The caller then retries the whole transaction (RunTxn does).
// - Iterators are NOT conflict-checked (no phantom protection): a transaction that
//   decides on the absence of keys in a range must also Get() a key that every writer
//   of that range writes (a folder's inode for its entries, a chunk's index entry for
//   its refcount...). The schema is laid out so such a guard key always exists.
// - Add() is an atomic counter increment that never makes its own transaction conflict
//   (two writers adding to one refcount both commit); a transaction that read the key
//   with Get() does conflict with it. Values of counter keys are LE64 (two's complement).
//   Only spaces with counters take adds (spaces.h CfHasCounters); an Add elsewhere makes
//   the commit fail with InvalidArgument and write nothing.
// - Commit(sync=true) is durable when it returns (survives power loss), and makes every
//   earlier commit durable too; sync=false commits survive a kill of the process.
//
// Cost (what each call is in round trips to a remote engine; the RocksDB and memory
// engines are in-process and make none): Begin 0 (PostgreSQL sends its BEGIN with the
// first statement), Get 1, Seek 1 (then one per page of Next), Put/Delete/Add 0
// (buffered; 1 if it is the transaction's first operation), Commit 1 (0 for a
// transaction that did nothing).
//
// Thread-safety: an Engine is safe for concurrent use; a Txn or Iterator is used by one
// thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/meta/spaces.h"
#include "base/status.h"

namespace snapfs::kv {

// A cursor over one key space, bounded by it. Sees the snapshot it was made from and,
// when made by a Txn, that transaction's writes.
class Iterator {
 public:
  virtual ~Iterator() = default;
  // Positions at the first key >= `key`.
  virtual void Seek(std::string_view key) = 0;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  // Valid() only. The views stay good until the next Seek/Next.
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  // Not OK if the iteration stopped on an error (Valid() is then false).
  virtual Status status() const = 0;
};

struct KeyValue {
  std::string key, value;
};

class Txn {
 public:
  virtual ~Txn() = default;
  // NotFound if absent. Conflict-checked at Commit.
  virtual Status Get(Cf space, std::string_view key, std::string* value) = 0;
  // Several Gets of one space at once, each exactly as Get (seen in the transaction,
  // checked at Commit): (*values)[i] is empty where Get would say NotFound. Engines with
  // round trips answer in one (the PostgreSQL engine: one per kMultiGetBatch keys); the
  // default calls Get for each key.
  virtual Status MultiGet(Cf space, const std::vector<std::string>& keys,
                          std::vector<std::optional<std::string>>* values);
  // Reads these keys ahead, of any spaces, so that the Gets of them that follow in this
  // transaction cost no round trip each: an engine with round trips reads them all in one
  // (PostgreSQL). A Get of a prefetched key answers exactly as it would have (the
  // transaction's own writes first) and is checked at Commit the same way. Only for
  // keys the caller reads next anyway: a prefetched key counts as read. The default
  // does nothing (each Get reads).
  virtual Status Prefetch(const std::vector<std::pair<Cf, std::string>>& keys) {
    return Status::OK();
  }
  virtual std::unique_ptr<Iterator> NewIterator(Cf space) = 0;
  // The same, ending before `upper_bound`: Valid() is false at the first key >= it. For
  // prefix scans over ranges this transaction deleted keys in: an engine that keeps the
  // transaction's deletes in its own index (RocksDB) would otherwise walk every deleted
  // key after the prefix before it finds the next live one (a 10,000-file snapshot
  // removal went quadratic that way). The default wraps NewIterator.
  virtual std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound);
  virtual void Put(Cf space, std::string_view key, std::string_view value) = 0;
  virtual void Delete(Cf space, std::string_view key) = 0;
  // Put and Delete without the write-write check: a write of `key` committed by another
  // transaction after this one's snapshot does not make this one conflict. Everything
  // else is as Put/Delete: atomic with the rest, seen by this transaction's reads, and a
  // conflict for every other transaction that read `key` (or wrote it with Put/Delete).
  // A key this transaction also read with Get(), or wrote with Put/Delete, stays checked.
  // Only for keys whose writers are already ordered by a checked guard key of the same
  // transaction (a file's extents: every writer of them reads or writes the file's
  // inode), or whose value is the same whoever wins (a garbage mark). The reason is
  // written at each use; it saves the engine tracking and validating the key.
  // An engine may check them anyway (the default: checking more never breaks a caller,
  // it only costs a retry that was not needed).
  virtual void PutUnchecked(Cf space, std::string_view key, std::string_view value) {
    Put(space, key, value);
  }
  virtual void DeleteUnchecked(Cf space, std::string_view key) { Delete(space, key); }
  virtual void Add(Cf space, std::string_view key, int64_t delta) = 0;
  // Applies everything or nothing; Conflict: retry. The Txn is done either way.
  virtual Status Commit(bool sync = false) = 0;
  // Writes buffered so far (tests, and callers that skip empty commits); 0 when there is
  // nothing to commit. Engines may count each write call, or each distinct key.
  virtual size_t pending_writes() const = 0;

  // Up to `limit` pairs with begin <= key < end (end "" = to the end of the space).
  Status Scan(Cf space, std::string_view begin, std::string_view end, size_t limit,
              std::vector<KeyValue>* out);
  // The counter at `key` (0 if absent), as this transaction sees it.
  Result<int64_t> GetCounter(Cf space, std::string_view key);
};

// A read-only view of the committed state at one moment: every Get and iterator of it
// reads that one snapshot, whatever commits meanwhile (fsck of a store in use). Unlike a
// Txn it tracks nothing for conflicts, so it may read a whole store. Used by one thread.
class ReadView {
 public:
  virtual ~ReadView() = default;
  virtual Status Get(Cf space, std::string_view key, std::string* value) = 0;
  virtual std::unique_ptr<Iterator> NewIterator(Cf space) = 0;
  // The same, ending before `upper_bound` (as Engine::NewBoundedIterator).
  virtual std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound);
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::unique_ptr<Txn> Begin() = 0;
  // Reads of the latest committed state, outside any transaction (never conflict).
  virtual Status Get(Cf space, std::string_view key, std::string* value) = 0;
  // Several Gets of one space at once, outside any transaction: (*values)[i] is empty
  // where Get says NotFound. For reads of many scattered keys (the refcounts of a
  // snapshot's chunks): RocksDB reads them in one batch (keys in order share the block
  // reads), PostgreSQL in one round trip per kMultiGetBatch keys. Default: Get each key.
  virtual Status MultiGet(Cf space, const std::vector<std::string>& keys,
                          std::vector<std::optional<std::string>>* values);
  virtual std::unique_ptr<Iterator> NewIterator(Cf space) = 0;
  // The same, ending before `upper_bound` (as Txn::NewBoundedIterator): for lookups in a
  // range where keys get deleted again and again (a rewritten file's extents), so that
  // the engine stops at the bound instead of stepping over every deleted key after it
  // (RocksDB keeps them until a compaction). The default wraps NewIterator.
  virtual std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound);
  // The same as NewIterator, for a sweep of a whole space in the background (store
  // gauges, GC): the engine keeps what it reads out of its caches, so that the sweep
  // does not evict what lookups and listings live on (RocksDB: fill_cache off). Default:
  // NewIterator.
  virtual std::unique_ptr<Iterator> NewScanIterator(Cf space) { return NewIterator(space); }
  // A consistent view of the latest committed state (ReadView). The default reads
  // through a transaction that is never committed (it tracks its reads: fine for the
  // memory engine's tests, not for a whole store).
  virtual Result<std::unique_ptr<ReadView>> NewReadView();
  // Makes every commit so far durable.
  virtual Status Sync() = 0;
  // "rocksdb:/var/lib/snapfs/meta", "memory".
  virtual std::string Describe() const = 0;
  // Housekeeping the engine cannot do on its own (the PostgreSQL engine folds counter
  // deltas and drops old tombstones); GC calls it after each run. Default: nothing.
  virtual Status Compact() { return Status::OK(); }

  // An error if the engine knows it cannot take writes any more (RocksDB after a failed
  // log write: it stays read-only until the database is opened again); `snapfs status`
  // reports it as degraded.
  virtual Status Health() const { return Status::OK(); }
};

struct RunOptions {
  int max_attempts = 64;  // then Busy: something is starving this transaction
  bool sync = false;      // Commit(sync)
  // After max_attempts, return the last Conflict instead of Busy: for callers that do
  // something else then (GC splits its batch and leaves a contended chunk for later).
  bool return_conflict = false;
};

// Runs `attempt` again (after a short randomized backoff) while it returns Conflict, at
// most `max_attempts` times; then Busy. For callers whose transaction is built by more
// than one function (the data path), so that RunTxn's shape does not fit.
Status RetryOnConflict(const std::function<Status()>& attempt, int max_attempts = 64);

// Runs `body` in a new transaction and commits it, retrying the whole of it (with a
// short randomized backoff) while the commit conflicts. `body` must have no effect
// outside the transaction that a retry would repeat wrongly. A body that returns an
// error aborts (nothing is written) and RunTxn returns that error.
Status RunTxn(Engine& engine, const std::function<Status(Txn&)>& body, RunOptions opts = {});

// Txn::Prefetch of any number of keys, kPrefetchBatch at a time (an engine may refuse
// more in one call: PostgreSQL's statement takes 256).
inline constexpr size_t kPrefetchBatch = 256;
Status PrefetchInBatches(Txn& t, const std::vector<std::pair<Cf, std::string>>& keys);

// Encoding of counter values (Add), for engines and for code reading counters raw.
std::string EncodeCounter(int64_t v);
Result<int64_t> DecodeCounter(std::string_view v);
// A counter read with any reader that has Get (Engine, Txn, ReadView): 0 if absent.
template <typename Reader>
Result<int64_t> ReadCounter(Reader& r, Cf space, std::string_view key) {
  std::string v;
  Status s = r.Get(space, key, &v);
  if (s.Is(Code::kNotFound)) return int64_t{0};
  RETURN_IF_ERROR(s);
  return DecodeCounter(v);
}
// What Commit returns after an Add to a space without counters (CfHasCounters).
inline Status BadAdd(Cf space) {
  return Status::InvalidArgument(std::string("metadata commit: Add to key space '") +
                                 CfName(space) + "', which holds no counters");
}

// An engine that keeps everything in memory (tests; the model the others must match).
std::unique_ptr<Engine> NewMemoryEngine();

}  // namespace snapfs::kv
