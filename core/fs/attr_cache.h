// AttrCache: inodes as this daemon last committed them, for a shared store's GETATTRs
// (Filesystem::GetAttr). Private to core/fs/.
//
// Why: the kernel caches a shared mount's folder attributes for the entry timeout, but
// drops them whenever this host changes the folder (every create or unlink in it), and
// it keeps no file attributes at all (close-to-open). So a create is followed by a
// GETATTR of its folder (the next path walk's permission check) and one of the new
// file, each a database read, although this daemon has just committed both.
//
// What is answered from here, for at most `ttl` after the commit (the staleness a
// shared mount already allows for another host's change of a name or folder):
//  - folders;
//  - regular files only while this host has them open for writing: their size and
//    times are this host's own then (FileData overlays them), and an open of a file
//    another host wrote still reads the database (close-to-open).
// The kernel may keep an answer from here only for what is left of its `ttl`
// (Attr::cache_left_s), so the bound stays `ttl`. Disabled (ttl 0) on folder stores,
// where the kernel caches everything itself.
//
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "base/mutex.h"
#include "core/fs/inode.h"

namespace snapfs {

class AttrCache {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMaxEntries = 16384;

  void set_ttl(Clock::duration ttl) EXCLUDES(mu_);
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  // `n` as a transaction that wrote or conflict-checked it has just committed it.
  void Committed(const Inode& n) EXCLUDES(mu_);
  void Erase(uint64_t ino) EXCLUDES(mu_);
  // The entry if committed less than `ttl` ago, and how long it has left.
  std::optional<Inode> Get(uint64_t ino, Clock::duration* left) EXCLUDES(mu_);

 private:
  std::atomic<bool> enabled_{false};
  Mutex mu_;
  Clock::duration ttl_ GUARDED_BY(mu_){0};
  struct Entry {
    Inode node;
    Clock::time_point at;
  };
  std::unordered_map<uint64_t, Entry> map_ GUARDED_BY(mu_);
};

}  // namespace snapfs
