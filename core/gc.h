// Garbage collection, plan-then-execute (restic's prune):
//   PlanGc    reads: which chunks have a zero refcount, how full each pack is.
//   ExecuteGc drops dead chunks from the index, copies the live chunks of sparse packs
//             into the active pack, repoints the index, then removes the old packs.
// Safe if killed at any point: the index always points at intact bytes (old packs are
// removed only after the index change that stops pointing at them is durable). Safe
// against concurrent writers: a chunk a writer holds (ChunkStore in-flight set) is never
// deleted, and the check and the delete happen under the ChunkStore lock. See docs/gc.md.
//
// Thread-safety: one GC at a time per store (RunGc serialises on its own mutex); runs
// concurrently with Filesystem operations.
#pragma once

#include <cstdint>
#include <vector>

#include "core/chunk_id.h"
#include "core/store.h"

namespace snapfs {

struct GcOptions {
  // Packs whose live bytes are below this fraction of their size get rewritten.
  double rewrite_below_live_fraction = 0.5;
};

struct PackUsage {
  PackId id = 0;
  uint64_t size = 0;
  uint64_t live_bytes = 0;
};

struct GcPlan {
  std::vector<ChunkId> dead_chunks;      // refcount 0: drop from the index
  uint64_t dead_bytes = 0;
  std::vector<ChunkId> revived;          // garbage candidates whose count is > 0 again
  std::vector<PackUsage> rewrite;        // sparse packs to copy and remove
  uint64_t bytes_to_copy = 0;
  uint64_t bytes_to_free = 0;            // pack bytes removed by executing the plan
};

struct GcResult {
  uint64_t chunks_deleted = 0;
  uint64_t packs_removed = 0;
  uint64_t bytes_copied = 0;
  uint64_t bytes_freed = 0;
};

Result<GcPlan> PlanGc(Store& store, const GcOptions& opts = {});
Result<GcResult> ExecuteGc(Store& store, const GcPlan& plan);
// Plan and execute, serialised per process.
Result<GcResult> RunGc(Store& store, const GcOptions& opts = {});

}  // namespace snapfs
