// BufferPool: large write buffers kept for reuse.
//
// Why: a file streamed through the writeback cache arrives as ~1 MiB WRITEs appended to
// one buffered range that is committed every OpenFile::kFlushThreshold bytes. Memory the
// process has not touched yet costs a page fault per page (the kernel zeroes each one),
// and with glibc's mmap threshold at 1 MiB (daemon/mount.cc) every buffer of 1 MiB or more
// is fresh memory when allocated and is unmapped when freed. A range that grows past
// kMinSize takes a buffer from here instead, and the flush gives it back once its bytes
// are committed; so do WRITEs that arrive ahead of the one before them (the writeback
// cache has several in flight, and the daemon's threads take them in any order) until
// they are merged into their neighbour, and a flush's region when it has to be assembled.
//
// Sizes: a buffer is handed out at the size asked for, rounded up to 1 MiB, unless a kept
// one is large enough (the smallest such is taken). So a stream settles on a few buffers
// of its range's size and a few of a WRITE's, all reused. (The first version kept four
// buffers of one 10 MiB size: WRITEs that came ahead took them, the range then outgrew
// them, and a 1 GiB `dd` touched ~1.8 fresh pages per page written: ~15% of the daemon's
// CPU in page faults. docs/performance.md, session 10.)
//
// Memory: at most kMaxBytes of capacity is kept, in buffers of at most kMaxKeep; more in
// use at once are plain allocations, freed as usual. Over the budget the smallest kept
// buffers go first. (Until session 17 a buffer given back to a full pool was freed,
// whatever its size: the pool filled with the 256 KiB-1 MiB buffers of ranges that had
// just outgrown plain strings and of WRITEs that came ahead, and freed the 20 MiB ones
// the streamed ranges need. Counted over one incremental Flink-like run: 67 of 287 large
// requests got fresh memory, 1.3 GB of it, and page faults in the copy of WRITE payloads
// were ~11% of the daemon's CPU. docs/performance.md, session 17.)
//
// Thread-safety: thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "base/mutex.h"

namespace snapfs {

class BufferPool {
 public:
  static constexpr size_t kMinSize = 256 << 10;  // smaller ranges grow as plain strings
  // What a streamed range asks for: what a writer may buffer while the file's last bytes
  // are in flight (FileData::Write: twice OpenFile::kFlushThreshold) and the WRITEs the
  // kernel has in flight meanwhile, so that the range is never moved to a larger buffer.
  static constexpr size_t kCapacity = 20 << 20;
  static constexpr size_t kMaxKeep = 32 << 20;
  static constexpr size_t kMaxBytes = 64 << 20;

  // An empty string with at least `want` bytes of capacity.
  std::string Take(size_t want) EXCLUDES(mu_);
  // Keeps `s` for reuse if it is of a size worth keeping; over the budget, the smallest
  // kept buffers (`s` itself if it is the smallest) are freed.
  void Give(std::string&& s) EXCLUDES(mu_);
  // The capacities of the buffers kept now, ascending (tests).
  std::vector<size_t> KeptCapacities() const EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::multimap<size_t, std::string> free_ GUARDED_BY(mu_);  // by capacity
  size_t kept_bytes_ GUARDED_BY(mu_) = 0;
};

}  // namespace snapfs
