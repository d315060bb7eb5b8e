// The inode record stored in the `inodes` column family.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace snapfs {

inline constexpr uint64_t kRootIno = 1;
inline constexpr const char* kNextInoKey = "next_ino";
// Newline-separated absolute paths the store has been mounted at.
inline constexpr const char* kMountPointsKey = "mount_points";

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Inode {
  uint64_t ino = 0;
  uint32_t mode = 0;  // type and permission bits, as in st_mode
  uint32_t uid = 0, gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  uint64_t allocated = 0;  // bytes covered by extents (st_blocks * 512, before rounding)
  uint64_t rdev = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0, btime_ns = 0;
  uint64_t parent = 0;    // directories: the parent folder (for ".." and rename loops)
  uint64_t next_seq = 0;  // directories: sequence number of the next entry (readdir cookies)
  std::string name;       // directories: the name in `parent` (paths of snapshots, hidden entries)
  // FUSE lookup generation (0 reads as 1). Raised when a folder is hidden by rmdir: the
  // kernel has killed its inode, and must take the hidden folder for a new one.
  uint32_t generation = 0;
  std::string target;     // symlinks: the target

  bool is_dir() const { return S_ISDIR(mode); }
  bool is_reg() const { return S_ISREG(mode); }
  bool is_symlink() const { return S_ISLNK(mode); }

  static Inode NewDir(uint64_t ino, uint32_t perm, uint32_t uid, uint32_t gid, uint64_t parent,
                      int64_t now) {
    Inode i;
    i.ino = ino;
    i.mode = S_IFDIR | (perm & 07777);
    i.uid = uid;
    i.gid = gid;
    i.nlink = 2;
    i.parent = parent;
    i.atime_ns = i.mtime_ns = i.ctime_ns = i.btime_ns = now;
    return i;
  }

  std::string Encode() const;
  static Result<Inode> Decode(uint64_t ino, std::string_view v);
};

}  // namespace snapfs
