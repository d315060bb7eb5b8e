// Per-inode state of a file that is open (or being truncated/cloned): the write buffer
// shared by every handle of the inode. Private to core/fs/ and core/snap/.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "core/fs/filesystem.h"

namespace snapfs {

struct Filesystem::OpenFile {
  explicit OpenFile(uint64_t ino) : ino(ino) {}
  const uint64_t ino;

  // Guards everything below. Reads take it shared (they change nothing once `loaded`,
  // which Open sets), so concurrent reads of one file reach the disk in parallel.
  std::shared_mutex mu;
  bool loaded = false;
  uint64_t size = 0;            // logical size, including buffered writes
  uint64_t committed_size = 0;  // size recorded in the inode
  int64_t mtime_ns = 0;
  bool attr_dirty = false;  // size or mtime differs from the inode record
  // Buffered writes: disjoint, non-adjacent ranges keyed by file offset.
  std::map<uint64_t, std::string> dirty;
  size_t dirty_bytes = 0;
  // A threshold flush runs when dirty_bytes reaches this (what a flush had to keep
  // buffered plus the threshold), so that held-back bytes do not flush on every write.
  size_t flush_at = kFlushThreshold;

  // security.capability known to be absent while the file is open here (GetXattr): valid
  // while `caps_absent_at == xattr_gen + 1`; a change of the file's xattrs bumps xattr_gen.
  std::atomic<uint64_t> xattr_gen{0};
  std::atomic<uint64_t> caps_absent_at{0};

  // Adds a write to the buffer, merging with the ranges it overlaps or touches.
  void AddDirty(uint64_t off, const char* data, size_t n);
  // Loads size and mtime from the inode record the first time the file is used.
  Status EnsureLoaded(MetaStore& meta);
};

}  // namespace snapfs
