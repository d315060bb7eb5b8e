#include "core/chunks/gc.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_set>
#include <vector>

#include "base/coding.h"
#include "base/log.h"
#include "core/meta/kv.h"
#include "core/chunks/pack_format.h"
#include "core/sessions.h"

namespace snapfs {

namespace {
constexpr size_t kBatchChunks = 1024;
// Attempts of one collect batch before it is split (CollectBatch).
constexpr int kBatchAttempts = 8;

uint64_t HeaderOf(uint64_t pack_size) { return std::min<uint64_t>(pack_size, pack::kHeaderSize); }

// One read-only pass over the garbage candidates and the chunk index, shared by PlanGc
// and MeasureSpace so that `gc --dry-run` and `stats` count the same bytes.
struct Scan {
  std::vector<ChunkId> dead, revived;
  uint64_t dead_bytes = 0;          // data bytes of the dead chunks
  std::map<PackId, uint64_t> live;  // per pack: live chunks with their record headers
  uint64_t live_bytes = 0;          // live chunks' data, packed and inline
  std::vector<PackInfo> packs;
  PackId active = 0;
  // A shared store: packs a session is filling or has just sealed (their openpack
  // record is still there), left out of `packs`: chunks of uncommitted writes in them
  // are not in the index yet, so their live bytes cannot be told from dead ones.
  std::vector<PackInfo> open_packs;
};

Result<Scan> ScanStore(Store& store) {
  MetaStore& meta = store.meta();
  Scan scan;
  // A shared store: packs other sessions (or we) are filling are left out, read before
  // the index (sessions.h ReadOpenPacks says why that order).
  OpenPackSet open;
  if (store.shared()) {
    ASSIGN_OR_RETURN(open, ReadOpenPacks(meta.engine()));
  }
  std::unordered_set<ChunkId, ChunkIdHash> dead;
  // The garbage candidates' refcounts and index entries are read a batch at a time
  // (MultiGet): one read each was two database round trips per candidate on a shared
  // store.
  std::vector<std::string> chunk_keys;
  std::vector<std::optional<std::string>> locs;
  RETURN_IF_ERROR(meta.ScanGarbage([&](const std::vector<ChunkId>& batch,
                                       const std::vector<int64_t>& counts) -> Status {
    chunk_keys.clear();
    for (const ChunkId& id : batch) chunk_keys.push_back(keys::Chunk(id));
    RETURN_IF_ERROR(meta.engine().MultiGet(Cf::kChunks, chunk_keys, &locs));
    for (size_t i = 0; i < batch.size(); i++) {
      if (counts[i] > 0 || !locs[i]) {
        scan.revived.push_back(batch[i]);
        continue;
      }
      ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(*locs[i]));
      scan.dead.push_back(batch[i]);
      scan.dead_bytes += loc.length;
      dead.insert(batch[i]);
    }
    return Status::OK();
  }));

  // Live bytes per pack, from the index (dead chunks excluded).
  auto ci = meta.NewScanIterator(Cf::kChunks);
  for (ci->Seek(""); ci->Valid(); ci->Next()) {
    ChunkId id = ChunkId::FromBytes(ci->key().data());
    if (dead.count(id)) continue;
    ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(ci->value()));
    scan.live_bytes += loc.length;
    if (!loc.is_inline()) scan.live[loc.pack] += loc.length + pack::kRecordHeaderSize;
  }
  RETURN_IF_ERROR(ci->status().WithContext("scan chunk index"));

  scan.active = store.chunks().active_pack();
  ASSIGN_OR_RETURN(scan.packs, store.backend().List());
  if (store.shared()) {
    std::erase_if(scan.packs, [&](const PackInfo& p) {
      if (!open.Excludes(p.id)) return false;
      scan.open_packs.push_back(p);
      return true;
    });
  }
  return scan;
}

std::vector<PackUsage> UsageOf(const Scan& scan) {
  std::vector<PackUsage> out;
  for (const auto& p : scan.packs) {
    auto l = scan.live.find(p.id);
    out.push_back(PackUsage{p.id, p.size, l == scan.live.end() ? 0 : l->second});
  }
  return out;
}

SpaceUsage Totals(const Scan& scan, const std::vector<PackUsage>& packs) {
  SpaceUsage u;
  u.packs = packs.size();
  u.live_bytes = scan.live_bytes;
  u.unreferenced_chunks = scan.dead.size();
  u.unreferenced_bytes = scan.dead_bytes;
  for (const auto& p : packs) {
    u.pack_bytes += p.size;
    u.live_pack_bytes += std::min(p.live_bytes, p.size);
    u.dead_bytes += p.dead_bytes();
  }
  return u;
}

}  // namespace

uint64_t PackUsage::dead_bytes() const {
  uint64_t used = HeaderOf(size) + live_bytes;
  return size > used ? size - used : 0;
}

Result<SpaceUsage> MeasureSpace(Store& store) {
  ASSIGN_OR_RETURN(Scan scan, ScanStore(store));
  SpaceUsage u = Totals(scan, UsageOf(scan));
  // What the store takes includes the packs writers are filling (GC leaves them alone):
  // counted as in use, none of their bytes as dead. Until session 15 `stats` left them
  // out, and a busy daemon's shared store showed "0 B in 0 packs".
  for (const auto& p : scan.open_packs) {
    u.packs++;
    u.pack_bytes += p.size;
    u.live_pack_bytes += p.size;
  }
  return u;
}

Result<GcPlan> PlanGc(Store& store, const GcOptions& opts) {
  ASSIGN_OR_RETURN(Scan scan, ScanStore(store));
  GcPlan plan;
  std::vector<PackUsage> packs = UsageOf(scan);
  plan.before = Totals(scan, packs);
  plan.dead_chunks = std::move(scan.dead);
  plan.dead_bytes = scan.dead_bytes;
  plan.revived = std::move(scan.revived);
  plan.active_pack = scan.active;
  for (const auto& p : scan.open_packs) {
    plan.packs_in_use++;
    plan.pack_bytes_in_use += p.size;
  }

  // What is left if every chosen pack goes: its live bytes are written again (into the
  // active pack), the rest of it is freed.
  uint64_t left = plan.before.pack_bytes;
  uint64_t dead_left = plan.before.dead_bytes;
  auto take = [&](const PackUsage& p) {
    uint64_t live = std::min(p.live_bytes, p.size);
    plan.rewrite.push_back(p);
    plan.bytes_to_copy += live;
    plan.bytes_to_free += p.size - live;
    left -= p.size - live;
    dead_left -= p.dead_bytes();
  };
  // Emptiest first: most bytes freed per byte copied.
  auto live_fraction = [](const PackUsage& p) {
    return p.size ? static_cast<double>(p.live_bytes) / static_cast<double>(p.size) : 0.0;
  };
  std::stable_sort(packs.begin(), packs.end(), [&](const PackUsage& a, const PackUsage& b) {
    return live_fraction(a) < live_fraction(b);
  });
  std::vector<PackUsage> rest;
  for (const auto& p : packs) {
    // Packs with no live chunk always go (nothing to copy), and so do those below the
    // explicit live fraction.
    if (p.live_bytes == 0 || live_fraction(p) < opts.rewrite_below_live_fraction) {
      take(p);
    } else if (p.dead_bytes() > 0) {
      rest.push_back(p);
    }
  }
  for (const auto& p : rest) {
    if (static_cast<double>(dead_left) <= opts.max_unused_fraction * static_cast<double>(left)) {
      break;
    }
    take(p);
  }
  plan.pack_bytes_after = left;
  plan.dead_bytes_after = dead_left;
  return plan;
}

namespace {

// Drops chunks whose count is zero; forgets revived candidates. Each batch is one
// transaction that reads every count (and index entry) it decides on: a writer that
// dedups against one of these chunks, or adds a reference to it, before the batch commits
// makes the batch conflict, and it runs again on the new state (docs/gc.md). The holds of
// this process's writers are skipped only to save such retries.
//
// A batch that keeps conflicting is split in halves, down to one chunk; a chunk that
// still keeps conflicting is left as it is, a candidate for the next GC (its `garbage`
// key stays: always safe). Without that, a chunk whose count writers keep moving (a block
// many files share, on a shared store under load) made every attempt of its batch of
// 1,024 conflict, and `snapfs gc` failed ("kept conflicting after 64 attempts") or ran
// for minutes: nothing was lost, but nothing was collected either.
Status CollectBatch(Store& store, std::span<const ChunkId> ids, bool revived,
                    GcResult* result) {
  ChunkStore& chunks = store.chunks();
  std::vector<ChunkId> deleted;
  Status st = kv::RunTxn(
      store.meta().engine(),
      [&](kv::Txn& t) -> Status {
        deleted.clear();
        // Ids a writer of this process is about to reference are skipped, and not read
        // (a read of its count would make the batch conflict with that writer's commit).
        std::vector<ChunkId> todo;
        {
          MutexLock cl(&chunks.gc_lock());
          for (const ChunkId& id : ids) {
            if (!chunks.IsHeldLocked(id)) todo.push_back(id);
          }
        }
        // Every count and index entry of the batch in one read (PostgreSQL: one round
        // trip, not two per chunk; a shorter transaction also conflicts less).
        std::vector<std::pair<Cf, std::string>> ahead;
        for (const ChunkId& id : todo) {
          ahead.emplace_back(Cf::kRefs, keys::Chunk(id));
          ahead.emplace_back(Cf::kChunks, keys::Chunk(id));
        }
        RETURN_IF_ERROR(kv::PrefetchInBatches(t, ahead));
        for (const ChunkId& id : todo) {
          const std::string key = keys::Chunk(id);
          ASSIGN_OR_RETURN(int64_t count, t.GetCounter(Cf::kRefs, key));
          if (count > 0) {
            t.Delete(Cf::kGarbage, key);
            continue;
          }
          std::string v;
          Status s = t.Get(Cf::kChunks, key, &v);
          if (!s.ok() && !s.Is(Code::kNotFound)) return s;
          if (revived) {
            if (s.ok()) continue;  // dead again: next run
            t.Delete(Cf::kGarbage, key);
            t.Delete(Cf::kRefs, key);
            continue;
          }
          t.Delete(Cf::kChunks, key);
          t.Delete(Cf::kRefs, key);
          t.Delete(Cf::kGarbage, key);
          if (s.ok()) deleted.push_back(id);
        }
        return Status::OK();
      },
      kv::RunOptions{.max_attempts = kBatchAttempts, .return_conflict = true});
  if (st.Is(Code::kConflict)) {
    if (ids.size() == 1) {
      result->chunks_busy++;
      return Status::OK();
    }
    const size_t half = ids.size() / 2;
    RETURN_IF_ERROR(CollectBatch(store, ids.first(half), revived, result));
    return CollectBatch(store, ids.subspan(half), revived, result);
  }
  RETURN_IF_ERROR(st);
  for (const auto& id : deleted) chunks.DropFromCache(id);
  result->chunks_deleted += deleted.size();
  return Status::OK();
}

Status CollectDead(Store& store, const std::vector<ChunkId>& ids, bool revived, GcResult* result) {
  for (size_t i = 0; i < ids.size(); i += kBatchChunks) {
    const size_t n = std::min(ids.size() - i, kBatchChunks);
    RETURN_IF_ERROR(CollectBatch(store, std::span(ids).subspan(i, n), revived, result));
  }
  return Status::OK();
}

// Copies the indexed chunks of one frozen pack (no uncommitted txn points into it, and
// nothing appends to it: ChunkStore::FreezeForGc) of `size` bytes to the active pack,
// repoints the index, and removes the pack.
Status RewritePack(Store& store, PackId pack, uint64_t size, uint64_t lease, GcResult* result) {
  MetaStore& meta = store.meta();
  ChunkStore& chunks = store.chunks();
  std::string data(size, '\0');
  Status rs = store.backend().Read(pack, 0, size, reinterpret_cast<uint8_t*>(data.data()));
  if (rs.Is(Code::kNotFound)) return Status::OK();  // an earlier run of this plan removed it
  RETURN_IF_ERROR(rs.WithContext("gc read pack " + std::to_string(pack)));
  struct Move {
    ChunkId id;
    ChunkLocation from, to;
  };
  std::vector<Move> moves;
  uint64_t copied = 0;
  // The records, then their index entries in one batched read (PostgreSQL: a round trip
  // per 256, not one per record).
  struct Record {
    ChunkId id;
    uint64_t off;
    uint32_t length;
  };
  std::vector<Record> records;
  std::vector<std::string> index_keys;
  size_t pos = pack::IsHeader(data) ? pack::kHeaderSize : data.size();
  while (pos + pack::kRecordHeaderSize <= data.size()) {
    pack::RecordHeader h;
    if (!pack::ParseRecordHeader(std::string_view(data).substr(pos), &h)) break;  // torn tail
    uint64_t off = pos + pack::kRecordHeaderSize;
    if (off + h.length > data.size()) break;
    records.push_back(Record{h.id, off, h.length});
    index_keys.push_back(keys::Chunk(h.id));
    pos = off + h.length;
  }
  std::vector<std::optional<std::string>> index;
  RETURN_IF_ERROR(meta.engine().MultiGet(Cf::kChunks, index_keys, &index));
  for (size_t i = 0; i < records.size(); i++) {
    const Record& r = records[i];
    if (!index[i]) continue;
    ASSIGN_OR_RETURN(auto loc, ChunkLocation::Decode(*index[i]));
    if (loc.pack != pack || loc.offset != r.off) continue;
    std::span bytes(reinterpret_cast<const uint8_t*>(data.data() + r.off), r.length);
    if (chunks.Hash(bytes.data(), bytes.size()) != r.id) {
      return Status::Corruption("gc: chunk " + r.id.Hex() + " in pack " + std::to_string(pack) +
                                " is corrupt; run snapfs fsck");
    }
    ASSIGN_OR_RETURN(auto to, chunks.Relocate(r.id, bytes));
    moves.push_back(Move{r.id, loc, to});
    copied += r.length + pack::kRecordHeaderSize;
  }
  result->bytes_copied += copied;
  // The copies are durable before the index points at them.
  RETURN_IF_ERROR(chunks.SyncAll());
  // Repoint the index, in one transaction that reads each entry it changes: an entry
  // changed meanwhile (deleted by another GC, rewritten) is left alone. Durable before
  // the old pack goes: a crash must never leave the index pointing at it.
  RETURN_IF_ERROR(kv::RunTxn(
      meta.engine(),
      [&](kv::Txn& t) -> Status {
        // The copies are in packs of ours whose records may be gone (sealed, nothing
        // uncommitted in them): the lease is what keeps every other GC away from them,
        // and a reap of our session takes it.
        if (lease != 0) RETURN_IF_ERROR(FenceGcLease(t, lease));
        std::vector<std::pair<Cf, std::string>> ahead;
        for (const auto& m : moves) ahead.emplace_back(Cf::kChunks, keys::Chunk(m.id));
        RETURN_IF_ERROR(kv::PrefetchInBatches(t, ahead));
        for (const auto& m : moves) {
          std::string v;
          Status s = t.Get(Cf::kChunks, keys::Chunk(m.id), &v);
          if (s.Is(Code::kNotFound)) continue;
          RETURN_IF_ERROR(s);
          ASSIGN_OR_RETURN(auto now, ChunkLocation::Decode(v));
          if (now.pack != m.from.pack || now.offset != m.from.offset) continue;
          t.Put(Cf::kChunks, keys::Chunk(m.id), m.to.Encode());
        }
        return Status::OK();
      },
      kv::RunOptions{.sync = true}));
  meta.CountLogSync();
  {
    MutexLock cl(&chunks.gc_lock());
    // FreezeForGc found no uncommitted txn pointing into the pack and none can start to
    // (nothing appends to it any more); checked again here, under the locks the removal
    // needs anyway, so that the rule stays local: never remove a pack a writer needs.
    if (chunks.PackHasInflightLocked(pack)) {
      result->packs_busy++;
      return Status::OK();
    }
    // Removed under the locks: no writer can pick up a location in it meanwhile.
    RETURN_IF_ERROR(store.backend().Remove(pack).WithContext("gc remove pack"));
  }
  result->packs_removed++;
  result->bytes_freed += size;
  return Status::OK();
}

// One execution at a time per process: the daemon's periodic GC and a `snapfs gc` sent
// to it would otherwise rewrite the same pack twice. fsck holds it too (HoldOffGc).
std::mutex& ExecuteMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

std::unique_lock<std::mutex> HoldOffGc() { return std::unique_lock<std::mutex>(ExecuteMutex()); }

// lease: the session holding the GC lease (0: a folder store, no lease).
static Result<GcResult> ExecuteLocked(Store& store, const GcPlan& plan, uint64_t lease);

Result<GcLeaseHold> GcLeaseHold::Take(Store& store, std::chrono::seconds wait,
                                      const std::function<void(const Status&)>& waiting) {
  if (!store.shared()) return GcLeaseHold(nullptr, 0);
  const auto until = std::chrono::steady_clock::now() + wait;
  bool said = false;
  while (true) {
    auto held = store.session()->HoldGcLease();
    if (held.ok()) return GcLeaseHold(store.session(), *held);
    if (!held.status().Is(Code::kBusy) || std::chrono::steady_clock::now() >= until) {
      return held.status();
    }
    if (!said && waiting) waiting(held.status());
    said = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

GcLeaseHold::~GcLeaseHold() {
  if (session_) session_->DropGcLease();
}

Result<GcResult> ExecuteGc(Store& store, const GcPlan& plan) {
  std::lock_guard l(ExecuteMutex());
  if (!store.shared()) return ExecuteLocked(store, plan, 0);
  // One GC at a time store-wide (a second one would copy the same chunks again); the
  // lease of a session that dies is freed when the session is reaped. Held through the
  // session's count: an fsck of this process may hold it already.
  ASSIGN_OR_RETURN(const GcLeaseHold lease, GcLeaseHold::Take(store, std::chrono::seconds(0)));
  auto r = ExecuteLocked(store, plan, lease.lease());
  // Counter deltas and tombstones of the database engine: folded after each run.
  if (r.ok()) {
    if (Status c = store.meta().engine().Compact(); !c.ok()) {
      SNAPFS_LOG_WARN("compact the metadata: " + c.ToString());
    }
  }
  return r;
}

static Result<GcResult> ExecuteLocked(Store& store, const GcPlan& plan, uint64_t lease) {
  GcResult r;
  ChunkStore& chunks = store.chunks();
  RETURN_IF_ERROR(CollectDead(store, plan.revived, /*revived=*/true, &r));
  RETURN_IF_ERROR(CollectDead(store, plan.dead_chunks, /*revived=*/false, &r));
  // Dead-chunk deletions reach the log before any pack they pointed into is removed.
  RETURN_IF_ERROR(store.meta().SyncWal());
  // Freeze every chosen pack first (seal the active one if chosen), before anything is
  // copied: copies then go to a new pack, never into one about to be rewritten, and the
  // sizes listed afterwards are final. A pack that was active when planned may have
  // grown since, and so may one that rotated out meanwhile: its listed size now covers
  // every chunk committed into it.
  std::vector<PackId> frozen;
  for (const auto& p : plan.rewrite) {
    bool sealed = false;
    ASSIGN_OR_RETURN(bool ok, chunks.FreezeForGc(p.id, &sealed));
    if (!ok) {  // a writer has not committed what it put there: a later GC
      r.packs_busy++;
      continue;
    }
    r.sealed_active |= sealed;
    frozen.push_back(p.id);
  }
  if (!frozen.empty()) {
    ASSIGN_OR_RETURN(auto now, store.backend().List());
    std::map<PackId, uint64_t> size;
    for (const auto& q : now) size[q.id] = q.size;
    for (PackId id : frozen) {
      auto it = size.find(id);
      if (it == size.end()) continue;  // an earlier run of this plan removed it
      RETURN_IF_ERROR(RewritePack(store, id, it->second, lease, &r));
    }
  }
  r.bytes_freed = r.bytes_freed > r.bytes_copied ? r.bytes_freed - r.bytes_copied : 0;
  return r;
}

Result<GcResult> RunGc(Store& store, const GcOptions& opts) {
  // Planned under the same lock, so that a plan never predates another run's execution.
  static std::mutex run_mu;
  std::lock_guard l(run_mu);
  ASSIGN_OR_RETURN(auto plan, PlanGc(store, opts));
  return ExecuteGc(store, plan);
}

}  // namespace snapfs
