// GC killed at random points (SIGKILL of a real `snapfs gc` process): the store must
// stay consistent and every live file intact, whatever the moment of the kill.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>

#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "core/store.h"
#include "tests/util/random.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {

class GcCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    store_dir_ = dir_ + "/store";
    copy_dir_ = dir_ + "/copy";
    InitOptions io;
    io.chunker = {1024, 4096, 16384, 2};  // many small chunks: GC has work to cut into
    ASSERT_TRUE(Store::Init(store_dir_, io).ok());
  }

  // Opens the store, applies `fn`, closes it (sealing its pack).
  void WithFs(const std::function<void(Store&, Filesystem&)>& fn) {
    auto st = Store::Open(store_dir_);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    auto fs = Filesystem::Open(st->get());
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    fn(**st, **fs);
  }

  void Write(Filesystem& fs, const std::string& name, const std::string& data) {
    auto r = fs.Create(kRootIno, name, 0644, O_RDWR | O_CREAT | O_TRUNC, {});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(fs.Write(r->second, 0, data.data(), data.size()).ok());
    ASSERT_TRUE(fs.Release(r->second).ok());
    files_[name] = data;
  }

  void VerifyAll(Store& st, Filesystem& fs) {
    auto rep = Fsck(st, FsckOptions{.verify_data = true});
    ASSERT_TRUE(rep.ok()) << rep.status().ToString();
    EXPECT_TRUE(rep->ok()) << rep->problems.front();
    for (const auto& [name, want] : files_) {
      auto a = fs.Lookup(kRootIno, name);
      ASSERT_TRUE(a.ok()) << name;
      auto fh = fs.Open(a->ino, O_RDONLY);
      ASSERT_TRUE(fh.ok());
      std::string got(want.size(), '\0');
      auto n = fs.Read(*fh, 0, got.size(), got.data());
      ASSERT_TRUE(n.ok()) << name << ": " << n.status().ToString();
      EXPECT_TRUE(got == want) << name << " changed after a killed GC";
      ASSERT_TRUE(fs.Release(*fh).ok());
    }
  }

  // Runs `snapfs gc` and kills it with SIGKILL after `delay_us` (or lets it finish).
  void GcKilledAfter(int delay_us) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      execl(SNAPFS_BINARY, "snapfs", "gc", store_dir_.c_str(), "--rewrite-below", "0.99",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    if (delay_us >= 0) {
      usleep(delay_us);
      kill(pid, SIGKILL);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && store_dir_ != copy_dir_) killed_++;
    if (delay_us < 0) {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "gc failed";
    }
  }

  test::TempDir tmp_{"snapfs-gccrash"};
  std::string dir_, store_dir_, copy_dir_;
  std::map<std::string, std::string> files_;
  int killed_ = 0;  // rounds in which the kill landed before gc finished
};

TEST_F(GcCrashTest, KilledAtRandomPointsLosesNothing) {
  std::mt19937_64 rng(20261121);
  int round = 0;
  for (; round < 12; round++) {
    // New data and new garbage each round; some files share content (dedup).
    WithFs([&](Store&, Filesystem& fs) {
      for (int i = 0; i < 6; i++) {
        Write(fs, "r" + std::to_string(round) + "-" + std::to_string(i),
              test::RandomBytes(rng, 256 * 1024 + rng() % (768 * 1024)));
      }
      if (round % 3 == 0 && !files_.empty()) {
        Write(fs, "dup" + std::to_string(round), files_.begin()->second);
      }
      for (auto it = files_.begin(); it != files_.end();) {
        if (rng() % 2) {
          ASSERT_TRUE(fs.Unlink(kRootIno, it->first).ok());
          it = files_.erase(it);
        } else {
          ++it;
        }
      }
    });
    // A kill at a uniform point of the time a complete GC takes on the same data
    // (timed on a copy), so kills land in every phase, start-up to pack removal.
    std::filesystem::remove_all(dir_ + "/copy");
    std::filesystem::copy(store_dir_, dir_ + "/copy", std::filesystem::copy_options::recursive);
    auto t0 = std::chrono::steady_clock::now();
    std::swap(store_dir_, copy_dir_);
    GcKilledAfter(-1);
    std::swap(store_dir_, copy_dir_);
    auto full_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    GcKilledAfter(static_cast<int>(rng() % std::max<int64_t>(1, full_us)));
    WithFs([&](Store& st, Filesystem& fs) { VerifyAll(st, fs); });
    if (HasFatalFailure()) return;
  }
  // The kill must really interrupt GC in a good share of the rounds, or this proves little.
  std::cout << "[ killed   ] " << killed_ << " of " << round << " GC runs killed mid-way\n";
  EXPECT_GE(killed_, round / 3);
  GcKilledAfter(-1);  // and a GC that completes
  WithFs([&](Store& st, Filesystem& fs) {
    VerifyAll(st, fs);
    auto rep = Fsck(st);
    ASSERT_TRUE(rep.ok());
    EXPECT_EQ(rep->garbage_chunks, 0u) << "a completed GC leaves no unreferenced chunk";
  });
}

}  // namespace
}  // namespace snapfs
