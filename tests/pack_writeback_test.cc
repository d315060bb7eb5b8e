// The chunk store starts the device writes of appended pack bytes as they are appended
// (ChunkStore::StartWriteback, PackWriter::StartWriteback), a MiB at a time, instead of
// leaving all of them to the fdatasync before the commit. A recording backend notes each
// writer call in order; the test writes through the file system as the mount does.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "backends/backend_wrapper.h"
#include "core/chunks/chunk_store.h"
#include "core/fs/filesystem.h"
#include "core/store.h"
#include "tests/util/random.h"
#include "tests/util/status_matchers.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {

using test::kMiB;
using test::RandomBytes;

// One pack writer call: a writeback hint [from, to) or a sync (at the pack's size then).
struct Call {
  PackId pack;
  bool sync;
  uint64_t from, to;
};

class Recorder {
 public:
  void Note(Call c) {
    std::lock_guard l(mu_);
    calls_.push_back(c);
  }
  std::vector<Call> Take() {
    std::lock_guard l(mu_);
    return std::exchange(calls_, {});
  }

 private:
  std::mutex mu_;
  std::vector<Call> calls_;
};

class RecordingBackend final : public BackendWrapper {
 public:
  RecordingBackend(std::shared_ptr<Backend> target, Recorder* r)
      : BackendWrapper(std::move(target)), r_(r) {}
  Result<std::unique_ptr<PackWriter>> Create(PackId id) override {
    ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> w, BackendWrapper::Create(id));
    return std::unique_ptr<PackWriter>(std::make_unique<Writer>(std::move(w), r_));
  }

 private:
  class Writer final : public PackWriterWrapper {
   public:
    Writer(std::unique_ptr<PackWriter> t, Recorder* r) : PackWriterWrapper(std::move(t)), r_(r) {}
    Status Sync() override {
      r_->Note({id(), true, 0, size()});
      return PackWriterWrapper::Sync();
    }
    void StartWriteback(uint64_t from, uint64_t to) override {
      r_->Note({id(), false, from, to});
      PackWriterWrapper::StartWriteback(from, to);
    }

   private:
    Recorder* r_;
  };
  Recorder* r_;
};

class PackWriteback : public ::testing::Test {
 protected:
  PackWriteback() {
    dir_ = tmp_.path() + "/store";
    MUST(Store::Init(dir_, InitOptions{}));
    OpenOptions oo;
    oo.backend = std::make_unique<RecordingBackend>(std::shared_ptr<Backend>(NewMemoryBackend()),
                                                    &rec_);
    store_ = MUST(Store::Open(dir_, std::move(oo)));
    fs_ = MUST(Filesystem::Open(store_.get()));
  }
  ~PackWriteback() override {
    fs_.reset();
    store_.reset();
  }
  // Creates `name`, writes `bytes` in 1 MiB writes, fsyncs and closes it.
  void WriteFile(const std::string& name, const std::string& bytes) {
    Caller who{0, 0};
    auto [attr, fh] = MUST(fs_->Create(kRootIno, name, 0644, O_RDWR | O_CREAT | O_EXCL, who));
    for (size_t at = 0; at < bytes.size(); at += kMiB) {
      const size_t n = std::min<size_t>(kMiB, bytes.size() - at);
      ASSERT_EQ(MUST(fs_->Write(fh, at, bytes.data() + at, n)), n);
    }
    ASSERT_OK(fs_->Fsync(fh, false));
    ASSERT_OK(fs_->Release(fh));
  }

  test::TempDir tmp_{"snapfs-writeback"};
  std::string dir_;
  Recorder rec_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Filesystem> fs_;
};

// Below the flush threshold the whole file is chunked and appended by its fsync, in one
// call of the chunk store: its writes must still start a MiB at a time, each range
// following the last, every one before the sync that makes them durable.
TEST_F(PackWriteback, AppendsStartTheirWritesAMiBAtATimeBeforeTheSync) {
  rec_.Take();
  WriteFile("a", RandomBytes(6 * kMiB + 12345, 1));
  std::vector<Call> calls = rec_.Take();
  size_t hints = 0;
  uint64_t end = 0;
  bool synced = false;
  for (const Call& c : calls) {
    if (c.sync) {
      synced = true;
      EXPECT_GE(c.to, 6 * kMiB) << "the sync covers the file's bytes";
      continue;
    }
    EXPECT_FALSE(synced) << "a writeback hint after the sync of the same bytes";
    if (hints > 0) {
      EXPECT_EQ(c.from, end) << "ranges follow each other, none twice";
    }
    EXPECT_GE(c.to - c.from, ChunkStore::kWritebackBytes) << "a hint for less than a MiB";
    end = c.to;
    hints++;
  }
  EXPECT_TRUE(synced) << "fsync did not sync the pack";
  // 6 MiB of new chunks: a hint per MiB appended, the last partial MiB left to the sync.
  EXPECT_GE(hints, 4u);
  EXPECT_LE(hints, 6u);

  // The next file's hints start after what the sync made durable.
  const uint64_t durable = end;
  WriteFile("b", RandomBytes(3 * kMiB, 2));
  calls = rec_.Take();
  bool any = false;
  for (const Call& c : calls) {
    if (c.sync) break;
    EXPECT_GE(c.from, durable) << "a hint for bytes already synced";
    any = true;
  }
  EXPECT_TRUE(any) << "3 MiB of new chunks started no writes before their sync";
}

// Bytes already stored are not appended again, so they start no writes.
TEST_F(PackWriteback, DuplicateBytesStartNoWrites) {
  const std::string bytes = RandomBytes(4 * kMiB, 3);
  WriteFile("a", bytes);
  rec_.Take();
  WriteFile("copy", bytes);
  for (const Call& c : rec_.Take()) {
    EXPECT_TRUE(c.sync) << "a writeback hint for a file whose chunks were all stored";
  }
}

}  // namespace
}  // namespace snapfs
