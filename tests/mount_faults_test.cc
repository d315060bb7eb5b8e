// Injected I/O errors and slow I/O under a real daemon (issue 13, "Faults and bad input"):
// the daemon is started with SNAPFS_TEST_FAULTS naming a knob file (daemon/test_faults.h),
// which puts its pack backend behind FaultInjectionBackend, and the test turns faults on
// and off while it works through the mount:
//
//   - reads of one pack fail: every read of a file whose chunks are there gives EIO or
//     the written bytes (never other bytes), the files in the other pack read back whole,
//     writing goes on, `snapfs status` says degraded; with the fault gone, the same files
//     read back whole;
//   - pack appends fail, then pack syncs fail: the writer gets EIO at write, fsync or
//     close, never a silent success; afterwards the daemon writes again, and fsck --verify
//     (through the daemon and of the unmounted store) is clean;
//   - every pack call delayed by 20 ms: checkpoints, subsumes, gc and restores just work;
//   - the knob file refused unless it is the user's own and writable by no one else.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backends/pack_names.h"
#include "tests/util/flink_sim.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

constexpr const char* kEnv = "SNAPFS_TEST_FAULTS";

class MountFaults : public MountFixture {
 protected:
  std::string Knobs() const { return tmp() + "/faults"; }

  // Unmounts and mounts again with the fault backend (no fault set yet).
  void MountWithFaults() {
    ASSERT_NO_FATAL_FAILURE(Unmount());
    ASSERT_EQ(WriteFile(Knobs(), ""), 0);
    ::chmod(Knobs().c_str(), 0600);
    ::setenv(kEnv, Knobs().c_str(), 1);
    // No metrics: the default port may be another test's, and a mount without its
    // metrics is "degraded", which the tests read as the faults' doing.
    CmdResult r = TryMount({"--metrics", "off"});
    ::unsetenv(kEnv);
    ASSERT_EQ(r.code, 0) << r.Describe() << DaemonLog();
    ASSERT_TRUE(IsMounted(mnt(), true));
  }

  // Sets the knobs (daemon/test_faults.h) and waits until the daemon applied them.
  void SetFaults(const std::string& knobs) {
    const std::string gen = std::to_string(++gen_);
    ASSERT_EQ(WriteFile(Knobs() + ".tmp", "gen=" + gen + "\n" + knobs + "\n"), 0);
    ::chmod((Knobs() + ".tmp").c_str(), 0600);
    ASSERT_EQ(::rename((Knobs() + ".tmp").c_str(), Knobs().c_str()), 0) << ErrnoName(errno);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ReadFile(Knobs() + ".applied") != gen) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "the daemon did not apply the faults '" << knobs << "'" << DaemonLog();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // The ids of the packs in the store's folder.
  std::set<uint64_t> Packs() const {
    std::set<uint64_t> ids;
    for (const auto& e : std::filesystem::recursive_directory_iterator(store() + "/packs")) {
      PackId id = 0;
      if (pack_names::ParseFileName(e.path().filename().string(), &id)) ids.insert(id);
    }
    return ids;
  }

  // Reads `path` in 64 KiB preads, going on after a failure; every pread that succeeds
  // must give the written bytes. Returns how many preads failed (with EIO only).
  int ReadChecked(const std::string& path, const std::string& want) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      ADD_FAILURE() << "open " << path << ": " << ErrnoName(errno);
      return 1;
    }
    int failed = 0;
    std::string buf(64 * kKiB, '\0');
    for (size_t off = 0; off < want.size(); off += buf.size()) {
      ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
      if (n < 0) {
        EXPECT_EQ(errno, EIO) << path << " at " << off << ": " << ErrnoName(errno);
        failed++;
        continue;
      }
      size_t expect = std::min(buf.size(), want.size() - off);
      EXPECT_EQ(static_cast<size_t>(n), expect) << path << " at " << off;
      EXPECT_TRUE(buf.compare(0, static_cast<size_t>(n), want, off, static_cast<size_t>(n)) == 0)
          << "WRONG BYTES from " << path << " at " << off;
    }
    ::close(fd);
    return failed;
  }

  // Writes `bytes` as Flink does (write, fsync, close); "" or "<call>: <errno name>" for
  // the first call that failed.
  static std::string WriteFsyncClose(const std::string& path, const std::string& bytes) {
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return "open: " + ErrnoName(errno);
    std::string failed;
    if (int e = WriteAllFd(fd, bytes); e != 0) failed = "write: " + ErrnoName(e);
    if (failed.empty() && ::fsync(fd) != 0) failed = "fsync: " + ErrnoName(errno);
    if (::close(fd) != 0 && failed.empty()) failed = "close: " + ErrnoName(errno);
    return failed;
  }

  // `job`'s first checkpoint, of `files` files of 200 KiB: *chk is its folder.
  static void FirstCheckpoint(FlinkJob& job, int files, std::string* chk) {
    ASSERT_EQ(job.Init(), "");
    ASSERT_EQ(job.TakeCheckpoint(files, 200 * kKiB), "");
    *chk = job.Path(job.retained().back().name);
  }

  void ExpectStatus(int want_code, const std::string& health) {
    nlohmann::json s = SnapfsJsonObject({"status", mnt()}, want_code);
    EXPECT_EQ(s.value("health", ""), health) << s.dump(2);
  }

  int gen_ = 0;
};

TEST_F(MountFaults, ReadErrorsOfOnePackGiveEioAndTheOtherFilesAreServed) {
  ASSERT_NO_FATAL_FAILURE(MountWithFaults());
  ContentMap content;
  FlinkJob a(mnt(), "job-a", 1, &content);
  std::string chk_a;
  ASSERT_NO_FATAL_FAILURE(FirstCheckpoint(a, 4, &chk_a));
  std::vector<std::string> files_a;
  for (int i = 0; i < 6; i++) {
    std::string p = Path("a" + std::to_string(i));
    content[p] = RandomBytes(300 * kKiB, 10 + i);
    ASSERT_EQ(WriteFile(p, content[p], true), 0);
    files_a.push_back(p);
  }
  // The next session writes into a new pack; the first one's chunks are in no cache.
  ASSERT_NO_FATAL_FAILURE(MountWithFaults());
  const std::set<uint64_t> packs_a = Packs();
  ASSERT_FALSE(packs_a.empty());
  FlinkJob b(mnt(), "job-b", 2, &content);
  std::string chk_b;
  ASSERT_NO_FATAL_FAILURE(FirstCheckpoint(b, 3, &chk_b));
  std::vector<std::string> files_b;
  for (int i = 0; i < 6; i++) {
    std::string p = Path("b" + std::to_string(i));
    content[p] = RandomBytes(300 * kKiB, 20 + i);
    ASSERT_EQ(WriteFile(p, content[p], true), 0);
    files_b.push_back(p);
  }
  ASSERT_GT(Packs().size(), packs_a.size()) << "the second session wrote no new pack";
  ExpectStatus(0, "ok");

  std::string ids;
  for (uint64_t id : packs_a) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  ASSERT_NO_FATAL_FAILURE(SetFaults("fail_reads=" + ids));
  int eio = 0;
  for (const auto& p : files_a) {
    int failed = ReadChecked(p, content[p]);
    EXPECT_GT(failed, 0) << p << " read back although its pack cannot be read";
    eio += failed;
  }
  EXPECT_NE(Restore(chk_a, chk_a, content, InPlace), "") << "job-a's checkpoint is unreadable";
  for (const auto& p : files_b) EXPECT_EQ(ReadChecked(p, content[p]), 0) << p;
  EXPECT_EQ(Restore(chk_b, chk_b, content, InPlace), "");
  ExpectStatus(1, "degraded");
  // Writing goes on while one pack cannot be read.
  const std::string c = RandomBytes(500 * kKiB, 30);
  EXPECT_EQ(WriteFsyncClose(Path("c"), c), "");
  EXPECT_TRUE(ReadFile(Path("c")) == c);
  std::cout << "reads of the failing pack: " << eio << " preads gave EIO, no wrong bytes"
            << std::endl;

  // The fault gone (a disk that answers again), the same files read back whole.
  ASSERT_NO_FATAL_FAILURE(SetFaults(""));
  for (const auto& p : files_a) EXPECT_EQ(ReadChecked(p, content[p]), 0) << p;
  EXPECT_EQ(Restore(chk_a, chk_a, content, InPlace), "");
  CmdResult fsck = Snapfs({"fsck", mnt(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

TEST_F(MountFaults, FailedPackWritesAndSyncsReachTheWriterAsEio) {
  ASSERT_NO_FATAL_FAILURE(MountWithFaults());
  ContentMap content;
  FlinkJob job(mnt(), "job", 1, &content);
  std::string chk;
  ASSERT_NO_FATAL_FAILURE(FirstCheckpoint(job, 2, &chk));

  for (const char* knob : {"fail_appends=1", "fail_syncs=1"}) {
    SCOPED_TRACE(knob);
    ASSERT_NO_FATAL_FAILURE(SetFaults(knob));
    const std::string p = Path(std::string("failed-") + knob);
    std::string e = WriteFsyncClose(p, RandomBytes(2 * kMiB, 40));
    std::cout << knob << ": " << (e.empty() ? "no error" : e) << std::endl;
    EXPECT_NE(e, "") << "a write whose pack I/O failed was acknowledged";
    EXPECT_NE(e.find("EIO"), std::string::npos) << e;
    // A whole checkpoint: it fails, and its _metadata never appears.
    std::string ce = job.TakeCheckpoint(2, 200 * kKiB);
    EXPECT_NE(ce.find("EIO"), std::string::npos) << ce;
    ASSERT_NO_FATAL_FAILURE(SetFaults(""));
    // Nothing acknowledged lost; the daemon writes again at once.
    EXPECT_EQ(Restore(chk, chk, content, InPlace), "");
    const std::string again = RandomBytes(1 * kMiB, 41);
    EXPECT_EQ(WriteFsyncClose(Path("again"), again), "");
    EXPECT_TRUE(ReadFile(Path("again")) == again);
    // What the failed write left: nothing, or bytes it wrote, never others.
    int err = 0;
    std::string got = ReadFile(p, &err);
    const std::string want = RandomBytes(2 * kMiB, 40);
    EXPECT_TRUE(err != 0 || want.compare(0, got.size(), got) == 0 ||
                got.find_first_not_of('\0') == std::string::npos)
        << p << ": " << got.size() << " bytes that were never written";
    std::error_code ec;
    std::filesystem::remove(p, ec);
    for (const auto& f : job.Restart()) content.erase(f);  // abandoned, as Flink would
  }
  ASSERT_EQ(job.TakeCheckpoint(2, 200 * kKiB), "");
  const std::string chk2 = job.Path(job.retained().back().name);
  EXPECT_EQ(Restore(chk2, chk2, content, InPlace), "");
  CmdResult gc = Snapfs({"gc", mnt(), "--max-unused", "0"}, 120);
  EXPECT_EQ(gc.code, 0) << gc.Describe();
  CmdResult fsck = Snapfs({"fsck", mnt(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck2 = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck2.code, 0) << fsck2.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "");
  EXPECT_EQ(Restore(chk2, chk2, content, InPlace), "");
}

// A failing metadata disk (every write to a file of the store's RocksDB fails): what
// needs a metadata write fails with EIO, what was committed is still served, `status`
// says degraded and why; RocksDB takes no more writes until the store is mounted again
// (docs/reliability.md, finding 3), and after that nothing acknowledged is lost.
TEST_F(MountFaults, FailedMetadataWritesGiveEioDegradeStatusAndLoseNothing) {
  ASSERT_NO_FATAL_FAILURE(MountWithFaults());
  ContentMap content;
  FlinkJob job(mnt(), "job", 1, &content);
  std::string chk;
  ASSERT_NO_FATAL_FAILURE(FirstCheckpoint(job, 2, &chk));
  const std::string kept = RandomBytes(1 * kMiB, 50);
  ASSERT_EQ(WriteFsyncClose(Path("kept"), kept), "");
  ExpectStatus(0, "ok");

  ASSERT_NO_FATAL_FAILURE(SetFaults("fail_meta_writes=1"));
  const std::string during = RandomBytes(512 * kKiB, 51);
  std::string e = WriteFsyncClose(Path("during"), during);
  std::cout << "a file written while metadata writes fail: " << (e.empty() ? "no error" : e)
            << std::endl;
  EXPECT_NE(e, "") << "a file whose metadata could not be written was acknowledged";
  EXPECT_NE(e.find("EIO"), std::string::npos) << e;
  // Committed files are still served, whole.
  EXPECT_TRUE(ReadFile(Path("kept")) == kept);
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "");
  nlohmann::json st = SnapfsJsonObject({"status", mnt()}, 1);
  EXPECT_EQ(st.value("health", ""), "degraded") << st.dump(2);
  EXPECT_NE(st.dump().find("metadata engine"), std::string::npos) << st.dump(2);
  EXPECT_TRUE(st["metadata_error"].is_string()) << st.dump(2);

  // The disk works again. The mount stays degraded (RocksDB is read-only until opened
  // again), the unmount completes, and the store comes back whole.
  ASSERT_NO_FATAL_FAILURE(SetFaults(""));
  std::string e2 = WriteFsyncClose(Path("after-clear"), RandomBytes(64 * kKiB, 52));
  std::cout << "after the faults are cleared, before a remount: " << (e2.empty() ? "no error" : e2)
            << std::endl;
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount({"--metrics", "off"}));
  ExpectStatus(0, "ok");
  EXPECT_TRUE(ReadFile(Path("kept")) == kept);
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "");
  int err = 0;
  std::string got = ReadFile(Path("during"), &err);  // absent, or bytes that were written
  EXPECT_TRUE(err != 0 || during.compare(0, got.size(), got) == 0 ||
              got.find_first_not_of('\0') == std::string::npos)
      << got.size() << " bytes that were never written";
  ASSERT_EQ(job.TakeCheckpoint(2, 200 * kKiB), "");  // writing works again
  const std::string chk2 = job.Path(job.retained().back().name);
  EXPECT_EQ(Restore(chk2, chk2, content, InPlace), "");
}

TEST_F(MountFaults, SlowPackIoBreaksNothing) {
  ASSERT_NO_FATAL_FAILURE(MountWithFaults());
  ASSERT_NO_FATAL_FAILURE(SetFaults("delay_us=20000"));  // 20 ms per pack call
  ContentMap content;
  FlinkJob job(mnt(), "job", 1, &content);
  ASSERT_EQ(job.Init(), "");
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(job.TakeCheckpoint(2, 150 * kKiB, i % 2), "");
    if (job.retained().size() > 2) {
      ASSERT_EQ(job.Subsume(i % 2 == 0), "");
    }
  }
  CmdResult gc = Snapfs({"gc", mnt(), "--max-unused", "0"}, 120);
  EXPECT_EQ(gc.code, 0) << gc.Describe();
  for (const auto& cp : job.retained()) {
    std::string dir = job.CpDir(cp);
    EXPECT_EQ(Restore(dir, dir, content, InPlace), "") << dir;
  }
  ExpectStatus(0, "ok");
  std::cout << "slow pack I/O: 5 checkpoints, 3 subsumes, gc in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count()
            << " ms" << std::endl;
  ASSERT_NO_FATAL_FAILURE(Remount());  // without faults: everything still there
  for (const auto& cp : job.retained()) {
    std::string dir = job.CpDir(cp);
    EXPECT_EQ(Restore(dir, dir, content, InPlace), "") << dir;
  }
}

// The knob file must be the user's own and writable by no one else, and faults are
// for folder stores only; otherwise the mount is refused (nothing mounted).
TEST_F(MountFaults, KnobFileOthersCanWriteIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_EQ(WriteFile(Knobs(), ""), 0);
  ::chmod(Knobs().c_str(), 0666);
  ::setenv(kEnv, Knobs().c_str(), 1);
  CmdResult r = TryMount();
  CmdResult missing;
  {
    ::setenv(kEnv, (tmp() + "/no-such-file").c_str(), 1);
    missing = TryMount();
  }
  ::unsetenv(kEnv);
  EXPECT_NE(r.code, 0) << r.Describe();
  EXPECT_NE(r.err.find(kEnv), std::string::npos) << r.Describe();
  EXPECT_NE(missing.code, 0) << missing.Describe();
  EXPECT_FALSE(IsMounted(mnt()));
  ASSERT_NO_FATAL_FAILURE(Mount());  // and without the variable, the mount works
}

}  // namespace
}  // namespace snapfs::mounttest
