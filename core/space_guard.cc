#include "core/space_guard.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <chrono>
#include <cstdint>

namespace snapfs {

namespace {
constexpr int64_t kRecheckNs = 100'000'000;  // 100 ms
constexpr uint64_t kUnknownFree = UINT64_MAX / 2;  // no overflow in `reserve + n`

std::string MiB(uint64_t n) { return std::to_string(n >> 20) + " MiB"; }
}  // namespace

SpaceGuard::SpaceGuard(std::string meta_dir, Backend* backend)
    : meta_dir_(std::move(meta_dir)), backend_(backend) {}

Result<uint64_t> SpaceGuard::Free(Probe& p, uint64_t reserve, bool data) {
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  const uint64_t cached = p.free.load(std::memory_order_relaxed);
  if (cached > 4 * reserve && now - p.at_ns.load(std::memory_order_relaxed) < kRecheckNs) {
    return cached;
  }
  // A file system that reports no size at all (total 0: a FUSE file system without a
  // statfs handler, such as LazyFS) cannot be guarded: its free space is unknown, not 0.
  uint64_t free = 0;
  if (data) {
    ASSIGN_OR_RETURN(auto space, backend_->Space());
    free = space.total_bytes == 0 ? kUnknownFree : space.free_bytes;
  } else {
    struct statvfs vfs;
    if (::statvfs(meta_dir_.c_str(), &vfs) != 0) return PosixError("statvfs " + meta_dir_, errno);
    free = vfs.f_blocks == 0 ? kUnknownFree : static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  p.free.store(free, std::memory_order_relaxed);
  p.at_ns.store(now, std::memory_order_relaxed);
  return free;
}

Status SpaceGuard::ForData(uint64_t n) {
  ASSIGN_OR_RETURN(uint64_t free, Free(data_, kDataReserve, true));
  if (free < kDataReserve + n) {
    return Status::NoSpace("the disk is full: " + MiB(free) + " free, and the last " +
                           MiB(kDataReserve) + " are kept for the metadata log (delete files, "
                           "then `snapfs gc`, to write again)");
  }
  return Status::OK();
}

Status SpaceGuard::ForMetadata() {
  ASSIGN_OR_RETURN(uint64_t free, Free(meta_, kMetaReserve, false));
  if (free < kMetaReserve) {
    return Status::NoSpace("the metadata disk is full: " + MiB(free) + " free, and the last " +
                           MiB(kMetaReserve) + " are kept for deletes (delete files, then "
                           "`snapfs gc`)");
  }
  return Status::OK();
}

}  // namespace snapfs
