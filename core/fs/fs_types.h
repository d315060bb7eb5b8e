// The values the filesystem's callers (fuse/, tools/) pass and get back: attributes,
// requests, directory entries, limits. No behaviour here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace snapfs {

using FileHandle = uint64_t;

// What a caller sees of an inode (stat).
struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0, gid = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units
  // Lookup generation: raised when a folder is hidden by rmdir, so a kernel that saw it
  // removed (its inode dead) takes it as a new inode rather than the dead one.
  uint64_t generation = 1;
  // Reached through a hidden entry: the kernel must not cache the name (the entry may go
  // when a snapshot ends, which the kernel does not see).
  bool hidden = false;
  // >= 0: answered from the daemon's own cache (core/fs/attr_cache.h), and already that
  // old: the kernel may keep it only for the seconds left of the shared mount's bound.
  double cache_left_s = -1;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
};

// Who is asking: new inodes get this owner.
struct Caller {
  uint32_t uid = 0, gid = 0;
};

struct SetAttrRequest {
  bool set_mode = false, set_uid = false, set_gid = false, set_size = false;
  bool set_atime = false, set_mtime = false;
  bool atime_now = false, mtime_now = false;  // with set_*: use the current time
  bool set_ctime = false;
  // With set_size: only grow (fallocate). Decided under the file's lock, so a write
  // that raced past `size` meanwhile is never cut back.
  bool grow_only = false;
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;

  // Whether anything but the size is asked for.
  bool ChangesMetadata() const {
    return set_mode || set_uid || set_gid || set_atime || set_mtime || set_ctime;
  }
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;    // file type bits only
  uint64_t cookie = 0;  // pass to ReadDir to continue after this entry
};

// Inode numbers at and above this are the read-only views under /.snapshots/.
inline constexpr uint64_t kViewInoBase = 1ull << 62;
inline constexpr const char* kViewsName = ".snapshots";
// In a view: files the snapshot references outside its job folder, at their mount paths.
inline constexpr const char* kOtherJobsDir = "_other_jobs";
// Virtual xattrs (read by exact name only, never listed, so `cp -a` does not copy them).
inline constexpr const char* kXattrPrefix = "user.snapfs.";
// The attribute the kernel reads before every write() (file capabilities).
inline constexpr std::string_view kCapabilityXattr = "security.capability";

struct FsStats {
  uint64_t block_size = 4096;
  uint64_t blocks = 0, blocks_free = 0, blocks_avail = 0;
  uint64_t files = 0, files_free = 0;
  uint32_t name_max = 255;
};

// Flags of Rename, with Linux's values.
inline constexpr unsigned kRenameNoReplace = 1;
inline constexpr unsigned kRenameExchange = 2;
// Flags of SetXattr, with Linux's values.
inline constexpr int kXattrCreate = 1;
inline constexpr int kXattrReplace = 2;

inline constexpr size_t kNameMax = 255;
inline constexpr uint64_t kMaxFileSize = 1ull << 50;
inline constexpr size_t kXattrValueMax = 64 * 1024;

}  // namespace snapfs
