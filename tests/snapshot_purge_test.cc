// `snapfs rm` in O(1) and the purge queue behind it (docs/snapshots.md, "Removal in the
// background"), in the engine without FUSE: the removal ends the snapshot and hides its
// folder at once; the purger drops the files in bounded batches; files another snapshot
// needs stay readable in place; fsck is clean before, during and after; the queue
// survives a reopen; two purgers on one queue never free anything twice. Through a mount:
// mount_snapshot_test.cc (MountSnapshot.Rm*); two hosts on PostgreSQL:
// shared_store_test.cc (SharedStore.TwoPurgersDrainOneQueue).
#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "tests/util/java_data.h"
#include "tests/util/test_fs.h"

namespace snapfs {
namespace {

constexpr const char* kMount = "/mnt/ckpt";
const Caller kWho{1000, 1000};

// A file with `data`, created, written and released (no fsync: the test needs many).
uint64_t Put(Filesystem& fs, uint64_t dir, const std::string& name, const std::string& data) {
  auto [a, fh] = MUST(fs.Create(dir, name, 0644, O_WRONLY | O_CREAT | O_TRUNC, kWho));
  EXPECT_EQ(MUST(fs.Write(fh, 0, data.data(), data.size())), data.size());
  MUST(fs.Flush(fh));
  MUST(fs.Release(fh));
  return a.ino;
}

std::string Read(Filesystem& fs, uint64_t ino) {
  FileHandle fh = MUST(fs.Open(ino, O_RDONLY));
  std::string out(MUST(fs.GetAttr(ino)).size, '\0');
  size_t n = MUST(fs.Read(fh, 0, out.size(), out.data()));
  out.resize(n);
  MUST(fs.Release(fh));
  return out;
}

// A Flink-like `_metadata`: writeUTF references (docs/marker-scan.md).
void CommitMarker(Filesystem& fs, uint64_t dir, const std::vector<std::string>& refs) {
  test::JavaDataOutput o;
  o.WriteInt(0x4960672d);
  o.WriteInt(3);
  o.WriteLong(1);
  for (const auto& r : refs) o.WriteUTF(r);
  Put(fs, dir, "_metadata", o.bytes());
}

class SnapshotPurge : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(t_->RecordMountPoint(kMount));
    job_ = t_.Mkdir(kRootIno, "job");
    shared_ = t_.Mkdir(job_, "shared");
  }

  Filesystem& fs() { return t_.fs(); }

  // job/chk-N with `files` own files (named f0, f1, ... with content "N:i") and references
  // to `shared` (absolute) and to `extra` (absolute paths under the mount).
  uint64_t Checkpoint(int n, int files, const std::vector<std::string>& shared,
                      const std::vector<std::string>& extra = {}) {
    uint64_t dir = t_.Mkdir(job_, "chk-" + std::to_string(n));
    std::vector<std::string> refs;
    uint64_t sub = t_.Mkdir(dir, "sub");  // a folder in it: the walk handles depth
    for (int i = 0; i < files; i++) {
      std::string name = "f" + std::to_string(i);
      bool in_sub = i % 10 == 9;
      Put(fs(), in_sub ? sub : dir, name, std::to_string(n) + ":" + std::to_string(i));
      if (!in_sub) refs.push_back(name);
    }
    for (const auto& s : shared) refs.push_back(std::string("file:") + kMount + "/job/shared/" + s);
    for (const auto& e : extra) refs.push_back(std::string("file:") + kMount + "/" + e);
    CommitMarker(fs(), dir, refs);
    return dir;
  }

  void ExpectClean(const std::string& when) {
    auto r = MUST(Fsck(t_.store()));
    for (const auto& p : r.problems) ADD_FAILURE() << "fsck " << when << ": " << p;
    for (const auto& p : MUST(fs().CheckSnapshots())) {
      ADD_FAILURE() << "snapshots " << when << ": " << p;
    }
  }

  std::set<std::string> Listed(uint64_t dir) {
    std::set<std::string> out;
    for (const auto& e : t_.List(dir)) out.insert(e.name);
    return out;
  }

  // Runs PurgeStep until it reports no more work; fsck every `check_every` batches.
  PurgeProgress Drain(size_t budget, int check_every = 0) {
    PurgeProgress sum;
    for (int i = 1;; i++) {
      PurgeProgress p = MUST(fs().PurgeStep(budget));
      sum.removed += p.removed;
      sum.hidden += p.hidden;
      sum.pins += p.pins;
      sum.folders_done += p.folders_done;
      if (!p.more) break;
      if (check_every && i % check_every == 0) ExpectClean("during the purge");
      EXPECT_LT(i, 100000) << "the purge does not end";
    }
    return sum;
  }

  test::TestFs t_;
  uint64_t job_ = 0, shared_ = 0;
};

TEST_F(SnapshotPurge, RmDetachesAtOnceAndPurgesInBatches) {
  for (const char* s : {"s0", "s1"}) Put(fs(), shared_, s, std::string("shared ") + s);
  uint64_t c1 = Checkpoint(1, 600, {"s0", "s1"});
  uint64_t kept = t_.InoOf(c1, "f3");
  // chk-2 names chk-1/f3 by absolute path (a CLAIM restore does that) and shared/s0.
  Checkpoint(2, 5, {"s0"}, {"job/chk-1/f3"});
  ExpectClean("before");

  int woken = 0;
  fs().SetPurgeNotifier([&] { woken++; });
  RemoveReport r = MUST(fs().RemoveSnapshots({c1}, false));
  EXPECT_TRUE(r.purging);
  EXPECT_EQ(r.snapshots, 1u);
  EXPECT_EQ(woken, 1);
  // At once: gone from listings and from the snapshots; the exact path still resolves.
  EXPECT_EQ(Listed(job_), (std::set<std::string>{"shared", "chk-2"}));
  EXPECT_EQ(MUST(fs().ListSnapshots(kRootIno)).size(), 1u);
  EXPECT_EQ(MUST(fs().GetPurgeBacklog()).folders, 1u);
  EXPECT_EQ(Read(fs(), t_.InoOf(t_.InoOf(job_, "chk-1"), "f3")), "1:3");
  // Nothing new goes into the removed folder.
  EXPECT_FALSE(fs().Create(c1, "new", 0644, O_WRONLY | O_CREAT, kWho).ok());
  ExpectClean("right after rm");

  PurgeProgress p = Drain(100, 2);
  EXPECT_GT(p.removed, 600u - 1) << "own files, sub/, shared/s1";
  EXPECT_EQ(p.folders_done, 1u);
  EXPECT_EQ(MUST(fs().GetPurgeBacklog()).folders, 0u);
  // What chk-2 needs stays: chk-1/f3 in place (hidden) and shared/s0; shared/s1 went.
  EXPECT_EQ(Read(fs(), t_.InoOf(t_.InoOf(job_, "chk-1"), "f3")), "1:3");
  EXPECT_EQ(t_.InoOf(t_.InoOf(job_, "chk-1"), "f3"), kept);
  EXPECT_EQ(Listed(shared_), (std::set<std::string>{"s0"}));
  EXPECT_FALSE(fs().Lookup(t_.InoOf(job_, "chk-1"), "f4").ok());
  ExpectClean("after the purge");

  // chk-2 goes too (and its folder's purge releases chk-1/f3): nothing is left hidden.
  RemoveReport r2 = MUST(fs().RemoveSnapshots({t_.InoOf(job_, "chk-2")}, false, true));
  EXPECT_FALSE(r2.purging);
  EXPECT_GE(r2.files_removed, 7u) << "5 files, _metadata, s0 (and chk-1/f3 as hidden)";
  EXPECT_TRUE(MUST(fs().ListHidden()).empty());
  EXPECT_EQ(Listed(job_), (std::set<std::string>{"shared"}));
  EXPECT_TRUE(Listed(shared_).empty());
  ExpectClean("after everything");
}

TEST_F(SnapshotPurge, WithoutAPurgerTheReportIsTheDryRunsAndExact) {
  Put(fs(), shared_, "s", "shared");
  uint64_t c1 = Checkpoint(1, 1500, {"s"});
  Checkpoint(2, 3, {});
  RemoveReport dry = MUST(fs().RemoveSnapshots({c1}, true));
  RemoveReport real = MUST(fs().RemoveSnapshots({c1}, false));
  EXPECT_FALSE(real.purging);
  EXPECT_EQ(real.snapshots, dry.snapshots);
  EXPECT_EQ(real.files_removed, dry.files_removed) << "1500 files, _metadata, shared/s";
  EXPECT_EQ(real.files_removed, 1502u);
  EXPECT_EQ(real.files_hidden, dry.files_hidden);
  EXPECT_EQ(real.bytes_freed, dry.bytes_freed);
  EXPECT_EQ(MUST(fs().GetPurgeBacklog()).folders, 0u);
  EXPECT_EQ(Listed(job_), (std::set<std::string>{"shared", "chk-2"}));
  ExpectClean("after");
}

TEST_F(SnapshotPurge, TheNameIsFreeAtOnceAndTheOldFolderStillGoes) {
  uint64_t c1 = Checkpoint(1, 300, {});
  fs().SetPurgeNotifier([] {});
  MUST(fs().RemoveSnapshots({c1}, false));
  // A new chk-1 replaces the hidden entry; the old folder lives detached until purged.
  uint64_t fresh = t_.Mkdir(job_, "chk-1");
  Put(fs(), fresh, "new", "new bytes");
  ExpectClean("with the old folder detached and queued");
  Drain(64, 1);
  EXPECT_EQ(Listed(fresh), (std::set<std::string>{"new"}));
  EXPECT_EQ(Read(fs(), t_.InoOf(fresh, "new")), "new bytes");
  // The old folder is gone (fsck below: nothing of it leaked).
  auto old = fs().GetAttr(c1);
  EXPECT_TRUE(!old.ok() || old->nlink == 0u);
  ExpectClean("after");
}

TEST_F(SnapshotPurge, ReopenResumesThePurge) {
  Put(fs(), shared_, "s", "shared");
  uint64_t c1 = Checkpoint(1, 800, {"s"});
  uint64_t c2 = Checkpoint(2, 10, {"s"});
  fs().SetPurgeNotifier([] {});
  MUST(fs().RemoveSnapshots({c1, c2}, false));
  EXPECT_EQ(MUST(fs().GetPurgeBacklog()).folders, 2u);
  for (int i = 0; i < 3; i++) ASSERT_TRUE(MUST(fs().PurgeStep(100)).more);
  // The daemon dies here (no purger, nothing in memory): the queue is in the store.
  t_.Reopen();
  ExpectClean("after the reopen, mid-purge");
  EXPECT_EQ(MUST(fs().GetPurgeBacklog()).folders, 2u);
  PurgeProgress p = Drain(kPurgeBatch);
  EXPECT_EQ(p.folders_done, 2u);
  EXPECT_EQ(Listed(job_), (std::set<std::string>{"shared"}));
  EXPECT_TRUE(Listed(shared_).empty());
  EXPECT_TRUE(MUST(fs().ListHidden()).empty());
  ExpectClean("after");
}

TEST_F(SnapshotPurge, TwoPurgersNeverFreeTwice) {
  Put(fs(), shared_, "s", "shared");
  uint64_t c1 = Checkpoint(1, 1200, {"s"});
  Checkpoint(2, 3, {"s"}, {"job/chk-1/f7"});
  RemoveReport dry = MUST(fs().RemoveSnapshots({c1}, true));
  fs().SetPurgeNotifier([] {});
  MUST(fs().RemoveSnapshots({c1}, false));
  // Two threads with no common lock but the engine's (each batch runs under the
  // namespace mutex, so the conflicts are between batches on the queue key).
  std::atomic<uint64_t> removed{0}, hidden{0}, done{0};
  auto purger = [&] {
    for (int i = 0; i < 100000; i++) {
      auto p = fs().PurgeStep(50);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      removed += p->removed;
      hidden += p->hidden;
      done += p->folders_done;
      if (!p->more) return;
    }
  };
  std::thread a(purger), b(purger);
  a.join();
  b.join();
  EXPECT_EQ(done.load(), 1u);
  EXPECT_EQ(removed.load(), dry.files_removed);
  EXPECT_EQ(hidden.load(), dry.files_hidden);
  EXPECT_EQ(Read(fs(), t_.InoOf(t_.InoOf(job_, "chk-1"), "f7")), "1:7");
  ExpectClean("after two purgers");
}

}  // namespace
}  // namespace snapfs
