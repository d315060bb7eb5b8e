// ExtentMap: a file's extents (offset -> chunk) and the chunk refcounts they imply, as
// one piece: every extent added or dropped changes its chunk's refcount in the same
// transaction, and nothing else in snapfs changes a refcount. That is what keeps the
// invariant fsck checks (a chunk's count = the extents naming it) true by construction.
//
// A count that drops may reach zero: the chunk is then noted in the garbage key space,
// where GC looks (it confirms by reading the count in its own transaction).
//
// Thread-safety: stateless; the transaction passed in is the caller's.
#pragma once

#include <cstdint>

#include "core/meta/kv.h"
#include "core/meta/meta_store.h"

namespace snapfs {
class ChunkStore;
}

namespace snapfs::extent_map {

// Adds (or replaces: the caller drops the old one first) the extent at (ino, offset).
void Put(kv::Txn& t, uint64_t ino, uint64_t offset, const ExtentValue& v);
// Drops the extent at (ino, offset), whose value is `v`.
void Remove(kv::Txn& t, uint64_t ino, uint64_t offset, const ExtentValue& v);

// Copies the committed bytes of one file's extents into `buf`, which holds the file's
// bytes [offset, offset + n): each extent `it` yields from where it stands is copied
// where it overlaps that range (holes are left as the caller filled them). `it` must be
// bounded to the file's extents that start before offset + n, and placed at or before
// the one covering `offset`. The file system's reads (latest state) and fsck's
// snapshot check (one read view) both read files this way.
Status CopyExtents(kv::Iterator* it, ChunkStore& chunks, uint64_t offset, size_t n, char* buf);

}  // namespace snapfs::extent_map
