// The key spaces of a store's metadata: one RocksDB column family each (one table each in
// a SQL engine). What the keys and values of each hold is docs/metadata-schema.md.
#pragma once

#include <cstddef>

namespace snapfs {

enum class Cf {
  kDefault = 0,  // counters and store-wide records ("next_ino", "next_pack", ...)
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

inline constexpr size_t kCfCount = static_cast<size_t>(Cf::kCount);

// Names as stored (RocksDB column family names). Never rename one: stores use them.
inline constexpr const char* kCfNames[kCfCount] = {
    "default", "inodes", "dentries", "dirindex",  "extents", "xattrs", "chunks",
    "refs",    "garbage", "orphans", "snapshots", "pins",    "pinned", "hidden"};

inline const char* CfName(Cf c) { return kCfNames[static_cast<size_t>(c)]; }

// The spaces that hold counters (Txn::Add): chunk refcounts, and store-wide counters in
// the default space. An Add anywhere else fails its transaction's commit, on every
// engine: a remote engine checks each read of a counter space against concurrent adds
// (a statement or two per key at commit, docs/scale-out.md) and skips that everywhere else.
inline constexpr bool CfHasCounters(Cf c) { return c == Cf::kDefault || c == Cf::kRefs; }

}  // namespace snapfs
