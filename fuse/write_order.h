// WriteOrder: a file's WRITE requests are handled in the order the kernel queued them.
//
// Why: with the writeback cache the kernel keeps up to max_background (12) WRITEs of a
// stream in flight, and the daemon's workers read them in order but then race for the
// file's lock. While one WRITE holds it for a threshold flush (chunking, pack append,
// fdatasync: ~10 ms) the next dozen pile up, and the lock hands them out in no particular
// order. Every WRITE that lands ahead of the buffered range starts a range of its own,
// which is merged (copied) into its neighbour when the gap fills: a 1 GiB `dd` made ranges
// of 25 MiB, copied them again and again, and touched ~1.8 fresh pages per page written.
// With one worker (no race) the same `dd` ran 1.5x as fast with 1/130 of the page faults
// (docs/performance.md, session 10). Handling each file's WRITEs in the kernel's order
// gives that back without giving up the other workers.
//
// How: the read hook (kill_priv.cc) notes every WRITE's inode and request id (`unique`:
// the kernel numbers requests in the order it queues them) as it is read. The WRITE
// handler then waits, before it touches the file, until no WRITE of the same inode with a
// smaller id is still noted. Order is only a matter of speed here, never of correctness
// (the buffer takes writes in any order), so nothing may wait long on it: a noted WRITE
// whose handler has not started within kStaleAfter (libfuse answered it itself, or the
// kernel interrupted it) is forgotten; one that has started is waited for, as the file's
// lock would be.
//
// Thread-safety: thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>

namespace snapfs::fuse {

class WriteOrder {
 public:
  static constexpr std::chrono::milliseconds kStaleAfter{5};

  explicit WriteOrder(std::chrono::milliseconds stale_after = kStaleAfter)
      : stale_after_(stale_after) {}

  // From the read hook: a WRITE of `ino` with request id `unique` was read.
  void Noted(uint64_t ino, uint64_t unique);

  // Held by the WRITE handler for the request it handles; waits in the constructor until
  // every earlier WRITE of `ino` is done (or forgotten as stale).
  class Turn {
   public:
    Turn(WriteOrder* order, uint64_t ino, uint64_t unique);
    ~Turn();
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;

   private:
    WriteOrder* order_;
    uint64_t ino_, unique_;
    bool noted_ = false;
  };

  size_t noted_for_tests() const;

 private:
  struct Pending {
    std::chrono::steady_clock::time_point read_at;
    bool started = false;
  };
  const std::chrono::milliseconds stale_after_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, std::map<uint64_t, Pending>> pending_;  // ino -> unique ->
};

// The request id of the WRITE this thread read last (0: none), for the handler: libfuse's
// workers read a request and handle it on the same thread.
uint64_t CurrentWriteUnique();
void SetCurrentWriteUnique(uint64_t unique);

}  // namespace snapfs::fuse
