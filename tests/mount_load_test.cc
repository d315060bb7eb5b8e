// Load through the mount (issue 13, "Load and scale"): the 16 threads of LoadRun
// (tests/util/load_run.h), with GC, `snapfs ls` and `snapfs stats` beside them
// (SNAPFS_LOAD_SECONDS=N for a long run):
//   - MountLoad: one mount of a local store, 30 s;
//   - MountSharedLoad: two mounts (two daemons, two "hosts") of one shared store
//     (PostgreSQL + a pack folder), the threads split between them, 15 s (its checks
//     through both hosts take longer than the run: CI's time is kept for both);
//     MountSharedLoadS3: the same with the packs in the test radosgw.
// At the end the whole tree is compared with the threads' models (through every mount),
// fsck --verify of the unmounted store must be clean, and after a remount the tree is
// compared again.
#include "tests/util/load_run.h"
#include "tests/util/shared_mounts.h"

namespace snapfs::mounttest {
namespace {

// What a run did, however slow the machine (a sanitizer build on a busy one runs a
// fraction of the operations): each job took its first checkpoint, the CLI loop ran GC
// once, and the thousands of file operations included links and xattr changes.
void ExpectEveryKindRan(const LoadRun& load) {
  EXPECT_GE(load.counts().checkpoints.load(), uint64_t{LoadRun::kJobs});
  EXPECT_GE(load.counts().gc.load(), 1u);
  EXPECT_GE(load.counts().link.load(), 1u);
  EXPECT_GE(load.counts().xattr.load(), 1u);
}

class MountLoad : public MountFixture {};

TEST_F(MountLoad, SixteenThreadsGcAndSnapshotsAgainstAModel) {
  LoadRun load({mnt()});
  ASSERT_EQ(load.Init(), "");
  for (const auto& e : load.Run(LoadSeconds(30))) ADD_FAILURE() << e;
  ASSERT_FALSE(HasFailure()) << DaemonLog();
  std::cout << load.Summary() << std::endl;
  ExpectEveryKindRan(load);

  load.CheckAll(0);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult f = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(f.code, 0) << f.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  load.CheckAll(0);
}

class MountSharedLoad : public SharedMounts {
 protected:
  // Two hosts of one shared store under the load at once: each thread's files through its
  // own host, everyone's folders shared; GC, ls and stats through each host in turn. Then
  // the tree, read through either host, is what the models say (close-to-open: every file
  // was closed), fsck of the store is clean, and again after both remount.
  void RunTwoHosts() {
    std::vector<std::string> mounts = {MountHost("a"), MountHost("b")};
    ASSERT_FALSE(HasFailure());
    LoadRun load(mounts);
    ASSERT_EQ(load.Init(), "");
    for (const auto& e : load.Run(LoadSeconds(15))) ADD_FAILURE() << e;
    ASSERT_FALSE(HasFailure()) << Log("a") << Log("b");
    std::cout << load.Summary() << std::endl;
    ExpectEveryKindRan(load);

    // Names cached by the other host expire after the entry timeout (1 s in shared mode).
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    for (size_t m = 0; m < mounts.size(); m++) load.CheckAll(m);
    for (const auto& mp : mounts) {
      CmdResult u = Snapfs({"umount", mp}, 60);
      ASSERT_EQ(u.code, 0) << u.Describe();
    }
    CmdResult f = Snapfs({"fsck", url_, "--verify"}, 300);
    EXPECT_EQ(f.code, 0) << f.Describe();
    // After the remount, through one host (the other saw the same database a moment ago).
    mounts = {MountHost("a"), MountHost("b")};
    ASSERT_FALSE(HasFailure());
    load.CheckAll(1);
  }
};

TEST_F(MountSharedLoad, TwoHostsSixteenThreadsGcAndSnapshotsAgainstAModel) { RunTwoHosts(); }

// The same with the packs in the test radosgw: a commit points only at uploaded packs.
class MountSharedLoadS3 : public OnSharedS3<MountSharedLoad> {};

TEST_F(MountSharedLoadS3, TwoHostsSixteenThreadsGcAndSnapshotsAgainstAModel) {
  RunTwoHosts();
}

}  // namespace
}  // namespace snapfs::mounttest
