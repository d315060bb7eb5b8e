// The RocksDB engine: the embedded default. One column family per key space, opened as
// an OptimisticTransactionDB: a transaction buffers its writes in a WriteBatchWithIndex
// (read-your-own-writes), and Commit checks, under RocksDB's own locks, that no key it
// read (GetForUpdate) or wrote was written by anyone after its snapshot; Add is a merge
// (int64 add operator) that is not tracked, so concurrent adds never conflict, and
// PutUnchecked/DeleteUnchecked are untracked writes. A transaction's writes wait in a
// plain buffer until something could read them (rocksdb_engine.cc, RocksTxn): writes
// that are never read back are never indexed.
//
// Writes made outside transactions (the WriteBatch path the namespace still uses, see
// docs/architecture.md) take part in that check too: they raise the sequence number of
// the keys they write, which is what Commit compares.
//
// Thread-safety: safe for concurrent use (RocksDB is).
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "core/meta/kv.h"

namespace rocksdb {
class OptimisticTransactionDB;
class Transaction;
}

namespace snapfs::kv {

// Converts a RocksDB status to ours (Busy and TryAgain from a commit are conflicts).
Status FromRocks(const rocksdb::Status& s, std::string_view context);

class RocksEngine : public Engine {
 public:
  // Opens (or, with `create`, creates: error if it exists) the database in `dir`. `env`
  // (not owned; must outlive the engine) replaces RocksDB's default Env: tests pass one
  // whose file system drops unsynced bytes at a simulated power cut (tests/util/power_cut.h).
  static Result<std::unique_ptr<RocksEngine>> Open(const std::string& dir, bool create,
                                                   rocksdb::Env* env = nullptr);
  ~RocksEngine() override;

  std::unique_ptr<Txn> Begin() override;
  Status Get(Cf space, std::string_view key, std::string* value) override;
  Status MultiGet(Cf space, const std::vector<std::string>& keys,
                  std::vector<std::optional<std::string>>* values) override;
  std::unique_ptr<Iterator> NewIterator(Cf space) override;
  std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound) override;
  // fill_cache off: a sweep's blocks do not take the block cache from lookups.
  std::unique_ptr<Iterator> NewScanIterator(Cf space) override;
  // A RocksDB snapshot: reads at its sequence number, nothing tracked; its iterators
  // (fsck's sweeps) leave the block cache alone as NewScanIterator's do.
  Result<std::unique_ptr<ReadView>> NewReadView() override;
  Status Sync() override;
  std::string Describe() const override { return "rocksdb:" + dir_; }

  // The non-transactional path (WriteBatch writes, raw iterators), for code that has not
  // moved to transactions yet.
  rocksdb::DB* db();
  rocksdb::ColumnFamilyHandle* cf(Cf c) { return handles_[static_cast<size_t>(c)]; }

  // A commit failed for another reason than a conflict (an I/O error or a full disk in
  // the log), or a background flush or compaction failed (RocksDB reports it through an
  // EventListener): RocksDB has stopped writing (its background error). Sync then fails
  // without calling into RocksDB (see Sync), and the next commit or sync first asks
  // RocksDB to resume (Recover).
  void NoteWriteFailure() { write_failed_.store(true); }
  // An append to the metadata log failed (RocksDB's listener says so): not resumable.
  void NoteLogFailure() {
    log_failed_.store(true);
    write_failed_.store(true);
  }
  bool write_failed() const { return write_failed_.load(); }
  // After a write failure: DB::Resume (which flushes the memtables into tables), one
  // caller at a time; the others wait for its result. OK and healthy again if RocksDB
  // resumed; else its error (NoSpace while the disk is still full) and the store stays
  // degraded. Not after a failed log append: Debian's RocksDB 7.8 resumes then without
  // replacing the log writer that failed when the memtables are empty (it switches logs
  // only by flushing a memtable), and its next append to that writer aborts the process
  // (an assertion). Such a store needs opening again (a remount).
  Status Recover();
  Status Health() const override;

  // An iterator over `space` stepped over kSkipFlushTrigger entries that no reader sees
  // (deleted keys, older versions of keys) in its Seeks and Nexts: the space's memtable
  // is flushed if it holds that many entries, at most once per kSkipFlushInterval
  // (see the .cc).
  void NoteSkipped(Cf space);
  static constexpr uint64_t kSkipFlushTrigger = 256;
  static constexpr std::chrono::milliseconds kSkipFlushInterval{100};

  // Takes back a finished transaction's RocksDB object (our Txn's destructor calls it)
  // for the next Begin() to reuse; kept up to kPoolMax, else deleted.
  void Recycle(rocksdb::Transaction* t);

 private:
  RocksEngine() = default;

  static constexpr size_t kPoolMax = 16;
  std::string dir_;
  rocksdb::OptimisticTransactionDB* txn_db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::atomic<bool> write_failed_{false};
  std::atomic<bool> log_failed_{false};
  Mutex recover_mu_;  // one DB::Resume at a time
  mutable Mutex health_mu_;
  // Why the last DB::Resume failed ("" before one has): Health reports it.
  std::string resume_error_ GUARDED_BY(health_mu_);
  // When NoteSkipped last flushed each space (steady clock, ns).
  std::atomic<int64_t> skip_flushed_at_[kCfCount] = {};
  Mutex pool_mu_;
  std::vector<rocksdb::Transaction*> pool_ GUARDED_BY(pool_mu_);
};

}  // namespace snapfs::kv
