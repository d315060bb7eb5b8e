// What the store holds, counted by one pass over the metadata (no chunk data is read):
// the gauges of /metrics and the counts `snapfs status` shows. Linear in the number of
// inodes and chunks, so the daemon computes it every so often, not per scrape.
//
// Thread-safety: safe to call while the store is in use; the key spaces are read one
// after another, so a concurrent change can show up in one count and not another.
#pragma once

#include <cstdint>

#include "core/store.h"

namespace snapfs {

struct StoreGauges {
  uint64_t logical_bytes = 0;  // sum of regular file sizes
  uint64_t stored_bytes = 0;   // sum of indexed chunk sizes (referenced or not)
  uint64_t dead_bytes = 0;     // pack bytes holding no referenced chunk (GC reclaims them)
  uint64_t pack_bytes = 0;     // sum of pack sizes
  uint64_t packs = 0;
  uint64_t chunks = 0;
  uint64_t snapshots = 0, pins = 0, hidden_entries = 0;
  // The purge queue: folders `snapfs rm`/prune removed whose files are not all dropped
  // yet, and the entries dropped of them so far.
  uint64_t purge_folders = 0, purge_removed = 0;
};

// Only the snapshot, pin, hidden-entry and purge-queue counts (cheap: those key spaces are small).
Result<StoreGauges> CountSnapshots(Store& store);
Result<StoreGauges> ComputeStoreGauges(Store& store);

}  // namespace snapfs
