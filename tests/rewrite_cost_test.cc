// The cost of one flush of a file rewritten in place many times (docs/reliability.md,
// finding 25), counted rather than timed: RocksDB's per-thread perf context counts the
// entries its iterators stepped over (deleted keys, older versions of keys) to answer a
// flush's extent lookups. It must not grow with the number of rewrites.
#include <gtest/gtest.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>

#include <cstdio>
#include <random>
#include <string>

#include "core/fs/filesystem.h"
#include "tests/util/random.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_fs.h"

namespace snapfs {
namespace {

using test::kKiB;

// A file of 256 KiB rewritten as fsx does: 1-4 KiB of new bytes at a random offset, then
// fdatasync; every fifth time truncated to a random size and written back to full size
// (new cut points at new offsets, so new extent keys and deleted old ones).
class RewrittenFile {
 public:
  static constexpr size_t kSize = 256 * kKiB;

  explicit RewrittenFile(test::TestFs& t) : t_(t) {
    auto [a, fh] = t_.New("f");
    ino_ = a.ino;
    fh_ = fh;
    t_.WriteAll(fh_, 0, test::RandomBytes(rng_, kSize));
    MUST(t_->Fsync(fh_, true));
  }
  ~RewrittenFile() { (void)t_->Release(fh_); }

  void Rewrite() {
    if (++count_ % 5 == 0) {
      uint64_t to = rng_() % kSize;
      t_.SetSize(ino_, to);
      t_.WriteAll(fh_, to, test::RandomBytes(rng_, kSize - to));
    } else {
      size_t n = 1 * kKiB + rng_() % (3 * kKiB);
      t_.WriteAll(fh_, rng_() % (kSize - n), test::RandomBytes(rng_, n));
    }
    MUST(t_->Fsync(fh_, true));
  }

  // Entries the metadata engine stepped over, per rewrite, over the next `n` rewrites.
  double SkippedPerRewrite(int n) {
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
    rocksdb::get_perf_context()->Reset();
    for (int i = 0; i < n; i++) Rewrite();
    const auto* pc = rocksdb::get_perf_context();
    uint64_t skipped = pc->internal_delete_skipped_count + pc->internal_key_skipped_count;
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
    return static_cast<double>(skipped) / n;
  }

 private:
  test::TestFs& t_;
  std::mt19937_64 rng_{25};
  uint64_t ino_ = 0;
  FileHandle fh_{};
  int count_ = 0;
};

// Before the fix, a rewrite after 2,000 rewrites stepped over 9,841 entries (in
// proportion to the rewrites): every extent lookup of its flush walked every version of
// every extent key the file ever had, all still in the memtable. Now ~370, as many as
// early on.
TEST(RewriteCost, FlushWorkStaysBoundedAsAFileIsRewritten) {
  test::TestFs t(test::TestFsOptions{.small_chunks = false});  // the real chunk sizes
  RewrittenFile f(t);
  const double fresh = f.SkippedPerRewrite(100);
  for (int i = 0; i < 2000; i++) f.Rewrite();
  const double rewritten = f.SkippedPerRewrite(100);
  std::printf("entries skipped per rewrite: %.0f fresh, %.0f after 2,000 rewrites\n", fresh,
              rewritten);
  EXPECT_LT(rewritten, 1000) << "fresh: " << fresh;
}

}  // namespace
}  // namespace snapfs
