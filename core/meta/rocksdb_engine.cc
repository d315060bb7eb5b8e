#include "core/meta/rocksdb_engine.h"

#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/optimistic_transaction_db.h>
#include <rocksdb/utilities/transaction.h>

#include "base/coding.h"

namespace snapfs::kv {
namespace {

// Counters (Add) are int64 merges: no read-modify-write, so adds never conflict.
class Int64AddOperator : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& key, const rocksdb::Slice* existing,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* logger) const override {
    uint64_t a = 0, b = 0;
    if (existing && existing->size() == 8) a = GetLE64(existing->data());
    if (value.size() == 8) b = GetLE64(value.data());
    new_value->clear();
    PutLE64(new_value, a + b);  // wraps: -1 is 2^64-1
    return true;
  }
  // Stores made before the engine interface named it so on the refs column family.
  const char* Name() const override { return "snapfs.Int64Add"; }
};

rocksdb::Slice S(std::string_view v) { return rocksdb::Slice(v.data(), v.size()); }

class RocksIterator : public Iterator {
 public:
  // `snapshot_owner`: the DB whose snapshot `snapshot` is, released with the iterator.
  explicit RocksIterator(rocksdb::Iterator* it) : it_(it) {}
  void Seek(std::string_view key) override { it_->Seek(S(key)); }
  bool Valid() const override { return it_->Valid(); }
  void Next() override { it_->Next(); }
  std::string_view key() const override { return it_->key().ToStringView(); }
  std::string_view value() const override { return it_->value().ToStringView(); }
  Status status() const override { return FromRocks(it_->status(), "metadata scan"); }

 private:
  std::unique_ptr<rocksdb::Iterator> it_;
};

class RocksTxn : public Txn {
 public:
  RocksTxn(RocksEngine* e, rocksdb::Transaction* t) : e_(e), t_(t) {
    ro_.snapshot = t_->GetSnapshot();
  }
  ~RocksTxn() override {
    if (!done_) (void)t_->Rollback();
  }

  Status Get(Cf space, std::string_view key, std::string* value) override {
    // GetForUpdate: the key is tracked, so a later write by anyone else conflicts.
    auto s = t_->GetForUpdate(ro_, e_->cf(space), S(key), value);
    if (s.IsNotFound()) return Status::NotFound();
    return FromRocks(s, "metadata get");
  }
  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    return std::make_unique<RocksIterator>(t_->GetIterator(ro_, e_->cf(space)));
  }
  void Put(Cf space, std::string_view key, std::string_view value) override {
    Note(t_->Put(e_->cf(space), S(key), S(value)));
  }
  void Delete(Cf space, std::string_view key) override {
    Note(t_->Delete(e_->cf(space), S(key)));
  }
  void Add(Cf space, std::string_view key, int64_t delta) override {
    Note(t_->MergeUntracked(e_->cf(space), S(key), S(EncodeCounter(delta))));
  }
  Status Commit(bool sync) override {
    if (done_) return Status::InvalidArgument("transaction already committed");
    done_ = true;
    RETURN_IF_ERROR(first_error_);
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    t_->SetWriteOptions(wo);
    return FromRocks(t_->Commit(), "metadata commit");
  }
  size_t pending_writes() const override { return t_->GetNumKeys(); }

 private:
  // Put/Delete/Merge buffer into the transaction's batch and only fail on misuse; the
  // first failure is reported by Commit, which then writes nothing.
  void Note(const rocksdb::Status& s) {
    if (!s.ok() && first_error_.ok()) first_error_ = FromRocks(s, "metadata write");
  }

  RocksEngine* e_;
  std::unique_ptr<rocksdb::Transaction> t_;
  rocksdb::ReadOptions ro_;
  bool done_ = false;
  Status first_error_;
};

}  // namespace

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::OK();
  std::string m = std::string(context) + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(m);
  if (s.IsNoSpace()) return Status::NoSpace(m);
  if (s.IsCorruption()) return Status::Corruption(m);
  // A commit's conflict check: Busy (a tracked key changed) or TryAgain (the memtables
  // no longer hold enough history to tell): either way, run the transaction again.
  if (s.IsBusy() || s.IsTryAgain()) return Status::Conflict(m);
  if (s.IsTimedOut()) return Status::Busy(m);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(m);
  return Status::IOError(m);
}

Result<std::unique_ptr<RocksEngine>> RocksEngine::Open(const std::string& dir, bool create) {
  rocksdb::Options opts;
  opts.create_if_missing = create;
  // Stores made by an older snapfs lack the column families added since; they start empty.
  opts.create_missing_column_families = true;
  opts.error_if_exists = create;
  opts.max_background_jobs = 2;
  opts.keep_log_file_num = 3;
  opts.max_log_file_size = 4 << 20;
  opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // Memory is bounded by caches, not by store size: all memtables together flush at
  // 64 MiB, the block cache below holds 64 MiB, and open table files are capped.
  opts.db_write_buffer_size = 64 << 20;
  opts.write_buffer_size = 16 << 20;
  opts.max_open_files = 512;
  // Commit checks conflicts against the memtables: keep a flushed memtable's worth of
  // history so that a transaction spanning a flush need not be retried (TryAgain).
  opts.max_write_buffer_size_to_maintain = 16 << 20;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(64 << 20);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  auto table_factory =
      std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(table));
  auto add = std::make_shared<Int64AddOperator>();

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const char* name : kCfNames) {
    rocksdb::ColumnFamilyOptions co(opts);
    co.table_factory = table_factory;
    co.merge_operator = add;  // Add works in every key space
    cfs.emplace_back(name, co);
  }
  std::unique_ptr<RocksEngine> e(new RocksEngine());
  e->dir_ = dir;
  rocksdb::OptimisticTransactionDBOptions oo;
  // Validation inside RocksDB's write group, so that it is atomic with every write,
  // transactional or not (parallel validation would let a plain WriteBatch slip in
  // between a transaction's check and its write).
  oo.validate_policy = rocksdb::OccValidationPolicy::kValidateSerial;
  rocksdb::DBOptions dbo(opts);
  auto s = rocksdb::OptimisticTransactionDB::Open(dbo, oo, dir, cfs, &e->handles_, &e->txn_db_);
  if (!s.ok()) return FromRocks(s, "open metadata db " + dir);
  return e;
}

RocksEngine::~RocksEngine() {
  if (!txn_db_) return;
  for (auto* h : handles_) (void)txn_db_->DestroyColumnFamilyHandle(h);
  handles_.clear();
  (void)txn_db_->Close();
  delete txn_db_;
}

rocksdb::DB* RocksEngine::db() { return txn_db_; }

std::unique_ptr<Txn> RocksEngine::Begin() {
  rocksdb::OptimisticTransactionOptions to;
  to.set_snapshot = true;  // conflicts are judged from Begin, not from each key's first use
  return std::make_unique<RocksTxn>(this, txn_db_->BeginTransaction(rocksdb::WriteOptions(), to));
}

Status RocksEngine::Get(Cf space, std::string_view key, std::string* value) {
  auto s = txn_db_->Get(rocksdb::ReadOptions(), cf(space), S(key), value);
  if (s.IsNotFound()) return Status::NotFound();
  return FromRocks(s, "metadata get");
}

std::unique_ptr<Iterator> RocksEngine::NewIterator(Cf space) {
  return std::make_unique<RocksIterator>(txn_db_->NewIterator(rocksdb::ReadOptions(), cf(space)));
}

Status RocksEngine::Sync() { return FromRocks(txn_db_->SyncWAL(), "metadata sync"); }

}  // namespace snapfs::kv
