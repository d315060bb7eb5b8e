// Background threshold flushes ("flights", FileData::StartFlight; core/fs/open_file.h):
// while a flight commits a file's buffered bytes, writes to the file go on into the
// buffer, reads see every byte written (the flight's, then the newer ones over them),
// fsync and truncate wait for it, and a flight that fails loses nothing and hands its
// error to a later WRITE.
//
// Deterministic, not timed: the packs are behind a gate whose Sync (every flight syncs
// its pack bytes before it commits) blocks while the test holds it shut, so a flight
// stays parked in the middle for as long as the test looks.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>

#include "backends/backend_wrapper.h"
#include "core/fs/filesystem.h"
#include "core/fs/open_file.h"
#include "core/store.h"
#include "tests/util/random.h"
#include "tests/util/status_matchers.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {

using test::kMiB;
using test::RandomBytes;

constexpr size_t kThreshold = OpenFile::kFlushThreshold;

// Pack syncs wait while the gate is shut, and fail while it is set to fail.
class Gate {
 public:
  void Shut() {
    std::lock_guard l(mu_);
    shut_ = true;
  }
  void Open() {
    {
      std::lock_guard l(mu_);
      shut_ = false;
    }
    cv_.notify_all();
  }
  void Fail(bool fail) {
    std::lock_guard l(mu_);
    fail_ = fail;
  }
  // Waits until a sync is parked at the shut gate (false after 30 s: then none came).
  bool WaitParked() {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(30), [&] { return parked_ > 0; });
  }
  Status Pass() {
    std::unique_lock l(mu_);
    parked_++;
    cv_.notify_all();
    cv_.wait(l, [&] { return !shut_; });
    parked_--;
    if (fail_) return Status::IOError("gate: pack sync failed");
    return Status::OK();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool shut_ = false;
  bool fail_ = false;
  int parked_ = 0;
};

class GatedBackend final : public BackendWrapper {
 public:
  GatedBackend(std::shared_ptr<Backend> target, Gate* gate)
      : BackendWrapper(std::move(target)), gate_(gate) {}
  Result<std::unique_ptr<PackWriter>> Create(PackId id) override {
    ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> w, BackendWrapper::Create(id));
    return std::unique_ptr<PackWriter>(std::make_unique<Writer>(std::move(w), gate_));
  }

 private:
  class Writer final : public PackWriterWrapper {
   public:
    Writer(std::unique_ptr<PackWriter> t, Gate* gate) : PackWriterWrapper(std::move(t)), gate_(gate) {}
    Status Sync() override {
      RETURN_IF_ERROR(gate_->Pass());
      return PackWriterWrapper::Sync();
    }

   private:
    Gate* gate_;
  };
  Gate* gate_;
};

class Flight : public ::testing::Test {
 protected:
  Flight() {
    dir_ = tmp_.path() + "/store";
    MUST(Store::Init(dir_, InitOptions{}));
    backend_ = std::shared_ptr<Backend>(NewMemoryBackend());
    Open();
  }
  ~Flight() override {
    gate_.Open();
    Close();
  }
  void Open() {
    OpenOptions oo;
    oo.backend = std::make_unique<GatedBackend>(backend_, &gate_);
    store_ = MUST(Store::Open(dir_, std::move(oo)));
    fs_ = MUST(Filesystem::Open(store_.get()));
  }
  void Close() {
    fs_.reset();
    store_.reset();
  }
  FileHandle Create(const std::string& name) {
    Caller who{0, 0};
    auto r = MUST(fs_->Create(kRootIno, name, 0644, O_RDWR | O_CREAT | O_EXCL, who));
    ino_ = r.first.ino;
    return r.second;
  }
  // Writes `data` at `off` in 1 MiB writes, as the writeback cache sends them.
  Status Write(FileHandle fh, uint64_t off, const std::string& data) {
    for (size_t at = 0; at < data.size(); at += kMiB) {
      size_t n = std::min<size_t>(kMiB, data.size() - at);
      auto r = fs_->Write(fh, off + at, data.data() + at, n);
      if (!r.ok()) return r.status();
      if (*r != n) return Status::IOError("short write");
    }
    return Status::OK();
  }
  std::string ReadAll(FileHandle fh) {
    auto a = MUST(fs_->GetAttr(ino_));
    std::string out(a.size, '\0');
    size_t got = 0;
    while (got < out.size()) {
      size_t n = MUST(fs_->Read(fh, got, std::min<size_t>(kMiB, out.size() - got), out.data() + got));
      if (n == 0) break;
      got += n;
    }
    out.resize(got);
    return out;
  }
  // Returns once the file's flight (if any) has ended: a setattr that changes nothing
  // waits for it (FileData::SetAttrLocked) and does nothing else.
  void EndOfFlight() { ASSERT_OK(fs_->SetAttr(ino_, SetAttrRequest{}).status()); }
  // Releases `fh`, reopens the store and expects the file to hold `model`.
  void ReleaseReopenAndExpect(FileHandle fh, const std::string& model) {
    ASSERT_OK(fs_->Release(fh));
    Close();
    Open();
    FileHandle again = MUST(fs_->Open(ino_, O_RDONLY));
    EXPECT_TRUE(ReadAll(again) == model) << "after a reopen";
    ASSERT_OK(fs_->Release(again));
  }
  // Runs `f` in another thread; false if it did not return within 30 s (it blocked).
  template <typename F>
  bool ReturnsWhileParked(F f) {
    auto fut = std::async(std::launch::async, f);
    return fut.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  }

  test::TempDir tmp_{"snapfs-flight"};
  std::string dir_;
  Gate gate_;
  std::shared_ptr<Backend> backend_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Filesystem> fs_;
  uint64_t ino_ = 0;
};

TEST_F(Flight, WritesAndReadsGoOnWhileAFlightCommits) {
  FileHandle fh = Create("f");
  std::string model = RandomBytes(kThreshold + 1 * kMiB, 1);
  gate_.Shut();
  ASSERT_OK(Write(fh, 0, model));
  ASSERT_TRUE(gate_.WaitParked()) << "crossing the threshold started no flight";

  // The flight is parked before its commit: more writes are taken, not held up by it.
  std::string more = RandomBytes(3 * kMiB, 2);
  std::string over = RandomBytes(100 * 1024, 3);  // over bytes the flight holds
  ASSERT_TRUE(ReturnsWhileParked([&] {
    EXPECT_OK(Write(fh, model.size(), more));
    EXPECT_OK(Write(fh, 1 * kMiB + 7, over));
  })) << "a write waited for the flight";
  model += more;
  model.replace(1 * kMiB + 7, over.size(), over);
  EXPECT_EQ(MUST(fs_->GetAttr(ino_)).size, model.size());
  EXPECT_TRUE(ReadAll(fh) == model) << "reads while the flight is parked";

  gate_.Open();
  EndOfFlight();
  EXPECT_TRUE(ReadAll(fh) == model) << "after the flight ended, before any fsync";
  ASSERT_OK(fs_->Fsync(fh, false));
  EXPECT_TRUE(ReadAll(fh) == model) << "after the fsync";
  ASSERT_NO_FATAL_FAILURE(ReleaseReopenAndExpect(fh, model));
}

// fsync and truncate wait until the flight ends, and then see its bytes committed.
TEST_F(Flight, FsyncAndTruncateWaitForTheFlight) {
  FileHandle fh = Create("f");
  std::string model = RandomBytes(kThreshold + 2 * kMiB, 4);
  gate_.Shut();
  ASSERT_OK(Write(fh, 0, model));
  ASSERT_TRUE(gate_.WaitParked());
  auto fsync = std::async(std::launch::async, [&] { return fs_->Fsync(fh, false); });
  EXPECT_EQ(fsync.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "fsync returned while the flight's bytes were not committed";
  gate_.Open();
  ASSERT_OK(fsync.get());

  gate_.Shut();
  std::string more = RandomBytes(kThreshold, 5);
  ASSERT_OK(Write(fh, model.size(), more));
  model += more;
  ASSERT_TRUE(gate_.WaitParked());
  SetAttrRequest req;
  req.set_size = true;
  req.size = 3 * kMiB + 11;
  auto trunc = std::async(std::launch::async, [&] { return fs_->SetAttr(ino_, req).status(); });
  EXPECT_EQ(trunc.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "truncate ran beside the flight";
  gate_.Open();
  ASSERT_OK(trunc.get());
  model.resize(req.size);
  EXPECT_TRUE(ReadAll(fh) == model);
  ASSERT_NO_FATAL_FAILURE(ReleaseReopenAndExpect(fh, model));
}

// A flight that fails (its pack sync) commits nothing and loses nothing: its bytes go
// back under the newer writes, the next threshold flush runs in the writer's thread and
// its WRITE gets the error, and once the disk works again fsync commits everything.
TEST_F(Flight, AFailedFlightLosesNothingAndItsErrorReachesAWrite) {
  FileHandle fh = Create("f");
  std::string model = RandomBytes(kThreshold + 1 * kMiB, 6);
  gate_.Shut();
  gate_.Fail(true);
  ASSERT_OK(Write(fh, 0, model));
  ASSERT_TRUE(gate_.WaitParked());
  std::string more = RandomBytes(2 * kMiB, 7);
  ASSERT_OK(Write(fh, model.size(), more));
  model += more;
  gate_.Open();  // the flight fails now
  EndOfFlight();
  // Its bytes are back in the buffer: everything reads back.
  EXPECT_TRUE(ReadAll(fh) == model) << "after the flight failed";
  // Write on until a WRITE reports the error (the next threshold flush, in this thread).
  Status err;
  for (int i = 0; i < 40 && err.ok(); i++) {
    std::string piece = RandomBytes(kMiB, 100 + i);
    err = Write(fh, model.size(), piece);
    model += piece;  // a failed WRITE still buffered its bytes (the flush after it failed)
  }
  EXPECT_FALSE(err.ok()) << "no WRITE reported the failed flush";
  EXPECT_TRUE(ReadAll(fh) == model) << "after the WRITE that failed";
  gate_.Fail(false);
  ASSERT_OK(fs_->Fsync(fh, false));
  EXPECT_TRUE(ReadAll(fh) == model);
  ASSERT_NO_FATAL_FAILURE(ReleaseReopenAndExpect(fh, model));
}

// A clone waits for the flights of both files with only that file's lock held (a flight
// ends under its file's lock), then copies what the flight committed.
TEST_F(Flight, CloneWaitsForTheFlight) {
  FileHandle src = Create("src");
  const uint64_t src_ino = ino_;
  std::string model = RandomBytes(kThreshold + 1 * kMiB, 8);
  gate_.Shut();
  ASSERT_OK(Write(src, 0, model));
  ASSERT_TRUE(gate_.WaitParked());
  FileHandle dst = Create("dst");
  auto clone = std::async(std::launch::async, [&] {
    return fs_->CloneRange(src, 0, dst, 0, model.size()).status();
  });
  EXPECT_EQ(clone.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "clone ran beside the flight";
  gate_.Open();
  ASSERT_OK(clone.get());
  EXPECT_TRUE(ReadAll(dst) == model) << "the clone";
  ASSERT_OK(fs_->Release(src));
  ASSERT_NO_FATAL_FAILURE(ReleaseReopenAndExpect(dst, model));
  ino_ = src_ino;
  FileHandle again = MUST(fs_->Open(src_ino, O_RDONLY));
  EXPECT_TRUE(ReadAll(again) == model) << "the source after a reopen";
  ASSERT_OK(fs_->Release(again));
}

}  // namespace
}  // namespace snapfs
