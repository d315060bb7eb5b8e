// kill -9 torture (DESIGN.md section 3, invariants 2-5, through a real mount): a Flink-like
// writer (several jobs, chk-N folders, shared/ files, `_metadata` by temp file + rename,
// retention subsuming old checkpoints, sometimes racing the shared-file deletes ahead;
// savepoints, whose `_metadata` is created in place and committed by its close; a job
// restored from another's retained checkpoint in CLAIM mode) plus `snapfs gc --max-unused
// 0`, `snapfs rm`, `snapfs prune --keep-last` and `snapfs orphans --older-than 0 --delete`
// through the daemon, while the daemon is SIGKILLed at a random moment. After each kill: the dead
// mount is cleared (fusermount3 -u -z), `snapfs fsck --verify` of the unmounted store must
// be clean, the store is mounted again, and every file whose fsync returned and every
// checkpoint whose `_metadata` rename returned (savepoint: whose close returned) must read
// back byte for byte (the writer records them only after the call returned). Then the
// jobs restart as Flink's do: from their last completed checkpoint, leaving the files of
// the interrupted one as orphans (no longer expected: orphans --delete may remove them).
//
// SNAPFS_TORTURE_KILLS=N sets the number of kills (default 20; scripts/torture.sh --long
// runs 1,000), SNAPFS_TORTURE_SEED the seed. LazyFsCut (at the end) runs the same with the
// store's meta/ and packs/ on LazyFS, whose unsynced data is dropped after each kill: a
// power cut through the mount (by hand, scripts/lazyfs_cut.sh).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/mount_fixture.h"
#include "tests/util/torture_load.h"

namespace snapfs::mounttest {
namespace {

class Torture : public MountFixture {
 protected:
  // What a power cut adds to a kill: called once the killed daemon is gone and its mount
  // cleared, before anything opens the store again (LazyFsCut drops the unsynced data).
  virtual void AfterKill() {}

  // `kills` rounds of: the writer runs, the daemon is SIGKILLed at a random moment, the
  // store is checked unmounted (fsck --verify), mounted again and verified; `what` names a
  // kill in messages and the summary ("kill", "cut").
  void RunKills(uint64_t kills, uint64_t seed, const std::string& what) {
    TortureLoad load(mnt(), "", seed);
    std::mt19937_64& rng = load.rng();
    ASSERT_NO_FATAL_FAILURE(load.Start());
    auto start = std::chrono::steady_clock::now();
    uint64_t round = 0;
    for (; round < kills; round++) {
      load.killing() = false;
      std::atomic<bool> stop{false};
      std::thread writer([&, s = rng()] { load.Run(stop, s); });
      // A random moment: mostly within the first checkpoints, sometimes later.
      std::this_thread::sleep_for(
          std::chrono::milliseconds(rng() % 4 == 0 ? 300 + rng() % 900 : 20 + rng() % 300));
      load.killing() = true;
      stop = true;
      KillDaemonLeaveDeadMount();
      writer.join();  // its calls fail with ENOTCONN now, before the lazy unmount below
      if (HasFatalFailure()) return;
      CmdResult fu = Run({"fusermount3", "-u", "-z", mnt()}, 30);
      ASSERT_EQ(fu.code, 0) << fu.Describe();
      ASSERT_FALSE(IsMounted(mnt()));
      ASSERT_NO_FATAL_FAILURE(AfterKill());
      CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
      ASSERT_EQ(fsck.code, 0) << "fsck --verify after " << what << " " << round << ":\n"
                              << fsck.Describe();
      // The killed daemon's pid stays in store/lock until it is reaped (see KillDaemon9).
      int pid = DaemonPid();
      if (pid > 0) WaitPidVanished(pid, std::chrono::seconds(20));
      ASSERT_NO_FATAL_FAILURE(Mount());
      load.killing() = false;
      load.Verify(mnt(), round);
      if (HasFailure()) {
        load.PrintHistory(what + " " + std::to_string(round));
        break;
      }
      load.Note("--- " + what + " " + std::to_string(round) + " verified");
      load.Recover(round);
      if (HasFailure()) break;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "torture: " << round << " " << what << "s in " << static_cast<int>(secs) << " s, "
              << load.Summary() << " seed " << seed << std::endl;
  }
};

TEST_F(Torture, KillNineUnderFlinkLoadLosesNothingAcknowledged) {
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
  RunKills(EnvOr("SNAPFS_TORTURE_KILLS", 20), seed, "kill");
}

// The power cut through the mount, by hand (scripts/lazyfs_cut.sh, docs/reliability.md):
// the store's meta/ and packs/ live on a LazyFS mount (github.com/dsrhaslab/lazyfs), a FUSE
// file system that keeps written data in its own page cache until the file is fsync'd and
// drops whatever is unsynced on `lazyfs::clear-cache`. Each round SIGKILLs the daemon and
// clears that cache, so every byte snapfs (RocksDB, the pack writer) wrote to meta/ or
// packs/ without an fsync is gone, as in a power cut; then the checks of Torture. The store
// folder itself (snapfs.conf, lock, control.sock, logs) stays on the real disk: LazyFS has
// no Unix sockets. Skipped unless SNAPFS_LAZYFS_DIR (a folder on the LazyFS mount),
// SNAPFS_LAZYFS_FIFO (its faults FIFO) and SNAPFS_LAZYFS_LOG (its log file) are set.
// SNAPFS_LAZYFS_CUTS=N cuts (default 20), SNAPFS_TORTURE_SEED the seed.
class LazyFsCut : public Torture {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("SNAPFS_LAZYFS_DIR");
    const char* fifo = std::getenv("SNAPFS_LAZYFS_FIFO");
    const char* log = std::getenv("SNAPFS_LAZYFS_LOG");
    if (!dir || !*dir || !fifo || !*fifo || !log || !*log) {
      GTEST_SKIP() << "needs a LazyFS mount: run scripts/lazyfs_cut.sh (by hand)";
    }
    lazy_root_ = dir;
    fifo_ = fifo;
    log_ = log;
    Torture::SetUp();
  }

  void TearDown() override {
    Torture::TearDown();
    std::error_code ec;
    if (!lazy_dir_.empty()) std::filesystem::remove_all(lazy_dir_, ec);
  }

  // meta/ and packs/ move to LazyFS (copied, every file fsync'd there so that the first
  // cut keeps what init wrote) and are replaced by symbolic links.
  void AfterInit() override {
    namespace fs = std::filesystem;
    lazy_dir_ = lazy_root_ + "/" + fs::path(tmp()).filename().string();
    ASSERT_TRUE(fs::create_directory(lazy_dir_)) << lazy_dir_;
    for (const char* sub : {"meta", "packs"}) {
      std::string from = store() + "/" + sub, to = lazy_dir_ + "/" + sub;
      std::error_code ec;
      fs::copy(from, to, fs::copy_options::recursive, ec);
      ASSERT_FALSE(ec) << "copy " << from << " to " << to << ": " << ec.message();
      for (const auto& e : fs::recursive_directory_iterator(to)) {
        if (!e.is_regular_file()) continue;
        int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0) << e.path() << ": " << ErrnoName(errno);
        EXPECT_EQ(::fsync(fd), 0) << e.path() << ": " << ErrnoName(errno);
        ::close(fd);
      }
      fs::remove_all(from, ec);
      ASSERT_FALSE(ec) << ec.message();
      fs::create_directory_symlink(to, from, ec);
      ASSERT_FALSE(ec) << ec.message();
    }
  }

  // What the cut drops: LazyFS's report of the unsynced bytes first (what the cut loses:
  // counted per kind of file), then the cache cleared.
  void AfterKill() override {
    std::vector<std::string> report;
    ASSERT_NO_FATAL_FAILURE(Command("lazyfs::unsynced-data-report",
                                    {"all data blocks are synced", "bytes un-fsynced"}, &report));
    for (const auto& line : report) {
      if (size_t at = line.find("total number of bytes un-fsynced: "); at != std::string::npos) {
        uint64_t bytes = std::stoull(line.substr(at + 34));
        dropped_bytes_ += bytes;
        cuts_dropping_ += bytes > 0;
      }
      if (size_t at = line.find("=> file: '"); at != std::string::npos) {
        std::string file = line.substr(at + 10);
        file = file.substr(0, file.find('\''));
        std::string kind = file.find("/packs/") != std::string::npos ? "pack"
                           : file.ends_with(".log")                   ? "RocksDB log"
                           : file.find("/MANIFEST-") != std::string::npos ? "RocksDB manifest"
                           : file.ends_with(".sst")                   ? "RocksDB table"
                           : file.ends_with("/LOG")                   ? "RocksDB info LOG"
                           : file.find("/OPTIONS-") != std::string::npos ? "RocksDB options"
                                                                      : "";
        if (kind.empty()) {  // named by its base name without digits ("MANIFEST-.dbtmp")
          kind = file.substr(file.rfind('/') + 1);
          std::erase_if(kind, [](char c) { return c >= '0' && c <= '9'; });
        }
        dropped_files_[kind]++;
      }
    }
    ASSERT_NO_FATAL_FAILURE(Command("lazyfs::clear-cache", {"cache is cleared."}, nullptr));
  }

  // Writes `cmd` to LazyFS's FIFO and waits until its log, past where it was, has a line
  // holding one of `done`; the new lines go to `lines`. One command at a time: LazyFS reads
  // its FIFO in 100-byte pieces, so two commands sent together would be read as one.
  void Command(const std::string& cmd, const std::vector<std::string>& done,
               std::vector<std::string>* lines) {
    std::error_code ec;
    uintmax_t from = std::filesystem::file_size(log_, ec);
    if (ec) from = 0;
    int fd = ::open(fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // LazyFS holds it open
    ASSERT_GE(fd, 0) << "open " << fifo_ << " (is LazyFS running?): " << ErrnoName(errno);
    const std::string line = cmd + "\n";
    ssize_t n = ::write(fd, line.data(), line.size());
    ::close(fd);
    ASSERT_EQ(n, static_cast<ssize_t>(line.size())) << "write " << fifo_;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      std::ifstream f(log_);
      f.seekg(static_cast<std::streamoff>(from));
      std::vector<std::string> got;
      bool finished = false;
      for (std::string l; std::getline(f, l);) {
        got.push_back(l);
        for (const auto& d : done) finished |= l.find(d) != std::string::npos;
      }
      if (finished) {
        if (lines) *lines = std::move(got);
        return;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "LazyFS did not finish " << cmd << " within 60 s (" << log_ << ")";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::string lazy_root_, fifo_, log_, lazy_dir_;
  uint64_t dropped_bytes_ = 0, cuts_dropping_ = 0;
  std::map<std::string, uint64_t> dropped_files_;  // unsynced files at a cut, by kind
};

TEST_F(LazyFsCut, PowerCutsThroughTheMountLoseNothingAcknowledged) {
  const uint64_t seed = EnvOr("SNAPFS_TORTURE_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_TORTURE_SEED)");
  RunKills(EnvOr("SNAPFS_LAZYFS_CUTS", 20), seed, "cut");
  std::cout << "lazyfs: " << cuts_dropping_ << " cuts dropped unsynced data, " << dropped_bytes_
            << " bytes in all, in files:";
  for (const auto& [kind, n] : dropped_files_) std::cout << " " << kind << " " << n << ",";
  std::cout << std::endl;
}

}  // namespace
}  // namespace snapfs::mounttest
