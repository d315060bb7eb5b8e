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

}  // namespace snapfs
