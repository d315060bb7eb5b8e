// ChunkStore: dedup, packing and verified reads of chunks, above any Backend.
//
// Writers call Put() for each chunk of new file data; Put either finds the chunk already
// stored (dedup) or appends it to the active pack, and records the index entry in the
// writer's transaction (ChunkTxn::kv). The writer commits that transaction together with
// its extents and refcount changes, then calls Release().
//
// A dedup hit reads the chunk's index entry inside the writer's transaction, and GC
// deletes an entry only in a transaction that read its refcount: so a write that dedups
// against a chunk whose count just reached zero and GC's deletion of that chunk conflict
// in the metadata engine, and one of them runs again (docs/gc.md). The holds a txn keeps
// until Release only spare GC transactions that would lose that race in this process.
//
// Thread-safety: all methods are thread-safe (checked: base/thread_annotations.h). Lock
// order: Filesystem locks, then mu_, then sync_mu_; cache_mu_ is a leaf. mu_ may be held
// across a metadata transaction (pack id allocation), never across a backend read.
#pragma once

#include <atomic>
#include <list>
#include <map>
#include <set>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"
#include "base/chunk_id.h"
#include "core/meta/kv.h"
#include "core/meta/meta_store.h"
#include "base/mutex.h"
#include "core/space_guard.h"
#include "core/store_config.h"

namespace snapfs {

class ChunkStore;

// What a writer accumulates between Put() and commit. Its holds are released when it is
// destroyed (or by ChunkStore::Release), so no error path can leak them.
struct ChunkTxn {
  explicit ChunkTxn(kv::Engine& engine) : kv(engine.Begin()) {}
  ChunkTxn(const ChunkTxn&) = delete;
  ChunkTxn& operator=(const ChunkTxn&) = delete;
  ~ChunkTxn();
  ChunkStore* store = nullptr;  // set by the first Put
  // The writer's transaction: index entries of new chunks, and (added by the caller)
  // extents, refcounts and the inode.
  std::unique_ptr<kv::Txn> kv;
  std::vector<ChunkId> held;  // released by ChunkStore::Release
  bool wrote_pack = false;    // pack bytes must be synced before the batch commits
  std::vector<PackId> packs;  // packs holding uncommitted chunks the batch points at
};

// What a ChunkStore of a shared store (docs/scale-out.md) does besides the local case.
struct ChunkStoreSharing {
  uint64_t session = 0;  // 0: not shared. Its row is read by the allocation of a pack id.
  // A commit's chunks must be in a sealed pack (the S3 backend uploads on seal), so that
  // other hosts can read them once the commit is visible: Sync seals the active pack.
  bool seal_on_sync = false;
};

struct ChunkStoreStats {
  uint64_t puts = 0, dedup_hits = 0, bytes_put = 0, bytes_new = 0;
  uint64_t cache_hits = 0, cache_misses = 0;
};

class ChunkStore {
 public:
  static constexpr uint64_t kPackTargetSize = 64ull << 20;
  // Chunks up to this size (and no larger than the chunker's minimum, so only file tails)
  // are kept inline in the metadata log instead of a pack: a small file's fsync is then
  // one log sync rather than a pack sync followed by a log sync.
  static constexpr uint32_t kInlineMax = 16 * 1024;
  // How far past a missed chunk the backend is asked to prefetch.
  static constexpr uint64_t kPrefetchBytes = 4ull << 20;
  // Appended pack bytes whose device writes are started at once (StartWriteback).
  static constexpr uint64_t kWritebackBytes = 1ull << 20;

  ChunkStore(Backend* backend, MetaStore* meta, const StoreConfig& config,
             size_t cache_bytes = 64ull << 20);
  ~ChunkStore();

  // Finds the next pack id. Must be called once before use. Every pack id comes from the
  // "next_pack" counter (RotateLocked), but a store whose metadata commits are not all
  // synced (the local RocksDB: a close commits without a WAL sync) can lose the counter's
  // last increments in a power cut while the pack they named, synced by its writer,
  // survives; so the backend's packs are listed and the next id is past them too. With
  // `list_packs` false the counter alone decides (when it exists): a shared store, whose
  // database commits are durable, and `status`, which allocates nothing and must open a
  // store whose bucket is down (on S3 a listing is a LIST per 1,000 packs).
  Status Open(bool list_packs = true);
  // Shared stores: set once, before Open.
  void SetSharing(ChunkStoreSharing sharing) { sharing_ = std::move(sharing); }
  // Folder stores: new chunks ask `guard` for space first (space_guard.h). Set once,
  // before Open. GC's Relocate does not ask: it frees more than it takes.
  void SetSpaceGuard(SpaceGuard* guard) { space_guard_ = guard; }
  bool shared() const { return sharing_.session != 0; }
  // Shared stores: in `t`, reads the row of the session each of `packs` was recorded
  // under (IOError if one is gone: that session was reaped, with the packs' records, and
  // GC may take them), so that `t` cannot commit after such a reap. One read of all of
  // them (one round trip on PostgreSQL). Not the records themselves: `t` may have begun
  // before a pack it points into was allocated, and then its snapshot holds no record.
  Status FencePacks(kv::Txn& t, const std::vector<PackId>& packs) const EXCLUDES(mu_);
  // Shared stores, after our session was reaped and a new one registered: every pack of
  // the old session is given up (a txn pointing into one fails with `why`; the next
  // append starts a new pack, recorded under `session`).
  void RenewSession(uint64_t session, const Status& why) EXCLUDES(mu_);
  // Shared stores: deletes the openpack records of our packs that are sealed and that no
  // uncommitted txn points into any more (GC may then rewrite or remove them).
  Status ReleaseClosedPacks() EXCLUDES(mu_);

  ChunkId Hash(const void* data, size_t n) const { return ChunkId::Of(data, n, seed_); }

  // Stores one chunk (or finds it stored) and holds it for `txn`.
  Result<ChunkId> Put(std::span<const uint8_t> data, ChunkTxn* txn);
  // The same for several chunks (in order), with one read of their index entries: one
  // round trip for a remote engine instead of one per chunk.
  Result<std::vector<ChunkId>> PutMany(const std::vector<std::span<const uint8_t>>& datas,
                                       ChunkTxn* txn);
  // Releases the holds of a committed or abandoned txn.
  void Release(ChunkTxn* txn);
  // Makes the chunks `txn` appended (and every chunk appended before) durable; fails if
  // a pack they are in could not be made durable. Concurrent callers share one sync.
  Status Sync(const ChunkTxn& txn);
  // Makes every chunk appended so far durable (GC's copies).
  Status SyncAll();

  // Reads a committed chunk and checks its hash: Corruption if the bytes don't match,
  // NotFound if the id is not in the index.
  Result<std::shared_ptr<const std::string>> Get(const ChunkId& id);
  // Reads raw bytes at a location, without cache or verification (fsck, GC).
  Status ReadAt(const ChunkLocation& loc, std::string* out);

  // For GC: true if a txn holds `id` right now. Caller holds gc_lock().
  bool IsHeldLocked(const ChunkId& id) const REQUIRES(mu_) { return inflight_.count(id) != 0; }
  // For GC: true if an uncommitted txn points into `pack` (it must not be removed).
  bool PackHasInflightLocked(PackId pack) const REQUIRES(mu_);
  Mutex& gc_lock() RETURN_CAPABILITY(mu_) { return mu_; }
  // For GC, before it reads a pack to rewrite it: makes `pack` final. False (and nothing
  // done) if an uncommitted txn points into it. Otherwise seals it if it is the active
  // pack (`*sealed` = true; the next append starts a new pack) and returns true: from
  // then on nothing appends to it and no index entry can come to point into it, so the
  // indexed chunks it holds are exactly what GC must copy. Error: the seal failed.
  Result<bool> FreezeForGc(PackId pack, bool* sealed);
  // For GC: copies a chunk's bytes into the active pack; returns the new location.
  Result<ChunkLocation> Relocate(const ChunkId& id, std::span<const uint8_t> data);
  // The pack currently being appended to, or 0 if none.
  PackId active_pack() const;
  void DropFromCache(const ChunkId& id);

  ChunkStoreStats stats() const;
  Backend* backend() { return backend_; }

 private:
  struct Inflight {
    int holds = 0;
    bool has_location = false;  // appended by an uncommitted txn
    ChunkLocation loc;
  };

  Result<ChunkLocation> AppendLocked(const ChunkId& id, std::span<const uint8_t> data)
      REQUIRES(mu_);
  Status RotateLocked() REQUIRES(mu_);
  // One chunk of PutMany; `indexed`: its index entry was in the writer's snapshot.
  Status PutLocked(const ChunkId& id, const std::string& key, std::span<const uint8_t> data,
                   bool indexed, ChunkTxn* txn, bool* check_bytes) REQUIRES(mu_);
  // verify_dedup: the stored bytes of `id` are `data` (IOError otherwise).
  Status VerifyStored(const ChunkId& id, std::span<const uint8_t> data) EXCLUDES(mu_);
  // Seals the active pack (syncing it) and records a failure for the txns that need it.
  Status SealActiveLocked() REQUIRES(mu_) EXCLUDES(sync_mu_);
  // After appends: starts the device writes of the active pack's bytes appended since
  // the last call once there are kWritebackBytes of them (PackWriter::StartWriteback).
  // Under sync_mu_, not mu_: the kernel may make it wait for the device queue, and
  // dedup hits and other appends need mu_ meanwhile.
  void StartWriteback() EXCLUDES(mu_, sync_mu_);
  // In `t`, reads the row of `session` (IOError if it was reaped).
  static Status FenceSession(kv::Txn& t, uint64_t session);
  // The first failure recorded for one of `packs`, or OK.
  Status FailedPackLocked(const std::vector<PackId>& packs) const REQUIRES(mu_);
  std::shared_ptr<const std::string> CacheLookup(const ChunkId& id) EXCLUDES(cache_mu_);
  void CacheInsert(const ChunkId& id, std::shared_ptr<const std::string> data)
      EXCLUDES(cache_mu_);

  Backend* const backend_;
  MetaStore* const meta_;
  const uint64_t seed_;
  const bool verify_dedup_;
  const uint32_t inline_max_;

  mutable Mutex mu_ ACQUIRED_BEFORE(sync_mu_);
  std::unordered_map<ChunkId, Inflight, ChunkIdHash> inflight_ GUARDED_BY(mu_);
  std::shared_ptr<PackWriter> active_ GUARDED_BY(mu_);
  PackId next_pack_ GUARDED_BY(mu_) = 1;
  std::string scratch_ GUARDED_BY(mu_);
  ChunkStoreStats stats_ GUARDED_BY(mu_);

  // Serialises PackWriter::Sync and Seal of the active pack. Lock order: mu_ before
  // sync_mu_ (rotation seals under both); Sync takes sync_mu_ alone.
  Mutex sync_mu_;
  std::atomic<PackId> active_id_{0};  // id of active_; cleared under sync_mu_ on seal
  PackId synced_pack_ GUARDED_BY(sync_mu_) = 0;
  uint64_t synced_size_ GUARDED_BY(sync_mu_) = 0;
  PackId writeback_pack_ GUARDED_BY(sync_mu_) = 0;  // StartWriteback's last pack
  uint64_t writeback_to_ GUARDED_BY(sync_mu_) = 0;  // and where its last range ended
  ChunkStoreSharing sharing_;  // set before Open, then read-only
  std::atomic<uint64_t> session_{0};  // our session now (sharing_.session, then renewals)
  SpaceGuard* space_guard_ = nullptr;  // set before Open, then read-only
  // Shared stores: our packs whose openpack record is still in the metadata, each with
  // the session it was recorded under (whose row a commit pointing into it reads).
  std::map<PackId, uint64_t> open_records_ GUARDED_BY(mu_);
  // Packs whose final seal failed: their bytes may not be durable.
  std::unordered_map<PackId, Status> failed_packs_ GUARDED_BY(mu_);

  // LRU cache of verified chunk bytes.
  mutable Mutex cache_mu_;
  const size_t cache_capacity_;
  size_t cache_used_ GUARDED_BY(cache_mu_) = 0;
  std::list<ChunkId> lru_ GUARDED_BY(cache_mu_);  // front = most recent
  struct CacheEntry {
    std::shared_ptr<const std::string> data;
    std::list<ChunkId>::iterator pos;
  };
  std::unordered_map<ChunkId, CacheEntry, ChunkIdHash> cache_ GUARDED_BY(cache_mu_);
  // Counted under cache_mu_, not mu_ (stats_ is mu_'s): a cache lookup never takes mu_.
  uint64_t cache_hits_ GUARDED_BY(cache_mu_) = 0;
  uint64_t cache_misses_ GUARDED_BY(cache_mu_) = 0;
};

}  // namespace snapfs
