// MetaStore: every piece of metadata, in one RocksDB with one column family per key
// space. The schema is documented in docs/metadata-schema.md; keep the two in sync.
//
//   inodes    BE64 ino                  -> Inode (core/inode.h)
//   dentries  BE64 parent | name        -> BE64 child | BE64 seq | U32 mode
//   dirindex  BE64 parent | BE64 seq    -> BE64 child | LE32 mode | name  (readdir order, cookies)
//   extents   BE64 ino | BE64 offset    -> chunk id (16) | LE32 length | U8 flags (1 = stable cut)
//   xattrs    BE64 ino | name           -> value
//   chunks    chunk id (16)             -> LE64 pack | LE64 offset | LE32 length [| bytes]
//                                          (pack 0: a small chunk, its bytes inline)
//   refs      chunk id (16)             -> LE64 count (int64-add merge operator)
//   garbage   chunk id (16)             -> ""   (count may have reached zero: GC looks)
//   orphans   BE64 ino                  -> ""   (nlink 0, still open; purge when closed)
//   snapshots BE64 folder ino           -> SnapshotRecord (core/snapshot_record.h)
//   pins      BE64 folder | BE64 ino    -> view path of the pinned file in the snapshot
//   pinned    BE64 ino | BE64 folder    -> ""   (reverse of pins)
//   hidden    BE64 ino | BE64 parent | name -> ""  (entries kept hidden for snapshots)
//   default   "next_ino", "next_pack"   -> LE64
//
// Thread-safety: MetaStore is safe for concurrent use (RocksDB is); callers serialise
// read-modify-write sequences themselves (Filesystem::ns_mu_).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/chunk_id.h"
#include "core/status.h"

namespace snapfs {

enum class Cf {
  kDefault = 0,
  kInodes,
  kDentries,
  kDirIndex,
  kExtents,
  kXattrs,
  kChunks,
  kRefs,
  kGarbage,
  kOrphans,
  kSnapshots,
  kPins,
  kPinned,
  kHidden,
  kCount
};

// Key builders: the one place key layouts are spelled out.
namespace keys {
std::string Ino(uint64_t ino);
std::string Dentry(uint64_t parent, std::string_view name);
std::string DirIndex(uint64_t parent, uint64_t seq);
std::string Extent(uint64_t ino, uint64_t offset);
std::string Xattr(uint64_t ino, std::string_view name);
std::string Pair(uint64_t a, uint64_t b);  // pins, pinned
std::string Hidden(uint64_t ino, uint64_t parent, std::string_view name);
inline std::string Chunk(const ChunkId& id) { return std::string(id.AsSlice()); }
}  // namespace keys

struct ChunkLocation {
  uint64_t pack = 0;    // 0: a small chunk kept inline in its index entry (no pack)
  uint64_t offset = 0;  // of the chunk's bytes (after its record header)
  uint32_t length = 0;
  std::string inline_data;  // the bytes, when pack == 0
  bool is_inline() const { return pack == 0; }

  std::string Encode() const;
  static Result<ChunkLocation> Decode(std::string_view v);
};

struct ExtentValue {
  ChunkId id;
  uint32_t length = 0;
  // The chunk ends at a cut the chunker chose from the content (not at the end of the
  // data it was given): appending after it needs no re-chunking of this chunk.
  bool stable = false;
  std::string Encode() const;
  static Result<ExtentValue> Decode(std::string_view v);
};

// Converts a RocksDB status to ours.
Status FromRocks(const rocksdb::Status& s, std::string_view context);

class MetaStore {
 public:
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& dir, bool create);
  ~MetaStore();

  rocksdb::DB* db() { return db_.get(); }
  rocksdb::ColumnFamilyHandle* cf(Cf c) { return handles_[static_cast<int>(c)]; }

  // Returns NotFound if the key is absent.
  Status Get(Cf c, std::string_view key, std::string* value);
  // Applies a batch atomically. `sync` also makes it (and everything before) durable.
  // Takes commit_lock() shared.
  Status Write(rocksdb::WriteBatch* batch, bool sync = false);
  // GC's check-then-delete of refcounts must not interleave with any commit: it holds
  // commit_lock() exclusively and writes with WriteLocked. Lock order: ChunkStore::mu_
  // before commit_lock().
  std::shared_mutex& commit_lock() { return commit_mu_; }
  Status WriteLocked(rocksdb::WriteBatch* batch, bool sync);
  // Makes every write so far durable.
  Status SyncWal();
  // Log syncs so far (synced writes and SyncWal calls): what a durability promise costs,
  // for metrics and for tests that check a commit was made durable.
  uint64_t log_syncs() const { return log_syncs_.load(std::memory_order_relaxed); }
  std::unique_ptr<rocksdb::Iterator> NewIterator(Cf c);
  // Current refcount of a chunk (merge operands resolved); 0 if absent.
  Result<int64_t> RefCount(const ChunkId& id);

  // Batch helpers that keep refcount and garbage bookkeeping in one place.
  void AddRef(rocksdb::WriteBatch* b, const ChunkId& id, int64_t delta);

 private:
  MetaStore() = default;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::shared_mutex commit_mu_;
  std::atomic<uint64_t> log_syncs_{0};
};

}  // namespace snapfs
