// Test helpers for the engine's Filesystem API (no FUSE): a throwaway store under /tmp and
// shorthand for whole-file writes and reads. Also brings in the Status assertions
// (status_matchers.h) and the random test data (random.h).
//
// Thread-safety: TestFs is not thread-safe; use one per test.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backends/backend.h"
#include "backends/backend_wrapper.h"
#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "core/chunks/gc.h"
#include "core/meta/engine_wrapper.h"
#include "core/store.h"
#include "tests/util/random.h"
#include "tests/util/status_matchers.h"
#include "tests/util/temp_dir.h"

namespace snapfs::test {

// ---- Data ---------------------------------------------------------------------------

// Small chunks, so that small files have many chunk boundaries.
inline ChunkerParams SmallChunks() {
  ChunkerParams p;
  p.min_size = 1 * kKiB;
  p.avg_size = 4 * kKiB;
  p.max_size = 16 * kKiB;
  return p;
}

// ---- A backend that outlives its Store ----------------------------------------------

// Forwards to a shared backend, so that a memory backend's packs survive Reopen.
class SharedBackend final : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;
  std::string Describe() const override { return "shared:" + BackendWrapper::Describe(); }
};

// ---- The fixture --------------------------------------------------------------------

struct TestFsOptions {
  // Packs in memory instead of STORE/packs. TestFs keeps the memory backend alive across
  // Reopen (a plain OpenOptions{.backend = NewMemoryBackend()} would lose them).
  bool memory_backend = false;
  // Metadata in the memory engine instead of STORE/meta's RocksDB (kept across Reopen).
  bool memory_engine = false;
  // With memory_engine: what the store sees of it (a decorator injecting faults); the
  // default is a plain kv::EngineWrapper.
  std::function<std::unique_ptr<kv::Engine>(std::shared_ptr<kv::Engine>)> wrap_engine = nullptr;
  bool small_chunks = true;
  bool verify_dedup = false;
};

// A fresh store in a temp folder with a Filesystem open on it; removed on destruction.
class TestFs {
 public:
  explicit TestFs(TestFsOptions opts = {}) : opts_(opts) {
    dir_ = tmp_.path() + "/store";
    InitOptions io;
    if (opts_.small_chunks) io.chunker = SmallChunks();
    io.verify_dedup = opts_.verify_dedup;
    MUST(Store::Init(dir_, io));
    if (opts_.memory_backend) mem_ = std::shared_ptr<Backend>(NewMemoryBackend());
    if (opts_.memory_engine) {
      engine_ = std::shared_ptr<kv::Engine>(kv::NewMemoryEngine());
      MUST(Store::InitMetadata(*engine_));
    }
    Open();
  }
  ~TestFs() { Close(); }  // then tmp_ goes, with the store
  TestFs(const TestFs&) = delete;
  TestFs& operator=(const TestFs&) = delete;

  // Opens the store and the Filesystem (after Close).
  void Open() {
    OpenOptions oo;
    if (mem_) oo.backend = std::make_unique<SharedBackend>(mem_);
    if (engine_) {
      oo.engine = opts_.wrap_engine ? opts_.wrap_engine(engine_)
                                    : std::make_unique<kv::EngineWrapper>(engine_);
    }
    store_ = MUST(Store::Open(dir_, std::move(oo)));
    fs_ = MUST(Filesystem::Open(store_.get()));
  }
  // Destroys the Filesystem, then the Store. Open handles are dropped, not released.
  void Close() {
    fs_.reset();
    store_.reset();
  }
  void Reopen() {
    Close();
    Open();
  }

  Filesystem& fs() { return *fs_; }
  Filesystem* operator->() { return fs_.get(); }
  Store& store() { return *store_; }
  const std::string& dir() const { return dir_; }
  const Caller& who() const { return who_; }

  // ---- Shorthand; each throws (failing the test) on an error --------------------------

  FileHandle CreateFile(uint64_t parent, std::string_view name, uint32_t mode = 0644,
                        int flags = O_RDWR | O_CREAT | O_EXCL) {
    return MUST(fs_->Create(parent, name, mode, flags, who_)).second;
  }
  void WriteAll(FileHandle fh, uint64_t offset, std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      size_t n = MUST(fs_->Write(fh, offset + done, data.data() + done, data.size() - done));
      if (n == 0) throw std::runtime_error("Write returned 0");
      done += n;
    }
  }
  // Reads [offset, offset+n) or up to EOF through a handle.
  std::string ReadAt(FileHandle fh, uint64_t offset, size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      size_t r = MUST(fs_->Read(fh, offset + got, n - got, out.data() + got));
      if (r == 0) break;
      got += r;
    }
    out.resize(got);
    return out;
  }
  // Reads the whole file through a handle (size from GetAttr).
  std::string ReadFh(FileHandle fh, uint64_t ino) {
    uint64_t size = MUST(fs_->GetAttr(ino)).size;
    std::string s = ReadAt(fh, 0, size + 1);  // +1: also checks that EOF is where it should be
    return s;
  }
  // Creates (or truncates) `name` with `data`, closes it; returns its inode number.
  // (Opens an existing file itself rather than relying on Create without O_EXCL.)
  uint64_t WriteFile(uint64_t parent, std::string_view name, std::string_view data,
                     uint32_t mode = 0644) {
    uint64_t ino;
    FileHandle fh;
    auto existing = fs_->Lookup(parent, name);
    if (existing.ok()) {
      ino = existing->ino;
      fh = MUST(fs_->Open(ino, O_WRONLY | O_TRUNC));
    } else {
      auto [attr, h] = MUST(fs_->Create(parent, name, mode, O_WRONLY | O_CREAT | O_EXCL, who_));
      ino = attr.ino;
      fh = h;
    }
    WriteAll(fh, 0, data);
    MUST(fs_->Release(fh));
    return ino;
  }
  std::string ReadAll(uint64_t ino) {
    FileHandle fh = MUST(fs_->Open(ino, O_RDONLY));
    std::string s = ReadFh(fh, ino);
    MUST(fs_->Release(fh));
    return s;
  }
  uint64_t Mkdir(uint64_t parent, std::string_view name, uint32_t mode = 0755) {
    return MUST(fs_->Mkdir(parent, name, mode, who_)).ino;
  }
  uint64_t InoOf(uint64_t parent, std::string_view name) {
    return MUST(fs_->Lookup(parent, name)).ino;
  }
  Attr Stat(uint64_t ino) { return MUST(fs_->GetAttr(ino)); }
  uint32_t Nlink(uint64_t ino) { return Stat(ino).nlink; }
  Attr Set(uint64_t ino, const SetAttrRequest& r) { return MUST(fs_->SetAttr(ino, r)); }
  Attr SetSize(uint64_t ino, uint64_t size) { return Set(ino, {.set_size = true, .size = size}); }
  // A new file in `parent`, open read-write.
  std::pair<Attr, FileHandle> New(std::string_view name, uint64_t parent = kRootIno) {
    return MUST(fs_->Create(parent, name, 0644, O_RDWR | O_CREAT | O_EXCL, who_));
  }
  // Every entry from `cookie` on, "." and ".." included, in listing order.
  std::vector<DirEntry> Entries(uint64_t dir, uint64_t cookie = 0) {
    std::vector<DirEntry> v;
    MUST(fs_->ReadDir(dir, cookie, [&](const DirEntry& e) {
      v.push_back(e);
      return true;
    }));
    return v;
  }
  uint64_t DotDot(uint64_t dir) { return Entries(dir).at(1).ino; }
  // Every entry of a folder except "." and "..", in listing order.
  std::vector<DirEntry> List(uint64_t dir) {
    std::vector<DirEntry> v = Entries(dir);
    v.erase(std::remove_if(v.begin(), v.end(),
                           [](const DirEntry& e) { return e.name == "." || e.name == ".."; }),
            v.end());
    return v;
  }
  // The same by name (a name listed twice fails the test).
  std::map<std::string, DirEntry> ListMap(uint64_t dir) {
    std::map<std::string, DirEntry> m;
    for (auto& e : List(dir)) EXPECT_TRUE(m.emplace(e.name, e).second) << "twice: " << e.name;
    return m;
  }
  FsckReport Check(bool verify_data = false) {
    FsckOptions o;
    o.verify_data = verify_data;
    return MUST(Fsck(*store_, o));
  }
  // Fsck passes (for EXPECT_TRUE; the failure message lists the problems).
  ::testing::AssertionResult FsckClean(bool verify_data = false) {
    FsckReport r = Check(verify_data);
    if (r.ok()) return ::testing::AssertionSuccess();
    ::testing::AssertionResult f = ::testing::AssertionFailure() << "fsck problems:";
    for (const auto& p : r.problems) f << "\n  " << p;
    return f;
  }
  // Total bytes of all packs as the backend lists them.
  uint64_t PackBytes() {
    uint64_t total = 0;
    for (const auto& p : MUST(store_->backend().List())) total += p.size;
    return total;
  }

 private:
  TestFsOptions opts_;
  TempDir tmp_{"snapfs-test"};
  std::string dir_;
  std::shared_ptr<Backend> mem_;
  std::shared_ptr<kv::Engine> engine_;  // memory_engine: outlives each Store
  std::unique_ptr<Store> store_;
  std::unique_ptr<Filesystem> fs_;
  Caller who_{1234, 5678};
};

// Joins fsck problems for a failure message.
inline std::string Problems(const FsckReport& r) {
  std::string s;
  for (const auto& p : r.problems) s += "\n  " + p;
  return s;
}

#define EXPECT_FSCK_OK(report) \
  EXPECT_TRUE((report).ok()) << "fsck problems:" << ::snapfs::test::Problems(report)
#define ASSERT_FSCK_OK(report) \
  ASSERT_TRUE((report).ok()) << "fsck problems:" << ::snapfs::test::Problems(report)

}  // namespace snapfs::test
