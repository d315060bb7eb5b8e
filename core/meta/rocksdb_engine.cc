#include "core/meta/rocksdb_engine.h"

#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/optimistic_transaction_db.h>
#include <rocksdb/utilities/transaction.h>
#include <sys/stat.h>

#include <cstring>
#include <functional>

#include "base/coding.h"
#include "base/log.h"

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

class RocksTxn;

class RocksIterator : public Iterator {
 public:
  // `txn`: the transaction whose writes to `space` the iterator must see (null: none).
  RocksIterator(RocksEngine* e, rocksdb::Iterator* it, RocksTxn* txn, size_t space)
      : e_(e), it_(it), txn_(txn), space_(space) {}
  // For an iterator with an upper bound: the bound lives here (ReadOptions points at
  // bound_slice_ for the iterator's life); the RocksDB iterator comes after.
  RocksIterator(RocksEngine* e, RocksTxn* txn, size_t space, std::string_view bound)
      : e_(e), txn_(txn), space_(space), bound_(bound), bound_slice_(bound_) {}
  const rocksdb::Slice* bound() const { return &bound_slice_; }
  void Reset(rocksdb::Iterator* it) { it_.reset(it); }
  void Seek(std::string_view key) override {
    ApplyPending();
    CountingSkips([&] { it_->Seek(S(key)); });
  }
  // The bound is checked here too: with the base iterator stopped at the bound, Debian's
  // RocksDB 7.8 lets the transaction's own index hand out its next entry past the bound
  // (even a deleted key: ABoundedIteratorStopsBeforeItsBound).
  bool Valid() const override {
    return it_->Valid() && (bound_.empty() || it_->key().compare(bound_slice_) < 0);
  }
  void Next() override {
    ApplyPending();
    CountingSkips([&] { it_->Next(); });
  }
  std::string_view key() const override { return it_->key().ToStringView(); }
  std::string_view value() const override { return it_->value().ToStringView(); }
  Status status() const override { return FromRocks(it_->status(), "metadata scan"); }

 private:
  // Writes the transaction buffered since the last Seek/Next enter its index first, so
  // that the iterator sees them (defined below RocksTxn).
  void ApplyPending();

  // Runs a Seek or Next, adding the entries RocksDB stepped over to find the next live
  // key (its thread's perf context counts them) to skipped_. Keys that are deleted and
  // rewritten again and again (a file rewritten in place: docs/reliability.md, finding
  // 25) leave every version in the memtable until it is flushed, so that each lookup
  // there walks all of them; RocksDB 9's memtable_op_scan_flush_trigger flushes such a
  // memtable, which Debian's 7.8 lacks: RocksEngine::NoteSkipped does it instead.
  template <class F>
  void CountingSkips(F&& step) {
    const rocksdb::PerfLevel level = rocksdb::GetPerfLevel();
    if (level < rocksdb::PerfLevel::kEnableCount) {
      rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
    }
    const rocksdb::PerfContext* pc = rocksdb::get_perf_context();
    const uint64_t before = pc->internal_key_skipped_count + pc->internal_delete_skipped_count;
    step();
    skipped_ += pc->internal_key_skipped_count + pc->internal_delete_skipped_count - before;
    if (level < rocksdb::PerfLevel::kEnableCount) rocksdb::SetPerfLevel(level);
    if (skipped_ >= RocksEngine::kSkipFlushTrigger && !noted_) {
      noted_ = true;  // once per iterator
      e_->NoteSkipped(static_cast<Cf>(space_));
    }
  }

  RocksEngine* e_;
  std::unique_ptr<rocksdb::Iterator> it_;
  RocksTxn* txn_;
  size_t space_;
  std::string bound_;
  rocksdb::Slice bound_slice_;
  uint64_t skipped_ = 0;
  bool noted_ = false;
};

// The writes of a transaction wait in a plain buffer, one per key space, until something
// could read them back: a Get of a key buffered in that space (KeyFilter says "maybe"),
// an iterator over that space, or Commit. Only then do they enter the RocksDB
// transaction, where each write is tracked (Put/Delete) and, while the transaction can
// still read, indexed in its WriteBatchWithIndex: an ordered skiplist insert with two
// seeks per write. At Commit nothing can read any more, so the writes still waiting go
// in unindexed (DisableIndexing), in the order they were made. Most transactions read
// each key before writing it (Get then Put) and never read a write back, so most of
// their writes are never indexed. (Values over 1 KiB, inline chunks, go straight in:
// copying them twice would cost more than their index entry.) Semantics are unchanged: a read sees every write made
// before it, and the conflict check tracks the same keys against the same snapshot
// (set_snapshot: a key tracked at Commit compares with Begin's sequence, as at Put).
class RocksTxn : public Txn {
 public:
  RocksTxn(RocksEngine* e, rocksdb::Transaction* t) : e_(e), t_(t) {
    ro_.snapshot = t_->GetSnapshot();
  }
  ~RocksTxn() override {
    if (!done_) (void)t_->Rollback();
    e_->Recycle(t_.release());
  }

  Status Get(Cf space, std::string_view key, std::string* value) override {
    const size_t s = static_cast<size_t>(space);
    if (!pending_[s].empty() && filter_.MayContain(s, key)) Apply(s);
    // GetForUpdate: the key is tracked, so a later write by anyone else conflicts.
    auto st = t_->GetForUpdate(ro_, e_->cf(space), S(key), value);
    if (st.IsNotFound()) return Status::NotFound();
    return FromRocks(st, "metadata get");
  }
  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    const size_t s = static_cast<size_t>(space);
    Apply(s);
    return std::make_unique<RocksIterator>(e_, t_->GetIterator(ro_, e_->cf(space)), this, s);
  }
  std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound) override {
    const size_t s = static_cast<size_t>(space);
    Apply(s);
    auto it = std::make_unique<RocksIterator>(e_, this, s, upper_bound);
    rocksdb::ReadOptions ro = ro_;
    ro.iterate_upper_bound = it->bound();
    it->Reset(t_->GetIterator(ro, e_->cf(space)));
    return it;
  }
  void Put(Cf space, std::string_view key, std::string_view value) override {
    Buffer(kPut, space, key, value);
  }
  void Delete(Cf space, std::string_view key) override { Buffer(kDelete, space, key, {}); }
  void PutUnchecked(Cf space, std::string_view key, std::string_view value) override {
    Buffer(kPutUntracked, space, key, value);
  }
  void DeleteUnchecked(Cf space, std::string_view key) override {
    Buffer(kDeleteUntracked, space, key, {});
  }
  void Add(Cf space, std::string_view key, int64_t delta) override {
    if (!CfHasCounters(space)) {
      if (first_error_.ok()) first_error_ = BadAdd(space);  // kv.h: the commit fails
      return;
    }
    const uint64_t v = static_cast<uint64_t>(delta);  // LE64, as EncodeCounter
    char b[8];
    std::memcpy(b, &v, 8);
    Buffer(kMerge, space, key, std::string_view(b, 8));
  }
  Status Commit(bool sync) override {
    if (done_) return Status::InvalidArgument("transaction already committed");
    done_ = true;
    t_->DisableIndexing();  // nothing reads from here on
    for (size_t s = 0; s < kCfCount; s++) Apply(s);
    RETURN_IF_ERROR(first_error_);
    if (e_->write_failed()) RETURN_IF_ERROR(e_->Recover());
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    t_->SetWriteOptions(wo);
    Status st = FromRocks(t_->Commit(), "metadata commit");
    if (!st.ok() && !st.Is(Code::kConflict)) e_->NoteWriteFailure();
    return st;
  }
  size_t pending_writes() const override { return writes_; }

 private:
  friend class RocksIterator;  // Apply
  enum Op : char { kPut, kDelete, kPutUntracked, kDeleteUntracked, kMerge };
  static constexpr size_t kBufferMax = 1024;  // bigger values go straight in

  // "Is a write of (space, key) buffered?": never no when it is (false positives only
  // cost an early Apply). A 16,384-bit Bloom filter with two probes: under 1% false
  // positives up to ~800 buffered writes (a data flush of 8 MiB buffers ~400).
  class KeyFilter {
   public:
    void Add(size_t space, std::string_view key) {
      uint64_t h = Hash(space, key);
      bits_[(h >> 6) & kMask] |= 1ull << (h & 63);
      bits_[(h >> 38) & kMask] |= 1ull << ((h >> 32) & 63);
    }
    bool MayContain(size_t space, std::string_view key) const {
      uint64_t h = Hash(space, key);
      return (bits_[(h >> 6) & kMask] >> (h & 63) & 1) &&
             (bits_[(h >> 38) & kMask] >> ((h >> 32) & 63) & 1);
    }

   private:
    static constexpr size_t kWords = 256;
    static constexpr uint64_t kMask = kWords - 1;
    static uint64_t Hash(size_t space, std::string_view key) {
      uint64_t h = std::hash<std::string_view>()(key) ^ (space * 0x9e3779b97f4a7c15ULL);
      h ^= h >> 29;
      h *= 0xbf58476d1ce4e5b9ULL;
      return h ^ (h >> 32);
    }
    uint64_t bits_[kWords] = {};
  };

  // Record: op, key length (LE32), key, value length (LE32), value.
  void Buffer(Op op, Cf space, std::string_view key, std::string_view value) {
    const size_t s = static_cast<size_t>(space);
    writes_++;
    if (value.size() > kBufferMax) {
      // A big value (an inline chunk) would be copied twice; an index entry costs less.
      Apply(s);  // the order of writes to one key is kept
      Write(op, e_->cf(space), S(key), S(value));
      return;
    }
    std::string& b = pending_[s];
    b.push_back(op);
    PutLE32(&b, static_cast<uint32_t>(key.size()));
    b.append(key);
    PutLE32(&b, static_cast<uint32_t>(value.size()));
    b.append(value);
    filter_.Add(s, key);
  }

  // Moves the writes buffered for `space` into the RocksDB transaction, in order.
  void Apply(size_t s) {
    std::string& b = pending_[s];
    if (b.empty()) return;
    rocksdb::ColumnFamilyHandle* cf = e_->cf(static_cast<Cf>(s));
    const char* p = b.data();
    const char* end = p + b.size();
    while (p < end) {
      Op op = static_cast<Op>(*p++);
      uint32_t kn = GetLE32(p);
      rocksdb::Slice key(p + 4, kn);
      p += 4 + kn;
      uint32_t vn = GetLE32(p);
      rocksdb::Slice value(p + 4, vn);
      p += 4 + vn;
      Write(op, cf, key, value);
    }
    b.clear();
  }

  void Write(Op op, rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& key,
             const rocksdb::Slice& value) {
    switch (op) {
      case kPut: Note(t_->Put(cf, key, value)); break;
      case kDelete: Note(t_->Delete(cf, key)); break;
      case kPutUntracked: Note(t_->PutUntracked(cf, key, value)); break;
      case kDeleteUntracked: Note(t_->DeleteUntracked(cf, key)); break;
      case kMerge: Note(t_->MergeUntracked(cf, key, value)); break;
    }
  }

  // Put/Delete/Merge into the transaction only fail on misuse; the first failure is
  // reported by Commit, which then writes nothing.
  void Note(const rocksdb::Status& s) {
    if (!s.ok() && first_error_.ok()) first_error_ = FromRocks(s, "metadata write");
  }

  RocksEngine* e_;
  std::unique_ptr<rocksdb::Transaction> t_;
  rocksdb::ReadOptions ro_;
  bool done_ = false;
  Status first_error_;
  std::string pending_[kCfCount];
  KeyFilter filter_;
  size_t writes_ = 0;
};

void RocksIterator::ApplyPending() {
  if (txn_) txn_->Apply(space_);
}

// Tells the engine when a background flush or compaction failed: RocksDB then refuses
// every write with that error until DB::Resume, and no commit of ours failed to say so.
// It also turns off RocksDB's own recovery from a full disk: that one polls for free space
// every 5 s and refuses a DB::Resume while it runs ("Busy"), so a write right after space
// was freed would still fail. The engine resumes at the next write instead (Recover).
class BackgroundErrorListener : public rocksdb::EventListener {
 public:
  explicit BackgroundErrorListener(RocksEngine* e) : e_(e) {}
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason,
                         rocksdb::Status* error) override {
    if (error == nullptr || error->ok()) return;
    // kWriteCallback: a write's log append (or its memtable insert) failed.
    if (reason == rocksdb::BackgroundErrorReason::kWriteCallback ||
        reason == rocksdb::BackgroundErrorReason::kMemTable) {
      e_->NoteLogFailure();
    } else {
      e_->NoteWriteFailure();
    }
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                            bool* auto_recovery) override {
    if (auto_recovery != nullptr) *auto_recovery = false;
  }

 private:
  RocksEngine* e_;
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

Result<std::unique_ptr<RocksEngine>> RocksEngine::Open(const std::string& dir, bool create,
                                                       rocksdb::Env* env) {
  rocksdb::Options opts;
  if (env != nullptr) opts.env = env;
  opts.create_if_missing = create;
  // Owner-only, as the store folder: RocksDB would make it 0755 (its files are the
  // namespace: names, owners, small files' extents).
  if (create && env == nullptr) (void)::mkdir(dir.c_str(), 0700);
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
    // A Bloom filter over each memtable's keys (2% of its size): most lookups of a key
    // that is absent from a memtable (a new chunk, a new name, a commit's conflict check
    // of a new key, which looks through the kept history too) skip its skiplist.
    co.memtable_prefix_bloom_size_ratio = 0.02;
    co.memtable_whole_key_filtering = true;
    cfs.emplace_back(name, co);
  }
  std::unique_ptr<RocksEngine> e(new RocksEngine());
  e->dir_ = dir;
  opts.listeners.push_back(std::make_shared<BackgroundErrorListener>(e.get()));
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
  {
    MutexLock l(&pool_mu_);
    for (auto* t : pool_) delete t;
    pool_.clear();
  }
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
  rocksdb::Transaction* old = nullptr;
  {
    MutexLock l(&pool_mu_);
    if (!pool_.empty()) {
      old = pool_.back();
      pool_.pop_back();
    }
  }
  // With `old`, RocksDB reinitializes that transaction (its batch, index and tracked
  // keys cleared, a new snapshot) instead of allocating a new one.
  rocksdb::Transaction* t = txn_db_->BeginTransaction(rocksdb::WriteOptions(), to, old);
  t->EnableIndexing();  // the last user's Commit disabled it
  return std::make_unique<RocksTxn>(this, t);
}

void RocksEngine::Recycle(rocksdb::Transaction* t) {
  {
    MutexLock l(&pool_mu_);
    if (pool_.size() < kPoolMax) {
      pool_.push_back(t);
      return;
    }
  }
  delete t;
}

Status RocksEngine::Get(Cf space, std::string_view key, std::string* value) {
  auto s = txn_db_->Get(rocksdb::ReadOptions(), cf(space), S(key), value);
  if (s.IsNotFound()) return Status::NotFound();
  return FromRocks(s, "metadata get");
}

Status RocksEngine::MultiGet(Cf space, const std::vector<std::string>& keys,
                             std::vector<std::optional<std::string>>* values) {
  values->assign(keys.size(), std::nullopt);
  // RocksDB's batched MultiGet: the keys are looked up level by level together, and
  // keys in order that fall in one block share its read.
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> got(keys.size());
  std::vector<rocksdb::Status> st(keys.size());
  txn_db_->MultiGet(rocksdb::ReadOptions(), cf(space), keys.size(), slices.data(), got.data(),
                    st.data(), /*sorted_input=*/false);
  for (size_t i = 0; i < keys.size(); i++) {
    if (st[i].IsNotFound()) continue;
    RETURN_IF_ERROR(FromRocks(st[i], "metadata multiget"));
    (*values)[i] = got[i].ToString();
  }
  return Status::OK();
}

std::unique_ptr<Iterator> RocksEngine::NewIterator(Cf space) {
  return std::make_unique<RocksIterator>(this,
                                         txn_db_->NewIterator(rocksdb::ReadOptions(), cf(space)),
                                         nullptr, static_cast<size_t>(space));
}

std::unique_ptr<Iterator> RocksEngine::NewBoundedIterator(Cf space, std::string_view upper_bound) {
  // iterate_upper_bound: RocksDB ends the iterator there rather than stepping over every
  // deleted key that follows until it finds a live one.
  auto it = std::make_unique<RocksIterator>(this, nullptr, static_cast<size_t>(space), upper_bound);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = it->bound();
  it->Reset(txn_db_->NewIterator(ro, cf(space)));
  return it;
}

namespace {
class RocksReadView : public ReadView {
 public:
  RocksReadView(RocksEngine* e, rocksdb::DB* db) : e_(e), db_(db), snap_(db->GetSnapshot()) {}
  ~RocksReadView() override { db_->ReleaseSnapshot(snap_); }
  Status Get(Cf space, std::string_view key, std::string* value) override {
    rocksdb::ReadOptions ro;
    ro.snapshot = snap_;
    auto s = db_->Get(ro, e_->cf(space), S(key), value);
    if (s.IsNotFound()) return Status::NotFound();
    return FromRocks(s, "metadata get");
  }
  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    rocksdb::ReadOptions ro;
    ro.snapshot = snap_;
    ro.fill_cache = false;
    return std::make_unique<RocksIterator>(e_, db_->NewIterator(ro, e_->cf(space)), nullptr,
                                           static_cast<size_t>(space));
  }

 private:
  RocksEngine* e_;
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snap_;
};
}  // namespace

std::unique_ptr<Iterator> RocksEngine::NewScanIterator(Cf space) {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  return std::make_unique<RocksIterator>(this, txn_db_->NewIterator(ro, cf(space)), nullptr,
                                         static_cast<size_t>(space));
}

Result<std::unique_ptr<ReadView>> RocksEngine::NewReadView() {
  return std::unique_ptr<ReadView>(std::make_unique<RocksReadView>(this, txn_db_));
}

void RocksEngine::NoteSkipped(Cf space) {
  // The flush replaces the active memtable by an empty one, so one flush serves every
  // iterator that notes the same memtable; it writes the newest version of each key
  // only, and compactions drop deleted keys from there (a deletion-triggered compaction,
  // NewCompactOnDeletionCollectorFactory, measured no better on finding 25's rewrites).
  // A memtable of fewer entries than were skipped gains little from a flush (the rest
  // are in table files, where only a compaction drops them). And while those remain,
  // every new memtable would be flushed as soon as it reached the trigger: hence the
  // interval, which bounds such flushes to a few small ones a second.
  const size_t s = static_cast<size_t>(space);
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = skip_flushed_at_[s].load();
  if (last != 0 && now - last < std::chrono::nanoseconds(kSkipFlushInterval).count()) return;
  uint64_t entries = 0;
  if (!txn_db_->GetIntProperty(cf(space), rocksdb::DB::Properties::kNumEntriesActiveMemTable,
                               &entries) ||
      entries < kSkipFlushTrigger) {
    return;
  }
  if (!skip_flushed_at_[s].compare_exchange_strong(last, now)) return;  // another did
  rocksdb::FlushOptions fo;
  fo.wait = false;                      // the reader that noticed goes on
  fo.allow_write_stall = true;          // never waits for a stall to clear either
  (void)txn_db_->Flush(fo, cf(space));  // best effort: the next noting iterator tries again
}

Status RocksEngine::Recover() {
  MutexLock l(&recover_mu_);
  if (!write_failed_.load()) return Status::OK();  // another caller resumed it
  if (log_failed_.load()) {
    return Status::IOError("metadata engine stopped after a failed metadata log write; it "
                           "takes writes again once the store is mounted again");
  }
  // RocksDB decides what can be resumed: a full disk under a flush or the log can; an
  // I/O error in the log cannot (its state is unknown), and the store must be opened
  // again (a remount), as RocksDB's own recovery replays the log.
  rocksdb::Status s = txn_db_->GetBaseDB()->Resume();  // StackableDB does not forward it
  {
    MutexLock h(&health_mu_);
    resume_error_ = s.ok() ? "" : s.ToString();
  }
  if (!s.ok()) return FromRocks(s, "metadata engine stopped after a failed write; resuming it");
  write_failed_.store(false);
  SNAPFS_LOG_WARN("metadata engine: writes resumed after an earlier failed write");
  return Status::OK();
}

Status RocksEngine::Health() const {
  if (!write_failed_.load()) return Status::OK();
  std::string why;
  {
    MutexLock h(&health_mu_);
    why = resume_error_;
  }
  if (log_failed_.load()) {
    return Status::IOError("a metadata log write failed; RocksDB takes no more writes until "
                           "the store is mounted again (see the daemon's log for the error)");
  }
  if (why.empty()) {
    return Status::IOError("a metadata write failed; RocksDB takes no writes until it "
                           "resumes, which the next write tries (see the daemon's log)");
  }
  return Status::IOError("a metadata write failed and RocksDB could not resume (" + why +
                         "); a full disk resumes once space is free, other errors need "
                         "the store mounted again");
}

Status RocksEngine::Sync() {
  // After a failed write RocksDB has stopped writing (its background error), and its
  // SyncWAL must not be called on the log writer that failed: it asserts (Debian's
  // librocksdb 7.8 is built with assertions, so the daemon would abort instead of
  // reporting EIO). Resume first: it moves to a new log.
  if (write_failed_.load()) RETURN_IF_ERROR(Recover());
  return FromRocks(txn_db_->SyncWAL(), "metadata sync");
}

}  // namespace snapfs::kv
