// SpaceGuard (core/space_guard.h) on a file system that reports no size at all: statfs
// answering f_blocks = 0 (a FUSE file system without a statfs handler, such as LazyFS, and
// pseudo file systems like /proc) means "size unknown", not "full". Before this was
// handled, a store whose meta/ was on such a file system refused every create and mkdir
// with ENOSPC, and one whose packs/ was refused every write (docs/reliability.md,
// finding 24).
#include "core/space_guard.h"

#include <gtest/gtest.h>
#include <sys/statvfs.h>

#include <memory>

#include "backends/backend.h"
#include "backends/backend_wrapper.h"
#include "tests/util/status_matchers.h"

namespace snapfs {
namespace {

// A backend whose disk reports no size (the local backend's Space() on such a file system).
class SizelessBackend : public BackendWrapper {
 public:
  SizelessBackend() : BackendWrapper(NewMemoryBackend()) {}
  Result<SpaceInfo> Space() const override { return SpaceInfo{}; }  // total 0, free 0
};

TEST(SpaceGuard, AFileSystemThatReportsNoSizeIsNotFull) {
  struct statvfs vfs;
  ASSERT_EQ(::statvfs("/proc", &vfs), 0);
  ASSERT_EQ(vfs.f_blocks, 0u) << "/proc reports a size here: the test needs one that does not";
  SizelessBackend backend;
  SpaceGuard guard("/proc", &backend);
  EXPECT_OK(guard.ForMetadata());
  EXPECT_OK(guard.ForData(64 << 20));
}

TEST(SpaceGuard, AFullDiskStillRefuses) {
  // A disk with a size and nothing free: the guard refuses (the memory backend's 1 TiB
  // disk with more asked than it holds).
  auto backend = NewMemoryBackend();
  SpaceGuard guard("/", backend.get());
  EXPECT_CODE(guard.ForData(uint64_t{1} << 40), Code::kNoSpace);
}

}  // namespace
}  // namespace snapfs
