#include "core/fs/extent_map.h"

namespace snapfs::extent_map {
namespace {

void AddRef(kv::Txn& t, const ChunkId& id, int64_t delta) {
  t.Add(Cf::kRefs, keys::Chunk(id), delta);
  if (delta < 0) t.Put(Cf::kGarbage, keys::Chunk(id), "");
}

}  // namespace

void Put(kv::Txn& t, uint64_t ino, uint64_t offset, const ExtentValue& v) {
  t.Put(Cf::kExtents, keys::Extent(ino, offset), v.Encode());
  AddRef(t, v.id, +1);
}

void Remove(kv::Txn& t, uint64_t ino, uint64_t offset, const ExtentValue& v) {
  t.Delete(Cf::kExtents, keys::Extent(ino, offset));
  AddRef(t, v.id, -1);
}


}  // namespace snapfs::extent_map
