// The RocksDB engine after a full disk (core/meta/rocksdb_engine.h, Recover): RocksDB
// stops taking writes after a flush or a log append fails (its background error) and
// stays stopped until DB::Resume. A disk filled by another program on it (below
// SpaceGuard's reserves, which only snapfs's own writes honour) used to leave the mount
// refusing every metadata write, `rm` and `gc` included, until a remount, after space
// was freed (the CI failure of DiskFull.GcOutOfSpaceFailsCleanlyAndRunsOnceSpaceIsFree,
// whenever a memtable flush ran while the disk was full). Now the next write resumes it.
//
// FullDiskFs makes appends to the files whose names end in a given suffix fail with
// ENOSPC while the "disk" is full, as a real full disk does, deterministically.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <memory>
#include <string>

#include "core/meta/rocksdb_engine.h"
#include "core/meta/spaces.h"
#include "tests/util/status_matchers.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {



class FullDiskFs final : public rocksdb::FileSystemWrapper {
 public:
  FullDiskFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FullDiskFs"; }

  // While `suffix` is not empty, appends to files whose names end in it fail (ENOSPC).
  void Fill(std::string suffix) {
    std::lock_guard l(mu_);
    suffix_ = std::move(suffix);
  }

  std::unique_ptr<rocksdb::Env> NewEnv() {
    return rocksdb::NewCompositeEnv(std::shared_ptr<rocksdb::FileSystem>(
        std::shared_ptr<rocksdb::FileSystem>{}, this));  // aliasing: not owned
  }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(fname, opts, result, dbg);
    if (s.ok()) *result = std::make_unique<File>(this, fname, std::move(*result));
    return s;
  }

 private:
  bool Full(const std::string& fname) {
    std::lock_guard l(mu_);
    return !suffix_.empty() && fname.size() >= suffix_.size() &&
           fname.compare(fname.size() - suffix_.size(), suffix_.size(), suffix_) == 0;
  }

  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(FullDiskFs* fs, std::string name, std::unique_ptr<rocksdb::FSWritableFile> t)
        : FSWritableFileOwnerWrapper(std::move(t)), fs_(fs), name_(std::move(name)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->Full(name_)) return NoSpace();
      return target()->Append(data, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo&,
                             rocksdb::IODebugContext* dbg) override {
      return Append(data, o, dbg);
    }

   private:
    static rocksdb::IOStatus NoSpace() {
      return rocksdb::IOStatus::NoSpace("injected", "No space left on device");
    }
    FullDiskFs* const fs_;
    const std::string name_;
  };

  std::mutex mu_;
  std::string suffix_;
};

class RocksResume : public ::testing::Test {
 protected:
  void Open() { e_ = MUST(kv::RocksEngine::Open(tmp_.path() + "/db", false, env_.get())); }
  Status Put(const std::string& k, bool sync = true) {
    auto t = e_->Begin();
    t->Put(Cf::kDefault, k, "v-" + k);
    return t->Commit(sync);
  }
  // Every key in `keys` reads back.
  void ExpectKeys(std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
      std::string v;
      EXPECT_OK(e_->Get(Cf::kDefault, k, &v)) << k;
      EXPECT_EQ(v, std::string("v-") + k);
    }
  }

  test::TempDir tmp_{"snapfs-resume"};
  FullDiskFs fs_;
  std::unique_ptr<rocksdb::Env> env_ = fs_.NewEnv();
  std::unique_ptr<kv::RocksEngine> e_ =
      MUST(kv::RocksEngine::Open(tmp_.path() + "/db", true, env_.get()));
};

// A memtable flush on a full disk (no commit of ours failed: RocksDB reports it through
// its listener): writes fail with NoSpace while the disk stays full, and the first write
// once space is free resumes RocksDB, commits, and is durable.
TEST_F(RocksResume, AFlushOnAFullDiskStopsWritesUntilSpaceIsFree) {
  ASSERT_OK(Put("before"));
  fs_.Fill(".sst");
  rocksdb::FlushOptions fo;
  EXPECT_FALSE(e_->db()->Flush(fo, e_->cf(Cf::kDefault)).ok()) << "the flush had no room";
  EXPECT_FALSE(e_->Health().ok()) << "a stopped engine is not healthy";
  Status full = Put("while-full");
  EXPECT_TRUE(full.Is(Code::kNoSpace)) << full.ToString();
  EXPECT_FALSE(e_->Sync().ok());
  ExpectKeys({"before"});  // reads keep working

  fs_.Fill("");
  ASSERT_OK(Put("after")) << "the first write once space is free resumes RocksDB";
  EXPECT_OK(e_->Health());
  EXPECT_OK(e_->Sync());
  ASSERT_OK(Put("after-2", false));
  ASSERT_OK(e_->Sync());
  ExpectKeys({"before", "after", "after-2"});
  e_.reset();
  Open();
  ExpectKeys({"before", "after", "after-2"});
  ASSERT_OK(Put("reopened"));
}

// The metadata log itself on a full disk: the commit fails and is not acknowledged, a
// sync after it fails instead of aborting, and the engine stays stopped even once space
// is free (RocksDB 7.8 would resume on the log writer that failed; see Recover), saying
// that it needs a remount. Opened again, it works and has everything acknowledged.
TEST_F(RocksResume, ALogAppendOnAFullDiskStopsWritesUntilTheStoreIsOpenedAgain) {
  ASSERT_OK(Put("before"));
  fs_.Fill(".log");
  EXPECT_FALSE(Put("while-full").ok()) << "a commit whose log append failed was acknowledged";
  EXPECT_FALSE(e_->Sync().ok());
  fs_.Fill("");
  EXPECT_FALSE(Put("after-space").ok());
  EXPECT_FALSE(e_->Sync().ok());
  Status h = e_->Health();
  EXPECT_NE(h.ToString().find("mounted again"), std::string::npos) << h.ToString();
  ExpectKeys({"before"});
  e_.reset();
  Open();
  ExpectKeys({"before"});
  ASSERT_OK(Put("after"));
  ASSERT_OK(e_->Sync());
  EXPECT_OK(e_->Health());
}

// A flush that keeps failing: every write tries to resume and fails with NoSpace while
// there is no room, the engine reports why, and nothing committed is lost once it resumes.
TEST_F(RocksResume, ResumingWhileTheDiskIsStillFullFailsAndLosesNothing) {
  ASSERT_OK(Put("before"));
  fs_.Fill(".sst");
  EXPECT_FALSE(e_->db()->Flush(rocksdb::FlushOptions(), e_->cf(Cf::kDefault)).ok());
  for (int i = 0; i < 3; i++) {
    Status st = Put("still-full");
    EXPECT_TRUE(st.Is(Code::kNoSpace)) << i << ": " << st.ToString();
  }
  Status h = e_->Health();
  EXPECT_FALSE(h.ok());
  EXPECT_NE(h.ToString().find("could not resume"), std::string::npos) << h.ToString();
  fs_.Fill("");
  ASSERT_OK(Put("after"));
  EXPECT_OK(e_->Health());
  e_.reset();
  Open();
  ExpectKeys({"before", "after"});
}

}  // namespace
}  // namespace snapfs
