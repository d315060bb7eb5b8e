// SpaceGuard: keeps a full disk from reaching the metadata log.
//
// Why: when file data filled the disk up to the last byte, RocksDB's next log append failed
// and RocksDB stopped writing for good (its background error): every metadata write failed
// from then on, `rm` and `gc` included, so the space could not be freed through snapfs, and
// the store would not even open again until someone freed space outside it
// (docs/reliability.md, finding 4). So space is given out in an order that never gets
// there: new pack bytes stop while fewer than kDataReserve bytes are free on the data's
// disk, and operations that grow the metadata (create, mkdir, link, symlink, mknod,
// setxattr, a small file's inline data) stop below kMetaReserve on the metadata's disk;
// both fail with NoSpace (ENOSPC). Deletes are never refused (they are how space comes
// back), nor is GC's copying of live chunks (it frees more than it takes). The metadata
// log then always has kMetaReserve for the deletes, the renames and the memtable flushes.
//
// A file system that reports no size (statfs: 0 blocks in all; a FUSE file system without
// a statfs handler, such as LazyFS) is not guarded: its free space is unknown, not 0.
//
// Free space is read with statvfs at most every 100 ms while plenty is free, and on every
// call once it is within 4x the reserve, so the guard costs nothing in the common case.
//
// Folder stores only: a database store's metadata is not on this machine's disk (an S3
// store's spool is guarded through the backend's Space(), which is the spool's disk).
//
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "backends/backend.h"
#include "base/status.h"

namespace snapfs {

class SpaceGuard {
 public:
  static constexpr uint64_t kDataReserve = 128ull << 20;
  static constexpr uint64_t kMetaReserve = 64ull << 20;

  SpaceGuard(std::string meta_dir, Backend* backend);

  // NoSpace if `n` more bytes in packs would leave less than kDataReserve free.
  Status ForData(uint64_t n);
  // NoSpace if the metadata's disk has less than kMetaReserve free.
  Status ForMetadata();
  // What a writer may still use for file data (statfs's f_bavail): free minus the reserve.
  static uint64_t Usable(uint64_t free_bytes) {
    return free_bytes > kDataReserve ? free_bytes - kDataReserve : 0;
  }

 private:
  struct Probe {
    std::atomic<int64_t> at_ns{0};
    std::atomic<uint64_t> free{0};
  };
  // Free bytes, from the cache if it is fresh enough for `reserve`.
  Result<uint64_t> Free(Probe& p, uint64_t reserve, bool data);

  const std::string meta_dir_;
  Backend* const backend_;
  Probe data_, meta_;
};

}  // namespace snapfs
