#include "core/fs/extent_map.h"

#include <algorithm>
#include <cstring>

#include "base/coding.h"
#include "core/chunks/chunk_store.h"

namespace snapfs::extent_map {
namespace {

// Writes here are unchecked (kv::Txn::PutUnchecked), so the engine neither tracks nor
// validates them; what orders them instead:
// - extents of inode I: every transaction that writes them also reads or writes I's
//   inode record, checked (the data path's CommitData reads it; a purge deletes it; a
//   snapshot's copy-on-write puts the new inode). Two writers of I's extents thus
//   conflict on the inode, and a reader of I (the guard) conflicts with either.
// - the garbage mark: its value is "" whoever writes it, and GC, which deletes marks,
//   does so checked after reading the count: a decrement committed after GC's Begin()
//   makes GC's commit conflict (the mark and the count both changed); one committed
//   after GC's makes the mark reappear, and GC looks at the chunk again later.
void AddRef(kv::Txn& t, const std::string& chunk_key, int64_t delta) {
  t.Add(Cf::kRefs, chunk_key, delta);
  if (delta < 0) t.PutUnchecked(Cf::kGarbage, chunk_key, "");
}

}  // namespace

void Put(kv::Txn& t, uint64_t ino, uint64_t offset, const ExtentValue& v) {
  t.PutUnchecked(Cf::kExtents, keys::Extent(ino, offset), v.Encode());
  AddRef(t, keys::Chunk(v.id), +1);
}

void Remove(kv::Txn& t, uint64_t ino, uint64_t offset, const ExtentValue& v) {
  t.DeleteUnchecked(Cf::kExtents, keys::Extent(ino, offset));
  AddRef(t, keys::Chunk(v.id), -1);
}


Status CopyExtents(kv::Iterator* it, ChunkStore& chunks, uint64_t offset, size_t n, char* buf) {
  const uint64_t end = offset + n;
  for (; it->Valid(); it->Next()) {
    const uint64_t at = GetBE64(it->key().data() + 8);
    ASSIGN_OR_RETURN(auto v, ExtentValue::Decode(it->value()));
    if (at + v.length <= offset) continue;
    ASSIGN_OR_RETURN(auto data, chunks.Get(v.id));
    if (data->size() != v.length) return Status::Corruption("extent length mismatch");
    const uint64_t from = std::max(offset, at), to = std::min(end, at + v.length);
    if (from < to) std::memcpy(buf + (from - offset), data->data() + (from - at), to - from);
  }
  return it->status().WithContext("read extents");
}

}  // namespace snapfs::extent_map
