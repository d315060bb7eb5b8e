// Writing pack bytes into a file at a known offset: the local backend's packs and the S3
// backend's spool files.
#pragma once

#include <sys/uio.h>

#include <cerrno>
#include <cstdint>
#include <span>

namespace snapfs {

// Writes the concatenation of `parts` at `offset` with pwritev (retrying short writes and
// EINTR), so that a record's header and its chunk need no copy into one buffer. Returns 0,
// or the errno of the failed write (ENOSPC for a write that wrote nothing).
inline int PwriteParts(int fd, std::span<const std::span<const uint8_t>> parts, uint64_t offset) {
  constexpr size_t kMaxIov = 64;
  struct iovec iov[kMaxIov];
  size_t cnt = 0;
  uint64_t total = 0;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (cnt == kMaxIov) return EINVAL;
    iov[cnt].iov_base = const_cast<uint8_t*>(p.data());
    iov[cnt].iov_len = p.size();
    total += p.size();
    cnt++;
  }
  uint64_t done = 0;
  size_t first = 0;
  while (done < total) {
    const ssize_t n = ::pwritev(fd, iov + first, static_cast<int>(cnt - first),
                                static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return ENOSPC;
    done += static_cast<uint64_t>(n);
    // Skip what was written: whole parts, then the start of a partly written one.
    size_t left = static_cast<size_t>(n);
    while (first < cnt && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < cnt) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return 0;
}

}  // namespace snapfs
