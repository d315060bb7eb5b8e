#include "core/meta_store.h"

#include <rocksdb/merge_operator.h>
#include <rocksdb/table.h>
#include <rocksdb/filter_policy.h>

#include "core/coding.h"

namespace snapfs {

namespace {

const char* const kCfNames[] = {"default", "inodes", "dentries", "dirindex", "extents",
                                "xattrs",  "chunks", "refs",     "garbage",  "orphans",
                                "snapshots", "pins", "pinned",  "hidden"};
static_assert(sizeof(kCfNames) / sizeof(kCfNames[0]) == static_cast<size_t>(Cf::kCount));

// Refcounts are int64 counters updated without read-modify-write: every extent added
// merges +1 and every extent dropped merges -1 in the same WriteBatch as the change.
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
  const char* Name() const override { return "snapfs.Int64Add"; }
};

}  // namespace

namespace keys {
std::string Ino(uint64_t ino) {
  std::string k;
  PutBE64(&k, ino);
  return k;
}
std::string Dentry(uint64_t parent, std::string_view name) {
  std::string k;
  k.reserve(8 + name.size());
  PutBE64(&k, parent);
  k.append(name);
  return k;
}
std::string DirIndex(uint64_t parent, uint64_t seq) {
  std::string k;
  PutBE64(&k, parent);
  PutBE64(&k, seq);
  return k;
}
std::string Extent(uint64_t ino, uint64_t offset) { return DirIndex(ino, offset); }
std::string Xattr(uint64_t ino, std::string_view name) { return Dentry(ino, name); }
std::string Pair(uint64_t a, uint64_t b) { return DirIndex(a, b); }
std::string Hidden(uint64_t ino, uint64_t parent, std::string_view name) {
  std::string k = DirIndex(ino, parent);
  k.append(name);
  return k;
}
}  // namespace keys

std::string ChunkLocation::Encode() const {
  std::string v;
  PutLE64(&v, pack);
  PutLE64(&v, offset);
  PutLE32(&v, length);
  if (is_inline()) v.append(inline_data);
  return v;
}

Result<ChunkLocation> ChunkLocation::Decode(std::string_view v) {
  if (v.size() < 20) return Status::Corruption("chunk index entry too short");
  ChunkLocation l;
  l.pack = GetLE64(v.data());
  l.offset = GetLE64(v.data() + 8);
  l.length = GetLE32(v.data() + 16);
  if (l.is_inline()) {
    if (v.size() != 20 + l.length) return Status::Corruption("inline chunk has wrong size");
    l.inline_data.assign(v.data() + 20, l.length);
  } else if (v.size() != 20) {
    return Status::Corruption("chunk index entry has wrong size");
  }
  return l;
}

std::string ExtentValue::Encode() const {
  std::string v(id.AsSlice());
  PutLE32(&v, length);
  v.push_back(stable ? 1 : 0);
  return v;
}

Result<ExtentValue> ExtentValue::Decode(std::string_view v) {
  if (v.size() != ChunkId::kSize + 5) return Status::Corruption("extent has wrong size");
  ExtentValue e;
  e.id = ChunkId::FromBytes(v.data());
  e.length = GetLE32(v.data() + ChunkId::kSize);
  e.stable = v[ChunkId::kSize + 4] & 1;
  return e;
}

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::OK();
  std::string m = std::string(context) + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(m);
  if (s.IsNoSpace()) return Status::NoSpace(m);
  if (s.IsCorruption()) return Status::Corruption(m);
  if (s.IsBusy() || s.IsTimedOut()) return Status::Busy(m);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(m);
  return Status::IOError(m);
}

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir, bool create) {
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

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(64 << 20);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  auto table_factory = std::shared_ptr<rocksdb::TableFactory>(
      rocksdb::NewBlockBasedTableFactory(table));

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const char* name : kCfNames) {
    rocksdb::ColumnFamilyOptions co(opts);
    co.table_factory = table_factory;
    if (std::string_view(name) == "refs") {
      co.merge_operator = std::make_shared<Int64AddOperator>();
    }
    cfs.emplace_back(name, co);
  }
  std::unique_ptr<MetaStore> m(new MetaStore());
  rocksdb::DB* raw = nullptr;
  rocksdb::DBOptions dbo(opts);
  auto s = rocksdb::DB::Open(dbo, dir, cfs, &m->handles_, &raw);
  if (!s.ok()) return FromRocks(s, "open metadata db " + dir);
  m->db_.reset(raw);
  return m;
}

MetaStore::~MetaStore() {
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  handles_.clear();
  if (db_) {
    (void)db_->Close();
  }
}

Status MetaStore::Get(Cf c, std::string_view key, std::string* value) {
  auto s = db_->Get(rocksdb::ReadOptions(), cf(c), rocksdb::Slice(key.data(), key.size()), value);
  if (s.IsNotFound()) return Status::NotFound();
  return FromRocks(s, "metadata get");
}

Status MetaStore::Write(rocksdb::WriteBatch* batch, bool sync) {
  std::shared_lock l(commit_mu_);
  return WriteLocked(batch, sync);
}

Status MetaStore::WriteLocked(rocksdb::WriteBatch* batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  if (sync) log_syncs_.fetch_add(1, std::memory_order_relaxed);
  return FromRocks(db_->Write(wo, batch), "metadata write");
}

Status MetaStore::SyncWal() {
  log_syncs_.fetch_add(1, std::memory_order_relaxed);
  return FromRocks(db_->SyncWAL(), "metadata sync");
}

std::unique_ptr<rocksdb::Iterator> MetaStore::NewIterator(Cf c) {
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(rocksdb::ReadOptions(), cf(c)));
}

Result<int64_t> MetaStore::RefCount(const ChunkId& id) {
  std::string v;
  Status s = Get(Cf::kRefs, keys::Chunk(id), &v);
  if (s.Is(Code::kNotFound)) return int64_t{0};
  RETURN_IF_ERROR(s);
  if (v.size() != 8) return Status::Corruption("refcount of " + id.Short() + " has wrong size");
  return static_cast<int64_t>(GetLE64(v.data()));
}

void MetaStore::AddRef(rocksdb::WriteBatch* b, const ChunkId& id, int64_t delta) {
  std::string v;
  PutLE64(&v, static_cast<uint64_t>(delta));
  (void)b->Merge(cf(Cf::kRefs), keys::Chunk(id), v);
  // A decrement may bring the count to zero; GC confirms by reading the count.
  if (delta < 0) (void)b->Put(cf(Cf::kGarbage), keys::Chunk(id), "");
}

}  // namespace snapfs
