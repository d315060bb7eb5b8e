#include "core/fs/extent_map.h"

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


}  // namespace snapfs::extent_map
