#include "daemon/test_faults.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <rocksdb/file_system.h>

#include "base/log.h"

namespace snapfs {

// RocksDB's file system, with every write to a file failing while `fail` is set.
class TestFaults::FaultyMetaFs final : public rocksdb::FileSystemWrapper {
 public:
  FaultyMetaFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "SnapfsTestFaultsFs"; }
  std::atomic<bool> fail{false};

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* d) override {
    return Wrap(target()->NewWritableFile(f, o, r, d), r);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* d) override {
    return Wrap(target()->ReopenWritableFile(f, o, r, d), r);
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* d) override {
    return Wrap(target()->ReuseWritableFile(f, old, o, r, d), r);
  }

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(FaultyMetaFs* fs, std::unique_ptr<rocksdb::FSWritableFile> t)
        : FSWritableFileOwnerWrapper(std::move(t)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* d) override {
      if (fs_->fail.load()) return Injected();
      return target()->Append(data, o, d);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* d) override {
      if (fs_->fail.load()) return Injected();
      return target()->Append(data, o, v, d);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t off,
                                       const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* d) override {
      if (fs_->fail.load()) return Injected();
      return target()->PositionedAppend(data, off, o, d);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t off,
                                       const rocksdb::IOOptions& o,
                                       const rocksdb::DataVerificationInfo& v,
                                       rocksdb::IODebugContext* d) override {
      if (fs_->fail.load()) return Injected();
      return target()->PositionedAppend(data, off, o, v, d);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      if (fs_->fail.load()) return Injected();
      return target()->Sync(o, d);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      if (fs_->fail.load()) return Injected();
      return target()->Fsync(o, d);
    }

   private:
    static rocksdb::IOStatus Injected() {
      return rocksdb::IOStatus::IOError("test fault: metadata write failed (fail_meta_writes)");
    }
    FaultyMetaFs* const fs_;
  };

  rocksdb::IOStatus Wrap(rocksdb::IOStatus s, std::unique_ptr<rocksdb::FSWritableFile>* r) {
    if (s.ok()) *r = std::make_unique<File>(this, std::move(*r));
    return s;
  }
};

TestFaults::TestFaults(std::string file, FaultInjectionBackend* backend)
    : file_(std::move(file)),
      backend_(backend),
      meta_fs_(std::make_shared<FaultyMetaFs>()),
      meta_env_(rocksdb::NewCompositeEnv(meta_fs_)) {}

Result<std::unique_ptr<TestFaults>> TestFaults::FromEnv(const std::string& store_dir,
                                                         OpenOptions* opts) {
  const char* file = std::getenv(kEnv);
  if (file == nullptr || *file == '\0') return std::unique_ptr<TestFaults>();
  const std::string why = std::string(kEnv) + "=" + file + ": ";
  struct stat st {};
  if (::stat((store_dir + "/packs").c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(why + "test faults are for folder stores only");
  }
  if (::lstat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(why + "not a regular file");
  }
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    return Status::InvalidArgument(why + "must be owned by this user and writable by no one else");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> local, OpenLocalBackend(store_dir + "/packs"));
  auto fault = std::make_unique<FaultInjectionBackend>(std::move(local));
  std::unique_ptr<TestFaults> t(new TestFaults(file, fault.get()));
  opts->backend = std::move(fault);
  opts->meta_env = t->meta_env_.get();
  SNAPFS_LOG_WARN("TEST FAULTS ENABLED (" + why + "pack and metadata I/O may fail or stall on purpose)");
  return t;
}

TestFaults::~TestFaults() { Stop(); }

void TestFaults::Start() {
  Poll();  // the knobs already in the file hold from the first request on
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      Poll();
    }
  });
}

void TestFaults::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void TestFaults::Poll() {
  std::ifstream in(file_);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text == applied_) return;
  Apply(text);
  applied_ = text;
}

void TestFaults::Apply(const std::string& text) {
  std::set<PackId> fail_reads;
  bool all_reads = false, fail_appends = false, fail_syncs = false, fail_meta = false;
  long long delay_us = 0;
  std::string gen;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "gen") {
      gen = value;
    } else if (key == "fail_reads") {
      std::istringstream ids(value);
      for (std::string id; std::getline(ids, id, ',');) {
        if (id == "all") {
          all_reads = true;
        } else if (!id.empty()) {
          fail_reads.insert(std::strtoull(id.c_str(), nullptr, 10));
        }
      }
    } else if (key == "fail_appends") {
      fail_appends = value == "1";
    } else if (key == "fail_syncs") {
      fail_syncs = value == "1";
    } else if (key == "fail_meta_writes") {
      fail_meta = value == "1";
    } else if (key == "delay_us") {
      delay_us = std::strtoll(value.c_str(), nullptr, 10);
    }
  }
  backend_->FailReads(all_reads);
  backend_->FailReadsOf(std::move(fail_reads));
  backend_->FailAppends(fail_appends);
  backend_->FailSyncs(fail_syncs);
  backend_->SetDelay(std::chrono::microseconds(delay_us));
  meta_fs_->fail.store(fail_meta);
  SNAPFS_LOG_WARN("test faults now: " + text);
  // The test waits for this before it relies on the knobs (write, then rename: whole).
  std::string tmp = file_ + ".applied.tmp";
  if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fputs(gen.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), (file_ + ".applied").c_str());
  }
}

}  // namespace snapfs
