// BufferPool: a few large write buffers kept for reuse.
//
// Why: a file streamed through the writeback cache arrives as ~1 MiB WRITEs appended to
// one buffered range that is committed every OpenFile::kFlushThreshold bytes. Growing a
// fresh std::string to ~8 MiB each time costs a realloc copy at every doubling (about one
// more pass over the bytes) and a page fault per new page (the kernel zeroes each one):
// together ~15% of the daemon's CPU in the Flink-like profile (docs/performance.md). A
// range that grows past kMinSize takes a buffer from here instead, and the flush gives it
// back once its bytes are committed. A WRITE that arrives ahead of the one before it (the
// writeback cache sends them in any order) takes one too, and gives it back when it is
// merged into its neighbour.
//
// Memory: at most kMaxBuffers buffers of kCapacity bytes are kept (40 MiB); more in use
// at once are plain allocations that are freed as usual.
//
// Thread-safety: thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "base/mutex.h"

namespace snapfs {

class BufferPool {
 public:
  static constexpr size_t kMinSize = 256 << 10;   // smaller ranges grow as plain strings
  static constexpr size_t kCapacity = 10 << 20;   // the threshold, a WRITE and a chunk tail
  static constexpr size_t kMaxBuffers = 4;

  // An empty string with at least kCapacity bytes of capacity.
  std::string Take() EXCLUDES(mu_);
  // Keeps `s` for reuse if it is one of ours in size and the pool has room.
  void Give(std::string&& s) EXCLUDES(mu_);

 private:
  Mutex mu_;
  std::vector<std::string> free_ GUARDED_BY(mu_);
};

}  // namespace snapfs
