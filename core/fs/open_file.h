// OpenFile: per-inode state of a file that is open (or being truncated/cloned): the write
// buffer shared by every handle of the inode. Private to core/fs/ (FileData).
//
// Thread-safety: every field but `ino` and the atomics is guarded by `mu`. Reads take it
// shared (they change nothing once `loaded`, which Open sets), so concurrent reads of one
// file reach the disk in parallel; everything else takes it exclusively. The one
// exception is `inflight`, see there.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <string>

#include "base/mutex.h"
#include "base/status.h"
#include "core/fs/buffer_pool.h"
#include "core/meta/meta_store.h"

namespace snapfs {

struct OpenFile {
  // Per-inode dirty data larger than this is committed without waiting for a flush.
  static constexpr size_t kFlushThreshold = 8 << 20;

  explicit OpenFile(uint64_t ino) : ino(ino) {}
  const uint64_t ino;

  SharedMutex mu;
  bool loaded GUARDED_BY(mu) = false;
  uint64_t size GUARDED_BY(mu) = 0;            // logical size, including buffered writes
  uint64_t committed_size GUARDED_BY(mu) = 0;  // size recorded in the inode
  int64_t mtime_ns GUARDED_BY(mu) = 0;
  bool attr_dirty GUARDED_BY(mu) = false;  // size or mtime differs from the inode record
  // Made by this process (FileData::OpenCreated) and no data committed since: the flush
  // has no old extents to look for (on a shared store each look is a database read).
  bool no_extents GUARDED_BY(mu) = false;
  // Buffered writes: disjoint ranges keyed by file offset. AddDirty merges a write with
  // the ranges it touches; ranges may still be adjacent (AddUnder), and a flush treats
  // adjacent ones as one region.
  std::map<uint64_t, std::string> dirty GUARDED_BY(mu);
  size_t dirty_bytes GUARDED_BY(mu) = 0;
  // A threshold flush runs when dirty_bytes reaches this (what a flush had to keep
  // buffered plus the threshold), so that held-back bytes do not flush on every write.
  size_t flush_at GUARDED_BY(mu) = kFlushThreshold;

  // A background flush ("flight", FileData::StartFlight): the buffer as it was when the
  // flight began, being committed by a flusher thread without the lock while writes go
  // on into `dirty` (newer bytes, read over these). Reads overlay committed data, then
  // `inflight`, then `dirty`. Changed only under `mu` held exclusively and only while no
  // flight runs, or by the flight's own thread once it holds `mu` again to end; so the
  // flight reads it without the lock (FileData::RunFlight), and so do readers under it.
  std::map<uint64_t, std::string> inflight;
  size_t inflight_bytes GUARDED_BY(mu) = 0;
  bool flushing GUARDED_BY(mu) = false;  // a flight runs; `flight_done` says when it ends
  // The last flight did not commit (its bytes went back into `dirty`): the next threshold
  // flush runs in the writer's thread, so that the error reaches a WRITE.
  bool flight_failed GUARDED_BY(mu) = false;
  // Bytes the last flight kept buffered (held-back tails, islands after a gap).
  size_t held_back GUARDED_BY(mu) = 0;
  std::condition_variable_any flight_done;

  // security.capability known to be absent while the file is open here (GetXattr): valid
  // while `caps_absent_at == xattr_gen + 1`; a change of the file's xattrs bumps xattr_gen.
  std::atomic<uint64_t> xattr_gen{0};
  std::atomic<uint64_t> caps_absent_at{0};
  // Handles open for writing (FileData::OpenForWriting).
  std::atomic<int> writers{0};

  // Adds a write to the buffer, merging with the ranges it overlaps or touches. A range
  // that grows large takes its buffer from `pool` (if given).
  void AddDirty(uint64_t off, const char* data, size_t n, BufferPool* pool) REQUIRES(mu);
  // Adds older bytes (a flight's, going back into the buffer) where no newer write is
  // buffered: the newer bytes stay on top.
  void AddUnder(uint64_t off, std::string&& bytes, BufferPool* pool) REQUIRES(mu);
  // Waits until no flight runs; `mu` (held exclusively) is let go meanwhile.
  void WaitFlight() REQUIRES(mu);
  // Loads size and mtime from the inode record the first time the file is used.
  Status EnsureLoaded(MetaStore& meta) REQUIRES(mu);
};

}  // namespace snapfs
