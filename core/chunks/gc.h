// Garbage collection, plan-then-execute (restic's prune):
//   PlanGc    reads: which chunks have a zero refcount, how full each pack is, and which
//             packs to rewrite so that at most `max_unused_fraction` of pack bytes stay dead.
//   ExecuteGc drops dead chunks from the index, copies the live chunks of the chosen packs
//             into the active pack, repoints the index, then removes the old packs. The
//             pack being appended to is sealed first when the plan chose it.
// Safe if killed at any point: the index always points at intact bytes (old packs are
// removed only after the index change that stops pointing at them is durable). Safe
// against concurrent writers: a chunk a writer holds (ChunkStore in-flight set) is never
// deleted, and a pack an uncommitted writer points into is neither read for rewriting
// nor removed. See docs/gc.md.
//
// Thread-safety: one execution at a time per process (ExecuteGc serialises on a mutex;
// RunGc also serialises its plans); runs concurrently with Filesystem operations.
// PlanGc and MeasureSpace may run at any time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "base/chunk_id.h"
#include "core/store.h"

namespace snapfs {

struct GcOptions {
  // The target: after GC, dead pack bytes are at most this fraction of the pack bytes
  // left (restic prune's --max-unused). 0 rewrites every pack holding any dead byte.
  double max_unused_fraction = 0.05;
  // An extra, explicit rule: also rewrite every pack whose live bytes are below this
  // fraction of its size. 0 (the default) turns it off.
  double rewrite_below_live_fraction = 0;
};

struct PackUsage {
  PackId id = 0;
  uint64_t size = 0;
  uint64_t live_bytes = 0;  // live chunks and their record headers
  // Bytes that hold no live chunk (the pack header is overhead, not dead).
  uint64_t dead_bytes() const;
};

// Where the store's bytes are: what stats reports and what GC aims at.
struct SpaceUsage {
  uint64_t packs = 0;
  uint64_t pack_bytes = 0;           // sum of pack sizes, as the backend sees them
  uint64_t live_bytes = 0;           // referenced chunks' data, in packs and inline
  uint64_t live_pack_bytes = 0;      // pack bytes holding live chunks (with record headers)
  uint64_t dead_bytes = 0;           // pack bytes holding no live chunk
  uint64_t unreferenced_chunks = 0;  // refcount 0, still indexed: the next GC drops them
  uint64_t unreferenced_bytes = 0;   // their data bytes (packed or inline)
};

struct GcPlan {
  std::vector<ChunkId> dead_chunks;  // refcount 0: drop from the index
  uint64_t dead_bytes = 0;           // their data bytes
  std::vector<ChunkId> revived;      // garbage candidates whose count is > 0 again
  // A shared store: packs sessions are filling or have just sealed, left alone (not in
  // `before`): their chunks are not all committed yet.
  uint64_t packs_in_use = 0, pack_bytes_in_use = 0;
  std::vector<PackUsage> rewrite;    // packs to copy and remove, emptiest first
  uint64_t bytes_to_copy = 0;
  uint64_t bytes_to_free = 0;     // pack bytes removed by executing the plan, net
  PackId active_pack = 0;         // being appended to when planned (0: none)
  SpaceUsage before;              // as planned on
  uint64_t pack_bytes_after = 0;  // expected, if every rewrite happens
  uint64_t dead_bytes_after = 0;
};

struct GcResult {
  uint64_t chunks_deleted = 0;
  uint64_t packs_removed = 0;
  uint64_t packs_busy = 0;  // skipped: an uncommitted writer points into them (next GC)
  // Dead chunks left for the next GC: writers kept changing their counts meanwhile.
  uint64_t chunks_busy = 0;
  bool sealed_active = false;
  uint64_t bytes_copied = 0;  // chunk data and record headers written again
  uint64_t bytes_freed = 0;   // pack bytes removed, net of the copies
};

Result<SpaceUsage> MeasureSpace(Store& store);
Result<GcPlan> PlanGc(Store& store, const GcOptions& opts = {});
Result<GcResult> ExecuteGc(Store& store, const GcPlan& plan);
// Holds this process's GC executions off while the lock lives (they wait): fsck reads
// one snapshot of the index, whose packs GC must not remove or rewrite meanwhile. Other
// processes of a shared store are held off by the store-wide GC lease (GcLeaseHold).
std::unique_lock<std::mutex> HoldOffGc();

// Holds GC off on every other host of a shared store while it lives: the store-wide GC
// lease, held through the session (Session::HoldGcLease). Nothing for a folder store.
// fsck (through a daemon or not) and gc's check of the snapshots read one view of the
// metadata and then the chunks it names; another host's GC removing a pack meanwhile
// would make them report damage that is not there.
class GcLeaseHold {
 public:
  // Waits up to `wait` for another host's GC to end, calling `waiting` once with its
  // Busy status (which names the holder) if it has to wait; then Busy.
  static Result<GcLeaseHold> Take(Store& store, std::chrono::seconds wait,
                                  const std::function<void(const Status&)>& waiting = {});
  GcLeaseHold(GcLeaseHold&& o) noexcept
      : session_(std::exchange(o.session_, nullptr)), lease_(o.lease_) {}
  GcLeaseHold& operator=(GcLeaseHold&&) = delete;
  ~GcLeaseHold();
  // The session id the lease is held under (0 for a folder store): GC fences its
  // deletes with it (Session::FenceGcLease).
  uint64_t lease() const { return lease_; }

 private:
  GcLeaseHold(Session* s, uint64_t lease) : session_(s), lease_(lease) {}
  Session* session_;  // null: nothing held
  uint64_t lease_;
};
// Plan and execute, serialised per process.
Result<GcResult> RunGc(Store& store, const GcOptions& opts = {});

}  // namespace snapfs
