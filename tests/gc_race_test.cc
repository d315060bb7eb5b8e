// GC racing with writers whose chunks are not committed yet: the two ways it lost data
// before (a pack removed under an uncommitted flush; holds leaked by a failed flush), and
// GC sealing and rewriting the pack a writer is appending to.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "backends/backend.h"
#include "backends/backend_wrapper.h"
#include "backends/fault_backend.h"
#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "core/chunks/gc.h"
#include "core/store.h"
#include "tests/util/random.h"
#include "tests/util/status_matchers.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {

// Pauses the first Read issued by a chosen thread until released.
class BlockingBackend final : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;
  void Arm(std::thread::id who) {
    std::lock_guard l(mu_);
    who_ = who;
    armed_ = true;
  }
  void WaitBlocked() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return blocked_; });
  }
  void Release() {
    std::lock_guard l(mu_);
    release_ = true;
    cv_.notify_all();
  }
  Status Read(PackId id, uint64_t off, size_t len, uint8_t* out) const override {
    {
      std::unique_lock l(mu_);
      if (armed_ && std::this_thread::get_id() == who_) {
        armed_ = false;
        blocked_ = true;
        cv_.notify_all();
        cv_.wait(l, [&] { return release_; });
      }
    }
    return BackendWrapper::Read(id, off, len, out);
  }
  std::string Describe() const override { return "blocking"; }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable bool armed_ = false, blocked_ = false, release_ = false;
  std::thread::id who_;
};

class GcRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    ASSERT_TRUE(Store::Init(dir_ + "/store", InitOptions{}).ok());
  }
  void TearDown() override {
    fs_.reset();
    store_.reset();
  }
  void Open(std::unique_ptr<Backend> b) {
    OpenOptions oo;
    oo.backend = std::move(b);
    store_ = MUST(Store::Open(dir_ + "/store", std::move(oo)));
    fs_ = MUST(Filesystem::Open(store_.get()));
  }
  void WriteFile(const char* name, const std::string& data) {
    auto [a, fh] = MUST(fs_->Create(kRootIno, name, 0644, O_RDWR | O_CREAT | O_TRUNC, {}));
    for (size_t o = 0; o < data.size(); o += 1 << 20) {
      MUST(fs_->Write(fh, o, data.data() + o, std::min<size_t>(1 << 20, data.size() - o)));
    }
    ASSERT_TRUE(fs_->Fsync(fh, false).ok());
    ASSERT_TRUE(fs_->Release(fh).ok());
  }
  std::string ReadFile(const char* name) {
    auto a = MUST(fs_->Lookup(kRootIno, name));
    auto fh = MUST(fs_->Open(a.ino, O_RDONLY));
    std::string b(a.size, '\0');
    auto r = fs_->Read(fh, 0, a.size, b.data());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(fs_->Release(fh).ok());
    return b;
  }
  void ExpectFsckClean() {
    auto rep = MUST(Fsck(*store_, FsckOptions{.verify_data = true}));
    EXPECT_TRUE(rep.ok()) << rep.problems.front();
  }
  test::TempDir tmp_{"snapfs-gcrace"};
  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Filesystem> fs_;
};

// A flush appends chunks to a pack that then rotates out, and pauses before its commit;
// the pack is mostly dead, so GC rewrites it. It must not remove it under the writer.
TEST_F(GcRaceTest, PackWithUncommittedChunksIsNotRemoved) {
  auto local = MUST(OpenLocalBackend(dir_ + "/store/packs"));
  auto* bb = new BlockingBackend(std::move(local));
  Open(std::unique_ptr<Backend>(bb));
  WriteFile("A", test::RandomBytes((63 << 20) + (512 << 10), 3));  // pack 1 nearly full
  auto [b, fh] = MUST(fs_->Create(kRootIno, "B", 0644, O_RDWR | O_CREAT, {}));
  const std::string tail = test::RandomBytes(300 << 10, 4);
  MUST(fs_->Write(fh, 10 << 20, tail.data(), tail.size()));
  ASSERT_TRUE(fs_->Fsync(fh, false).ok());  // a committed chunk of B, in pack 1
  const std::string d = test::RandomBytes(2 << 20, 5);
  Status writer_status;
  std::thread w([&] {
    bb->Arm(std::this_thread::get_id());
    MUST(fs_->Write(fh, 0, d.data(), d.size()));  // new chunks fill pack 1, rotate to 2
    char x = 'x';
    MUST(fs_->Write(fh, (10 << 20) + 100, &x, 1));  // re-reads a committed chunk: blocks
    writer_status = fs_->Fsync(fh, false);
  });
  bb->WaitBlocked();
  ASSERT_TRUE(fs_->Unlink(kRootIno, "A").ok());
  MUST(RunGc(*store_));
  bb->Release();
  w.join();
  EXPECT_TRUE(writer_status.ok()) << writer_status.ToString();
  ASSERT_TRUE(fs_->Release(fh).ok());
  std::string want = d + std::string((10 << 20) - d.size(), '\0') + tail;
  want[(10 << 20) + 100] = 'x';
  EXPECT_TRUE(ReadFile("B") == want) << "B lost data to a concurrent GC";
  ExpectFsckClean();
  // Once the writer committed, a later GC may reclaim the dead pack.
  MUST(RunGc(*store_));
  EXPECT_TRUE(ReadFile("B") == want);
  ExpectFsckClean();
}

// A flush fails (device full); GC runs; the retried fsync must commit readable data.
TEST_F(GcRaceTest, FailedFlushThenGcThenRetry) {
  auto* fb = new FaultInjectionBackend(MUST(OpenLocalBackend(dir_ + "/store/packs")));
  Open(std::unique_ptr<Backend>(fb));
  WriteFile("A", test::RandomBytes(4 << 20, 1));
  const std::string d = test::RandomBytes(1 << 20, 2);
  auto [b, fh] = MUST(fs_->Create(kRootIno, "B", 0644, O_RDWR | O_CREAT, {}));
  MUST(fs_->Write(fh, 0, d.data(), d.size()));
  fb->FailAppendsAfter(300 << 10);
  Status s = fs_->Fsync(fh, false);
  EXPECT_EQ(s.code(), Code::kNoSpace) << s.ToString();
  fb->FailAppendsAfter(FaultInjectionBackend::kNoLimit);
  ASSERT_TRUE(fs_->Unlink(kRootIno, "A").ok());
  MUST(RunGc(*store_));
  s = fs_->Fsync(fh, false);
  EXPECT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(fs_->Release(fh).ok());
  EXPECT_TRUE(ReadFile("B") == d) << "data of a failed-then-retried flush lost";
  ExpectFsckClean();
}

// Everything sits in the active pack, most of it dead, and a writer has appended chunks
// to that pack without committing them: GC must leave the pack alone (not seal it, not
// remove it). Once the writer committed, the next GC seals the pack and rewrites it.
TEST_F(GcRaceTest, ActivePackWithUncommittedChunksIsLeftThenRewritten) {
  auto local = MUST(OpenLocalBackend(dir_ + "/store/packs"));
  auto* bb = new BlockingBackend(std::move(local));
  Open(std::unique_ptr<Backend>(bb));
  WriteFile("A", test::RandomBytes(6 << 20, 13));  // dead soon
  auto [b, fh] = MUST(fs_->Create(kRootIno, "B", 0644, O_RDWR | O_CREAT, {}));
  const std::string tail = test::RandomBytes(300 << 10, 14);
  MUST(fs_->Write(fh, 4 << 20, tail.data(), tail.size()));
  ASSERT_TRUE(fs_->Fsync(fh, false).ok());  // a committed chunk of B
  const PackId active = store_->chunks().active_pack();
  ASSERT_NE(active, 0u);
  const std::string d = test::RandomBytes(2 << 20, 15);
  Status writer_status;
  std::thread w([&] {
    bb->Arm(std::this_thread::get_id());
    MUST(fs_->Write(fh, 0, d.data(), d.size()));  // new chunks, appended to the active pack
    char x = 'x';
    MUST(fs_->Write(fh, (4 << 20) + 100, &x, 1));  // re-reads a committed chunk: blocks
    writer_status = fs_->Fsync(fh, false);
  });
  bb->WaitBlocked();
  ASSERT_EQ(store_->chunks().active_pack(), active) << "the writer's chunks must be in it";
  ASSERT_TRUE(fs_->Unlink(kRootIno, "A").ok());
  GcResult r1 = MUST(RunGc(*store_));
  EXPECT_FALSE(r1.sealed_active) << "sealed under an uncommitted writer";
  EXPECT_EQ(r1.packs_busy, 1u);
  EXPECT_EQ(r1.packs_removed, 0u);
  EXPECT_EQ(store_->chunks().active_pack(), active);
  bb->Release();
  w.join();
  EXPECT_TRUE(writer_status.ok()) << writer_status.ToString();
  ASSERT_TRUE(fs_->Release(fh).ok());
  std::string want = d + std::string((4 << 20) - d.size(), '\0') + tail;
  want[(4 << 20) + 100] = 'x';
  EXPECT_TRUE(ReadFile("B") == want);
  GcResult r2 = MUST(RunGc(*store_));
  EXPECT_TRUE(r2.sealed_active);
  EXPECT_EQ(r2.packs_removed, 1u);
  for (const auto& p : MUST(store_->backend().List())) EXPECT_NE(p.id, active);
  EXPECT_GT(r2.bytes_freed, 5u << 20) << "A's 6 MiB should be freed";
  EXPECT_TRUE(ReadFile("B") == want) << "B lost data to the rewrite of the active pack";
  ExpectFsckClean();
  fs_.reset();
  store_.reset();
  Open(MUST(OpenLocalBackend(dir_ + "/store/packs")));
  EXPECT_TRUE(ReadFile("B") == want) << "B lost data after reopening";
  ExpectFsckClean();
}

// A writer keeps writing, overwriting and deleting files while GC runs again and again
// with a target of 0 (every pack with a dead byte is rewritten, the active one
// included). Nothing committed may be lost, whatever the interleaving.
TEST_F(GcRaceTest, GcSealingTheActivePackUnderAWriterLosesNothing) {
  Open(MUST(OpenLocalBackend(dir_ + "/store/packs")));
  std::map<std::string, std::string> files;
  std::mutex files_mu;
  std::atomic<bool> done{false};
  std::string writer_error;
  std::thread w([&] {
    try {
      for (int i = 0; i < 40; i++) {
        std::string name = "w" + std::to_string(i % 12);  // overwrites make garbage
        std::string data = test::RandomBytes((96 << 10) + (i % 5) * (40 << 10), 1000 + i);
        WriteFile(name.c_str(), data);
        std::lock_guard l(files_mu);
        files[name] = data;
        if (i % 7 == 6) {
          std::string victim = "w" + std::to_string((i + 5) % 12);
          if (files.erase(victim)) {
            Status s = fs_->Unlink(kRootIno, victim);
            if (!s.ok()) writer_error = s.ToString();
          }
        }
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
    done = true;
  });
  GcOptions o;
  o.max_unused_fraction = 0;
  int runs = 0, sealed = 0;
  while (!done) {
    GcResult r = MUST(RunGc(*store_, o));
    runs++;
    sealed += r.sealed_active;
  }
  w.join();
  ASSERT_EQ(writer_error, "");
  GcResult last = MUST(RunGc(*store_, o));
  sealed += last.sealed_active;
  std::cout << "[ gc runs  ] " << runs + 1 << ", " << sealed << " sealed the active pack\n";
  for (const auto& [name, data] : files) {
    EXPECT_TRUE(ReadFile(name.c_str()) == data) << name << " lost to a concurrent GC";
  }
  ExpectFsckClean();
  auto space = MUST(MeasureSpace(*store_));
  EXPECT_EQ(space.dead_bytes, 0u) << "a target of 0 leaves no dead byte on a quiet store";
  fs_.reset();
  store_.reset();
  Open(MUST(OpenLocalBackend(dir_ + "/store/packs")));
  for (const auto& [name, data] : files) EXPECT_TRUE(ReadFile(name.c_str()) == data) << name;
  ExpectFsckClean();
}

}  // namespace
}  // namespace snapfs
