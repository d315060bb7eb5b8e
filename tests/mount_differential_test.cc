// Random-operation differential test through a real snapfs mount against a native folder
// on the normal disk: every operation is applied to both trees, return values and errno
// must agree, then the touched files (contents and stat) and, every 100 steps, the whole
// trees are compared. A sequential phase, a concurrent phase (4 threads on their own
// names), then unmount, `snapfs fsck --verify`, remount and one more full comparison.
//
// The seed is printed; SNAPFS_DIFF_SEED=<n> replays a run.
#include <sys/stat.h>

#include <mutex>
#include <thread>

#include "tests/util/differ.h"
#include "tests/util/mount_fixture.h"
#include "tests/util/mount_s3.h"

namespace snapfs::mounttest {
namespace {

class MountDifferential : public MountFixture {
 protected:
  void RandomOpsSequentialThenConcurrentThenRemount();  // a TEST_F below runs it, on a local and on an S3 store
  void SetUp() override {
    MountFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    native_ = tmp() + "/native";
    ASSERT_EQ(::mkdir(native_.c_str(), 0755), 0) << ErrnoName(errno);
  }
  std::string native_;
};

void MountDifferential::RandomOpsSequentialThenConcurrentThenRemount() {
  const uint64_t seed = SeedFromEnv();
  std::cerr << "[ seed ] MountDifferential seed = " << seed
            << " (replay with SNAPFS_DIFF_SEED=" << seed << ")\n";
  RecordProperty("seed", std::to_string(seed));
  ::umask(022);
  for (const char* d : {"d", "e"}) {
    ASSERT_EQ(::mkdir(Path(d).c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((native_ + "/" + d).c_str(), 0755), 0);
  }

  // ---- Sequential: one stream over shared names, 2,000 operations. ----
  {
    std::vector<std::string> files;
    for (int i = 0; i < 8; i++) files.push_back("f" + std::to_string(i));
    for (int i = 0; i < 4; i++) files.push_back("d/g" + std::to_string(i));
    for (int i = 0; i < 2; i++) files.push_back("e/h" + std::to_string(i));
    Differ diff(mnt(), native_, seed, "sequential", files, {"d", "e"});
    const int kSteps = 2000;
    for (int i = 1; i <= kSteps; i++) {
      std::string d = diff.Step(i);
      ASSERT_TRUE(d.empty()) << "seed " << seed << ", " << d;
      if (i % 100 == 0) {
        std::string t = CompareTrees(mnt(), native_);
        ASSERT_TRUE(t.empty()) << "seed " << seed << ", whole-tree comparison after step " << i
                               << ":" << t;
      }
    }
    diff.CloseAll();
    std::cerr << "[ stats ] sequential: " << diff.Summary() << "\n";
    std::string t = CompareTrees(mnt(), native_);
    ASSERT_TRUE(t.empty()) << "seed " << seed << ", after closing all handles:" << t;
  }

  // ---- Concurrent: 4 threads, each on its own names, 300 operations each. ----
  {
    ::mkdir(Path("e").c_str(), 0755);
    ::mkdir((native_ + "/e").c_str(), 0755);
    auto failures = RunDiffersConcurrently(4, 300, [&](int t) {
      std::string pre = "t" + std::to_string(t) + "_";
      std::vector<std::string> files;
      for (int i = 0; i < 5; i++) files.push_back(pre + "f" + std::to_string(i));
      for (int i = 0; i < 3; i++) files.push_back("d/" + pre + "g" + std::to_string(i));
      files.push_back("e/" + pre + "h");
      return Differ(mnt(), native_, seed * 1000003 + static_cast<uint64_t>(t) + 1,
                    "thread " + std::to_string(t), files, {});
    });
    for (const auto& f : failures) ADD_FAILURE() << "seed " << seed << ", " << f;
    ASSERT_TRUE(failures.empty());
    std::string t = CompareTrees(mnt(), native_);
    ASSERT_TRUE(t.empty()) << "seed " << seed << ", after the concurrent phase:" << t;
  }

  // ---- Unmount, fsck --verify, remount, compare again. ----
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(fsck.code, 0) << "snapfs fsck --verify after the differential run:\n"
                          << fsck.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string t = CompareTrees(mnt(), native_);
  EXPECT_TRUE(t.empty()) << "seed " << seed << ", after unmount + remount:" << t;
}

TEST_F(MountDifferential, RandomOpsSequentialThenConcurrentThenRemount) { RandomOpsSequentialThenConcurrentThenRemount(); }

// The same on an S3-backed store (test radosgw; ctest label s3).
class MountDifferentialS3 : public test::OnS3<MountDifferential> {};
TEST_F(MountDifferentialS3, RandomOpsSequentialThenConcurrentThenRemount) { RandomOpsSequentialThenConcurrentThenRemount(); }

}  // namespace
}  // namespace snapfs::mounttest
