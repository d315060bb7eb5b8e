// fsck: recompute from scratch and compare (restic's check).
//   - refcounts: counted from every extent, compared with the stored counts;
//   - every extent's chunk is in the index, every index entry points inside a pack at a
//     record with the same id; with verify, every chunk's bytes re-hash to its id;
//   - namespace: every entry points at an inode, link counts match the entries.
// Thread-safety: safe to run while the store is in use, but it scans the key spaces one
// after another, not one snapshot: run it on a quiet store (unmounted, or through the
// daemon) for exact results; a concurrent writer may show up as a transient mismatch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/store.h"

namespace snapfs {

struct FsckOptions {
  bool verify_data = false;  // re-hash every chunk (reads all pack data)
};

struct FsckReport {
  uint64_t inodes = 0, dentries = 0, extents = 0, chunks = 0, packs = 0;
  uint64_t logical_bytes = 0;  // sum of regular file sizes
  uint64_t stored_bytes = 0;   // sum of indexed chunk sizes
  uint64_t garbage_chunks = 0; // indexed chunks with refcount 0 (GC will reclaim)
  std::vector<std::string> problems;
  bool ok() const { return problems.empty(); }
};

Result<FsckReport> Fsck(Store& store, const FsckOptions& opts = {});

}  // namespace snapfs
