// DiskBlockCache: a size-bounded local cache of remote pack blocks, so that re-reads and
// restores of an S3-backed store do not fetch the same bytes again (`mount --cache-dir`,
// `--cache-size`). Packs are immutable, so a cached block never goes stale; it goes when
// its pack is removed or when it is the least recently used one over the size bound.
//
// Files: DIR/<pack id, 16 hex>-<block number, 16 hex>.blk holding the block's bytes and
// a 12-byte trailer ("SBC1" + XXH64 of the bytes). A file whose trailer does not match (a
// crash while writing: files are renamed into place but not fsynced) is deleted and
// counts as a miss. At open the folder is scanned, oldest modification first, to rebuild
// the LRU order; temporary files of a crashed run are deleted.
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "base/mutex.h"
#include "base/status.h"

namespace snapfs {

class DiskBlockCache {
 public:
  static Result<std::unique_ptr<DiskBlockCache>> Open(const std::string& dir, uint64_t max_bytes);

  // The block's bytes, or nullopt (a miss, or a damaged file, which is then removed).
  std::optional<std::string> Get(uint64_t pack, uint64_t block);
  // Stores a block (best effort: a failure to write only means a later miss).
  void Put(uint64_t pack, uint64_t block, const std::string& data);
  // Forgets every block of a pack (it was removed).
  void DropPack(uint64_t pack);

  uint64_t bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  using Key = std::pair<uint64_t, uint64_t>;
  struct Entry {
    uint64_t size;
    std::list<Key>::iterator lru;
  };
  DiskBlockCache(std::string dir, uint64_t max_bytes) : dir_(std::move(dir)), max_bytes_(max_bytes) {}
  std::string PathOf(const Key& k) const;
  void InsertLocked(const Key& k, uint64_t size) REQUIRES(mu_);
  void EvictLocked() REQUIRES(mu_);

  const std::string dir_;
  const uint64_t max_bytes_;
  mutable Mutex mu_;
  std::map<Key, Entry> entries_ GUARDED_BY(mu_);
  std::list<Key> lru_ GUARDED_BY(mu_);  // most recent first
  uint64_t bytes_ GUARDED_BY(mu_) = 0;
  uint64_t hits_ GUARDED_BY(mu_) = 0;
  uint64_t misses_ GUARDED_BY(mu_) = 0;
  uint64_t tmp_seq_ GUARDED_BY(mu_) = 0;
};

}  // namespace snapfs
