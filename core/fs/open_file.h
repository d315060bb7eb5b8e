// OpenFile: per-inode state of a file that is open (or being truncated/cloned): the write
// buffer shared by every handle of the inode. Private to core/fs/ (FileData).
//
// Thread-safety: every field but `ino` and the atomics is guarded by `mu`. Reads take it
// shared (they change nothing once `loaded`, which Open sets), so concurrent reads of one
// file reach the disk in parallel; everything else takes it exclusively.
#pragma once

#include <atomic>
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
  // Buffered writes: disjoint, non-adjacent ranges keyed by file offset.
  std::map<uint64_t, std::string> dirty GUARDED_BY(mu);
  size_t dirty_bytes GUARDED_BY(mu) = 0;
  // A threshold flush runs when dirty_bytes reaches this (what a flush had to keep
  // buffered plus the threshold), so that held-back bytes do not flush on every write.
  size_t flush_at GUARDED_BY(mu) = kFlushThreshold;

  // security.capability known to be absent while the file is open here (GetXattr): valid
  // while `caps_absent_at == xattr_gen + 1`; a change of the file's xattrs bumps xattr_gen.
  std::atomic<uint64_t> xattr_gen{0};
  std::atomic<uint64_t> caps_absent_at{0};
  // Handles open for writing (FileData::OpenForWriting).
  std::atomic<int> writers{0};

  // Adds a write to the buffer, merging with the ranges it overlaps or touches. A range
  // that grows large takes its buffer from `pool` (if given).
  void AddDirty(uint64_t off, const char* data, size_t n, BufferPool* pool) REQUIRES(mu);
  // Loads size and mtime from the inode record the first time the file is used.
  Status EnsureLoaded(MetaStore& meta) REQUIRES(mu);
};

}  // namespace snapfs
