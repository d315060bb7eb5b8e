// Randomized differential test: thousands of random file operations applied both to the
// engine and to a trivially correct in-memory model, compared after every step (DESIGN.md
// invariants 1 and 3: reads return exactly the bytes written; refcounts match the extents).
//
// The seed is printed; rerun a failure with SNAPFS_DIFF_SEED=<seed>.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "core/chunks/gc.h"
#include "tests/util/test_fs.h"

namespace snapfs {
namespace {

using test::kKiB;
using test::kMiB;

constexpr uint64_t kDefaultSeed = 0x5eed2024;
constexpr size_t kMaxModelSize = 4 * kMiB;  // keeps the comparisons cheap
constexpr int kNamesPerDir = 12;
constexpr size_t kMaxHandles = 8;

uint64_t SeedFor(uint64_t salt) {
  const char* env = std::getenv("SNAPFS_DIFF_SEED");
  uint64_t seed = env ? std::strtoull(env, nullptr, 0) : kDefaultSeed;
  return seed + salt;
}

// One inode of the model: what its bytes and link count must be.
struct MFile {
  uint64_t ino = 0;
  std::string data;
  uint32_t nlink = 1;
};
using Path = std::pair<int, std::string>;  // (folder index, name)

class Differential {
 public:
  // Works in `base` and two folders under it. `concurrent`: other threads use the store
  // too, so no fsck (it needs a quiet store) and no reopen during Run.
  // `other`: run through this Filesystem on t's store instead of t's own (a second
  // Filesystem on one store, as a second daemon would be).
  Differential(test::TestFs& t, uint64_t seed, uint64_t base = kRootIno, bool concurrent = false,
               Filesystem* other = nullptr)
      : t_(t), other_(other), rng_(seed), concurrent_(concurrent) {
    dirs_.push_back(base);
    dirs_.push_back(MUST(F()->Mkdir(base, "d1", 0755, t_.who())).ino);
    dirs_.push_back(MUST(F()->Mkdir(base, "d2", 0755, t_.who())).ino);
  }

  // From now on through t's own Filesystem (before the other one goes).
  void UseOwnFilesystem() { other_ = nullptr; }

  // Runs `steps` random operations; stops at the first mismatch.
  void Run(int steps, int reopen_every) {
    for (int i = 0; i < steps && !::testing::Test::HasFailure(); i++) {
      step_++;
      Step();
      if (step_ % 100 == 0) CompareAll(/*fsck=*/!concurrent_);
      if (!concurrent_ && reopen_every > 0 && step_ % reopen_every == 0) ReleaseAllAndReopen();
    }
    if (::testing::Test::HasFailure()) DumpLog();
    std::cout << "[ ops      ]";
    for (auto& [op, n] : counts_) std::cout << " " << op << "=" << n;
    std::cout << " logical_bytes=" << LogicalBytes() << std::endl;
  }

  void ReleaseAll() {
    Log("release all handles");
    for (auto& h : handles_) EXPECT_OK(F()->Release(h.fh));
    handles_.clear();
  }
  void ReleaseAllAndReopen() {
    ReleaseAll();
    Log("reopen the store");
    t_.Reopen();
    CompareAll(/*fsck=*/true);
  }

  // Every name, inode, size, link count and byte, plus fsck.
  void CompareAll(bool fsck) {
    for (size_t d = 0; d < dirs_.size(); d++) {
      std::set<std::string> want, got;
      for (auto& [p, f] : names_) {
        if (p.first == static_cast<int>(d)) want.insert(p.second);
      }
      for (auto& e : List(dirs_[d])) {
        if (d == 0 && (e.name == "d1" || e.name == "d2")) continue;
        EXPECT_TRUE(got.insert(e.name).second) << "listed twice: " << e.name;
      }
      EXPECT_EQ(got, want) << "names in folder " << d << " at step " << step_;
    }
    std::set<MFile*> done;
    for (auto& [p, f] : names_) {
      Attr a = MUST(F()->Lookup(dirs_[p.first], p.second));
      EXPECT_EQ(a.ino, f->ino) << Name(p) << " at step " << step_;
      if (done.insert(f.get()).second) CheckFile(f, 0, f->data.size(), /*full=*/true);
    }
    for (auto& h : handles_) {
      if (done.insert(h.file.get()).second) CheckFile(h.file, 0, 0, /*full=*/true);
    }
    if (fsck) {
      FsckReport r = t_.Check();
      EXPECT_FSCK_OK(r) << " at step " << step_;
    }
  }

  uint64_t LogicalBytes() {
    std::set<MFile*> seen;
    uint64_t n = 0;
    for (auto& [p, f] : names_) {
      if (seen.insert(f.get()).second) n += f->data.size();
    }
    return n;
  }

 private:
  struct OpenH {
    FileHandle fh;
    std::shared_ptr<MFile> file;
  };

  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }  // [0, n)
  // Uniform in [0, 1), from the generator's bits only (reproducible on any standard library).
  double Unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return Unit() < p; }
  // Log-uniform in [1, max]: as many tiny writes as large ones.
  size_t LogSize(size_t max) {
    return std::max<size_t>(1, static_cast<size_t>(std::exp(Unit() * std::log(max))));
  }
  std::string Name(const Path& p) const {
    return (p.first == 0 ? "/" : "/d" + std::to_string(p.first) + "/") + p.second;
  }
  Path RandomPath() {
    return {static_cast<int>(Rand(dirs_.size())), "f" + std::to_string(Rand(kNamesPerDir))};
  }
  Path RandomExisting() { return std::next(names_.begin(), Rand(names_.size()))->first; }
  void Log(std::string s) {
    counts_[s.substr(0, s.find(' '))]++;
    log_.push_back("step " + std::to_string(step_) + ": " + std::move(s));
    if (log_.size() > 40) log_.pop_front();
  }
  void DumpLog() {
    std::cerr << "last operations before the failure (seed as printed above):\n";
    for (auto& l : log_) std::cerr << "  " << l << "\n";
  }

  // Some handle, opening one on a random existing file if there is none (nullptr if the
  // namespace is empty too).
  OpenH* AnyHandle() {
    if (handles_.empty() || (Chance(0.2) && !names_.empty())) {
      if (names_.empty()) return handles_.empty() ? nullptr : &handles_[Rand(handles_.size())];
      OpenExisting();
      return &handles_.back();
    }
    return &handles_[Rand(handles_.size())];
  }
  void OpenExisting() {
    Path p = RandomExisting();
    auto f = names_[p];
    FileHandle fh = MUST(F()->Open(f->ino, O_RDWR));
    Log("open " + Name(p) + " -> fh " + std::to_string(fh));
    handles_.push_back({fh, f});
    while (handles_.size() > kMaxHandles) CloseHandle(0);
  }
  void CloseHandle(size_t i) {
    Log("release fh " + std::to_string(handles_[i].fh));
    EXPECT_OK(F()->Release(handles_[i].fh));
    auto f = handles_[i].file;
    handles_.erase(handles_.begin() + i);
    if (f->nlink == 0) {
      for (auto& h : handles_) {
        if (h.file == f) return;
      }
      EXPECT_CODE(F()->GetAttr(f->ino), Code::kNotFound) << "unlinked and closed, not purged";
    }
  }

  std::string RandomData(size_t n) {
    if (Chance(0.15)) return std::string(n, '\0');
    if (Chance(0.2) && !names_.empty()) {  // bytes the store already has: dedup
      const std::string& src = names_[RandomExisting()]->data;
      if (src.size() >= n) return src.substr(Rand(src.size() - n + 1), n);
    }
    return test::RandomBytes(n, rng_());
  }

  // Compares size, link count and bytes of one inode (the region around [off, off+len)
  // plus a random window and the tail; everything if `full` or the file is small).
  void CheckFile(const std::shared_ptr<MFile>& f, uint64_t off, uint64_t len, bool full) {
    Attr a = MUST(F()->GetAttr(f->ino));
    EXPECT_EQ(a.size, f->data.size()) << "size of ino " << f->ino << " at step " << step_;
    EXPECT_EQ(a.nlink, f->nlink) << "nlink of ino " << f->ino << " at step " << step_;
    FileHandle fh = 0;
    bool own = false;
    for (auto& h : handles_) {
      if (h.file == f) fh = h.fh;
    }
    if (fh == 0) {
      fh = MUST(F()->Open(f->ino, O_RDONLY));
      own = true;
    }
    const std::string& d = f->data;
    auto cmp = [&](uint64_t from, uint64_t n) {
      from = std::min<uint64_t>(from, d.size());
      n = std::min<uint64_t>(n, d.size() - from);
      const bool to_eof = from + n == d.size();  // then also check that EOF is there
      std::string got = ReadAt(fh, from, n + (to_eof ? 1 : 0));
      std::string want = d.substr(from, n);
      if (got != want) {
        size_t i = 0;
        while (i < std::min(got.size(), want.size()) && got[i] == want[i]) i++;
        ADD_FAILURE() << "ino " << f->ino << " differs at byte " << from + i << " (read "
                      << got.size() << " bytes at " << from << ", expected " << want.size()
                      << ") at step " << step_;
      }
    };
    if (full || d.size() <= 256 * kKiB) {
      cmp(0, d.size());
    } else {
      cmp(off > 16 * kKiB ? off - 16 * kKiB : 0, len + 32 * kKiB);
      uint64_t r = Rand(d.size());
      cmp(r, 32 * kKiB);
      cmp(d.size() > 16 * kKiB ? d.size() - 16 * kKiB : 0, 16 * kKiB);
    }
    if (own) {
      EXPECT_OK(F()->Release(fh));
    }
  }

  void Step() {
    const uint64_t r = Rand(100);
    if (names_.empty() || r < 12) return DoCreate();
    if (r < 45) return DoWrite();
    if (r < 53) return DoTruncate();
    if (r < 61) return DoRename();
    if (r < 66) return DoLink();
    if (r < 73) return DoUnlink();
    if (r < 81) return DoClone();
    if (r < 85) return DoFsync();
    if (r < 93) {
      if (!handles_.empty()) return CloseHandle(Rand(handles_.size()));
      return OpenExisting();
    }
    return OpenExisting();
  }

  void DoCreate() {
    Path p = RandomPath();
    auto it = names_.find(p);
    FileHandle fh;
    std::shared_ptr<MFile> f;
    if (it != names_.end()) {  // open(O_CREAT|O_TRUNC) of an existing file
      f = it->second;
      fh = MUST(F()->Open(f->ino, O_RDWR | O_TRUNC));
      f->data.clear();
      Log("open O_TRUNC " + Name(p) + " -> fh " + std::to_string(fh));
    } else {
      auto [a, h] =
          MUST(F()->Create(dirs_[p.first], p.second, 0644, O_RDWR | O_CREAT | O_EXCL, t_.who()));
      f = std::make_shared<MFile>();
      f->ino = a.ino;
      fh = h;
      names_[p] = f;
      Log("create " + Name(p) + " -> ino " + std::to_string(a.ino) + " fh " + std::to_string(fh));
    }
    handles_.push_back({fh, f});
    if (Chance(0.4)) {
      CloseHandle(handles_.size() - 1);
    } else {
      while (handles_.size() > kMaxHandles) CloseHandle(0);
    }
    CheckFile(f, 0, 0, true);
  }

  void DoWrite() {
    OpenH* h = AnyHandle();
    if (!h) return;
    auto f = h->file;
    const uint64_t size = f->data.size();
    size_t len = LogSize(200 * kKiB);
    uint64_t off;
    const uint64_t mode = Rand(10);
    if (mode < 5) {
      off = Rand(size + 1);
    } else if (mode < 8) {
      off = size;
    } else {
      off = size + 1 + Rand(kMiB);  // leaves a hole
    }
    if (off + len > kMaxModelSize) off = Rand(std::min<uint64_t>(size, kMaxModelSize - len) + 1);
    std::string data = RandomData(len);
    Log("write fh " + std::to_string(h->fh) + " ino " + std::to_string(f->ino) + " at " +
        std::to_string(off) + " len " + std::to_string(len));
    WriteAll(h->fh, off, data);
    if (off > f->data.size()) f->data.resize(off, '\0');
    if (off + len > f->data.size()) f->data.resize(off + len);
    f->data.replace(off, len, data);
    CheckFile(f, off, len, false);
  }

  void DoTruncate() {
    std::shared_ptr<MFile> f;
    if (!handles_.empty() && Chance(0.3)) {
      f = handles_[Rand(handles_.size())].file;  // maybe unlinked: ftruncate
    } else {
      f = names_[RandomExisting()];
    }
    const uint64_t size = f->data.size();
    uint64_t n;
    const uint64_t mode = Rand(10);
    if (mode < 4) {
      n = Rand(size + 1);
    } else if (mode < 8) {
      n = std::min<uint64_t>(size + Rand(300 * kKiB), kMaxModelSize);
    } else {
      n = 0;
    }
    Log("truncate ino " + std::to_string(f->ino) + " from " + std::to_string(size) + " to " +
        std::to_string(n));
    SetAttrRequest req;
    req.set_size = true;
    req.size = n;
    Attr a = MUST(F()->SetAttr(f->ino, req));
    EXPECT_EQ(a.size, n);
    f->data.resize(n, '\0');
    CheckFile(f, n > 8 * kKiB ? n - 8 * kKiB : 0, 16 * kKiB, false);
  }

  void DoRename() {
    Path src = RandomExisting(), dst = RandomPath();
    auto sf = names_[src];
    auto dit = names_.find(dst);
    const bool exchange = dit != names_.end() && Chance(0.15);
    Log(std::string(exchange ? "exchange " : "rename ") + Name(src) + " -> " + Name(dst));
    Status s = F()->Rename(dirs_[src.first], src.second, dirs_[dst.first], dst.second,
                          exchange ? kRenameExchange : 0);
    ASSERT_OK(s);
    if (exchange) {
      std::swap(names_[src], names_[dst]);
    } else if (dit != names_.end() && dit->second == sf) {
      // Same inode (the same name or a hard link to it): nothing happens.
    } else {
      if (dit != names_.end()) dit->second->nlink--;
      names_[dst] = sf;
      names_.erase(src);
    }
    EXPECT_CODE(F()->Lookup(dirs_[src.first], src.second),
                names_.count(src) ? Code::kOk : Code::kNotFound);
    for (auto& [p, f] : names_) {
      if (p == src || p == dst) CheckFile(f, 0, 0, false);
    }
    if (dit != names_.end() && !exchange && dit->second != sf) {
      CheckFileIfAlive(dit->second);
    }
  }

  void DoLink() {
    Path src = RandomExisting(), dst = RandomPath();
    auto f = names_[src];
    Log("link " + Name(src) + " -> " + Name(dst));
    auto r = F()->Link(f->ino, dirs_[dst.first], dst.second);
    if (names_.count(dst)) {
      EXPECT_CODE(r, Code::kAlreadyExists);
      return;
    }
    ASSERT_OK(r);
    f->nlink++;
    EXPECT_EQ(r->nlink, f->nlink);
    names_[dst] = f;
    CheckFile(f, 0, 0, false);
  }

  void DoUnlink() {
    Path p = RandomExisting();
    auto f = names_[p];
    Log("unlink " + Name(p) + " (ino " + std::to_string(f->ino) + ")");
    ASSERT_OK(F()->Unlink(dirs_[p.first], p.second));
    names_.erase(p);
    f->nlink--;
    EXPECT_CODE(F()->Lookup(dirs_[p.first], p.second), Code::kNotFound);
    CheckFileIfAlive(f);
  }

  // A file that lost a link: still there if linked or open, gone otherwise.
  void CheckFileIfAlive(const std::shared_ptr<MFile>& f) {
    bool open = false;
    for (auto& h : handles_) open |= h.file == f;
    if (f->nlink > 0 || open) {
      CheckFile(f, 0, 0, false);
    } else {
      EXPECT_CODE(F()->GetAttr(f->ino), Code::kNotFound) << "ino " << f->ino << " leaked";
    }
  }

  void DoClone() {
    OpenH* src = AnyHandle();
    if (!src) return;
    FileHandle sfh = src->fh;
    auto sf = src->file;
    OpenH* dst = AnyHandle();  // may reallocate handles_ or close src: look it up again
    if (!dst || dst->file == sf) return;
    bool src_open = false;
    for (auto& h : handles_) src_open |= h.fh == sfh;
    if (!src_open) return;
    auto df = dst->file;
    const uint64_t ssize = sf->data.size(), dsize = df->data.size();
    uint64_t soff = Chance(0.1) ? ssize + Rand(1000) : Rand(ssize + 1);
    uint64_t n = LogSize(kMiB);
    uint64_t doff = Chance(0.5) ? Rand(dsize + 1) : dsize + Rand(100 * kKiB);
    if (doff + n > kMaxModelSize) {
      doff = Rand(std::min<uint64_t>(dsize, kMaxModelSize - n) + 1);
    }
    const uint64_t want = soff >= ssize ? 0 : std::min<uint64_t>(n, ssize - soff);
    Log("clone ino " + std::to_string(sf->ino) + " [" + std::to_string(soff) + ", +" +
        std::to_string(n) + ") -> ino " + std::to_string(df->ino) + " at " + std::to_string(doff) +
        " (expect " + std::to_string(want) + ")");
    uint64_t got = MUST(F()->CloneRange(sfh, soff, dst->fh, doff, n));
    EXPECT_EQ(got, want);
    if (want > 0) {
      std::string piece = sf->data.substr(soff, want);
      if (doff + want > df->data.size()) df->data.resize(doff + want, '\0');
      df->data.replace(doff, want, piece);
    }
    CheckFile(df, doff, want, false);
  }

  void DoFsync() {
    if (handles_.empty()) return;
    OpenH& h = handles_[Rand(handles_.size())];
    const bool datasync = Chance(0.5);
    Log("fsync fh " + std::to_string(h.fh) + (datasync ? " (datasync)" : ""));
    EXPECT_OK(F()->Fsync(h.fh, datasync));
    CheckFile(h.file, 0, 0, false);
  }

  Filesystem* F() { return other_ ? other_ : &t_.fs(); }
  void WriteAll(FileHandle fh, uint64_t offset, std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      size_t n = MUST(F()->Write(fh, offset + done, data.data() + done, data.size() - done));
      ASSERT_GT(n, 0u) << "Write returned 0";
      done += n;
    }
  }
  std::string ReadAt(FileHandle fh, uint64_t offset, size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      size_t r = MUST(F()->Read(fh, offset + got, n - got, out.data() + got));
      if (r == 0) break;
      got += r;
    }
    out.resize(got);
    return out;
  }
  std::vector<DirEntry> List(uint64_t dir) {
    std::vector<DirEntry> v;
    MUST(F()->ReadDir(dir, 0, [&](const DirEntry& e) {
      if (e.name != "." && e.name != "..") v.push_back(e);
      return true;
    }));
    return v;
  }

  test::TestFs& t_;
  Filesystem* other_;
  std::mt19937_64 rng_;
  std::vector<uint64_t> dirs_;
  std::map<Path, std::shared_ptr<MFile>> names_;
  std::vector<OpenH> handles_;
  std::deque<std::string> log_;
  std::map<std::string, int> counts_;
  int step_ = 0;
  const bool concurrent_;
};

// Runs every model's steps at once, one thread each (no reopen: the store is shared).
void RunEachOnItsOwnThread(const std::vector<std::unique_ptr<Differential>>& diffs, int steps) {
  std::vector<std::thread> workers;
  for (auto& d : diffs) {
    workers.emplace_back([&d, steps] {
      try {
        d->Run(steps, /*reopen_every=*/0);
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& w : workers) w.join();
}

// The end of every run: everything must survive a reopen, GC must free only garbage, and
// every chunk must still hash to its id.
void Finish(test::TestFs& t, const std::vector<Differential*>& diffs) {
  uint64_t logical = 0;
  for (auto* d : diffs) {
    d->ReleaseAll();
    logical += d->LogicalBytes();
  }
  t.Reopen();
  for (auto* d : diffs) d->CompareAll(/*fsck=*/false);
  if (::testing::Test::HasFailure()) return;
  FsckReport before = t.Check();
  EXPECT_FSCK_OK(before);
  EXPECT_EQ(before.logical_bytes, logical);
  MUST(RunGc(t.store()));
  FsckReport after = t.Check(/*verify_data=*/true);
  EXPECT_FSCK_OK(after);
  EXPECT_EQ(after.garbage_chunks, 0u);
  EXPECT_EQ(after.logical_bytes, logical);
  for (auto* d : diffs) d->CompareAll(/*fsck=*/false);
  t.Reopen();
  for (auto* d : diffs) d->CompareAll(/*fsck=*/true);
}

TEST(DifferentialTest, LocalBackendRandomOps) {
  const uint64_t seed = SeedFor(0);
  std::cout << "[ seed     ] SNAPFS_DIFF_SEED=" << seed << std::endl;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  test::TestFs t;
  Differential diff(t, seed);
  diff.Run(/*steps=*/2500, /*reopen_every=*/700);
  Finish(t, {&diff});
}

TEST(DifferentialTest, MemoryBackendVerifyDedupRandomOps) {
  const uint64_t seed = SeedFor(1);
  std::cout << "[ seed     ] SNAPFS_DIFF_SEED=" << seed - 1 << " (+1)" << std::endl;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  test::TestFsOptions o;
  o.memory_backend = true;
  o.verify_dedup = true;
  test::TestFs t(o);
  Differential diff(t, seed);
  diff.Run(/*steps=*/1000, /*reopen_every=*/400);
  Finish(t, {&diff});
}

// The same workload with the metadata in the memory engine: nothing in the namespace,
// data path or snapshots may depend on which engine holds the metadata.
TEST(DifferentialTest, MemoryEngineRandomOps) {
  const uint64_t seed = SeedFor(4);
  std::cout << "[ seed     ] SNAPFS_DIFF_SEED=" << seed - 4 << " (+4)" << std::endl;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  test::TestFs t(test::TestFsOptions{.memory_backend = true, .memory_engine = true});
  Differential diff(t, seed);
  diff.Run(/*steps=*/1500, /*reopen_every=*/500);
  Finish(t, {&diff});
}

// Several threads, each with its own model over its own folder, plus GC and a reader, all
// on one Filesystem: the engine's thread-safety claims under the same checks.
void RunConcurrentThreadsWithGc(uint64_t seed, const test::TestFsOptions& opts) {
  test::TestFs t(opts);
  constexpr int kThreads = 4;
  std::vector<std::unique_ptr<Differential>> diffs;
  for (int i = 0; i < kThreads; i++) {
    uint64_t base = t.Mkdir(kRootIno, "t" + std::to_string(i));
    diffs.push_back(std::make_unique<Differential>(t, seed * 131 + i, base, true));
  }
  std::atomic<bool> stop{false};
  std::thread gc([&] {
    GcOptions o;
    o.rewrite_below_live_fraction = 0.99;
    while (!stop) {
      EXPECT_OK(RunGc(t.store(), o));
      MUST(t->ReadDir(kRootIno, 0, [](const DirEntry&) { return true; }));
      MUST(t->StatFs());
    }
  });
  RunEachOnItsOwnThread(diffs, /*steps=*/400);
  stop = true;
  gc.join();
  std::vector<Differential*> all;
  for (auto& d : diffs) all.push_back(d.get());
  Finish(t, all);
}

TEST(DifferentialTest, ConcurrentThreadsWithGc) {
  const uint64_t seed = SeedFor(2);
  std::cout << "[ seed     ] SNAPFS_DIFF_SEED=" << seed - 2 << " (+2)" << std::endl;
  RunConcurrentThreadsWithGc(seed, {});
}

// Two Filesystems on one store, as two daemons would be (each with its own ns_mu_ and
// open files; only the engine's transactions are common), each running two models in
// their own folders concurrently, plus GC: every model matches and fsck is clean. The
// proof that correctness lives in the transactions, not in a mutex of ours.
TEST(DifferentialTest, TwoFilesystemsOnOneStoreConcurrently) {
  const uint64_t seed = SeedFor(6);
  std::cout << "[ seed     ] SNAPFS_DIFF_SEED=" << seed - 6 << " (+6)" << std::endl;
  test::TestFs t;
  auto other = MUST(Filesystem::Open(&t.store()));
  std::vector<std::unique_ptr<Differential>> diffs;
  for (int i = 0; i < 4; i++) {
    Filesystem* fs = i % 2 ? other.get() : nullptr;
    uint64_t base = MUST((fs ? *fs : t.fs()).Mkdir(kRootIno, "h" + std::to_string(i), 0755,
                                                   t.who())).ino;
    diffs.push_back(std::make_unique<Differential>(t, seed * 131 + i, base, true, fs));
  }
  std::atomic<bool> stop{false};
  std::thread gc([&] {
    while (!stop) EXPECT_OK(RunGc(t.store()));
  });
  RunEachOnItsOwnThread(diffs, /*steps=*/400);
  stop = true;
  gc.join();
  std::vector<Differential*> all;
  for (auto& d : diffs) {
    d->ReleaseAll();
    d->UseOwnFilesystem();
    all.push_back(d.get());
  }
  other.reset();  // before Finish reopens the store
  Finish(t, all);
}

TEST(DifferentialTest, MemoryEngineConcurrentThreadsWithGc) {
  const uint64_t seed = SeedFor(5);
  std::cout << "[ seed     ] SNAPFS_DIFF_SEED=" << seed - 5 << " (+5)" << std::endl;
  RunConcurrentThreadsWithGc(seed, {.memory_backend = true, .memory_engine = true});
}

// Two files with the same bytes X; threads clone ranges between them in both directions
// (the two inode locks taken in opposite orders), write X's own bytes back, read, fsync
// and flush through several handles. Whatever the interleaving, both files stay X.
TEST(DifferentialTest, ConcurrentClonesBothWaysKeepContent) {
  test::TestFs t;
  const std::string x = test::RandomBytes(2 * kMiB, SeedFor(3));
  const uint64_t a = t.WriteFile(kRootIno, "a", x), b = t.WriteFile(kRootIno, "b", x);
  std::atomic<int> done{0};
  auto worker = [&](int id) {
    std::mt19937_64 rng(SeedFor(10 + id));
    FileHandle ha = MUST(t->Open(a, O_RDWR)), hb = MUST(t->Open(b, O_RDWR));
    for (int i = 0; i < 150 && !::testing::Test::HasFailure(); i++) {
      const uint64_t off = rng() % x.size(), n = 1 + rng() % (300 * kKiB);
      const size_t len = std::min<uint64_t>(n, x.size() - off);
      switch (rng() % 5) {
        case 0:
          EXPECT_EQ(MUST(t->CloneRange(ha, off, hb, off, n)), len);
          break;
        case 1:
          EXPECT_EQ(MUST(t->CloneRange(hb, off, ha, off, n)), len);
          break;
        case 2:
          t.WriteAll(id % 2 ? ha : hb, off, std::string_view(x).substr(off, len));
          break;
        case 3:
          EXPECT_TRUE(t.ReadAt(id % 2 ? hb : ha, off, len) == x.substr(off, len))
              << "thread " << id << " read at " << off;
          break;
        default:
          EXPECT_OK(rng() % 2 ? t->Fsync(ha, false) : t->Flush(hb));
      }
    }
    EXPECT_OK(t->Release(ha));
    EXPECT_OK(t->Release(hb));
    done++;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; i++) threads.emplace_back(worker, i);
  for (int waited = 0; done < 4 && waited < 120000; waited += 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (done < 4) {
    std::fprintf(stderr, "clones in both directions hang (lock order?)\n");
    std::abort();
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(t.ReadAll(a) == x);
  EXPECT_TRUE(t.ReadAll(b) == x);
  t.Reopen();
  EXPECT_TRUE(t.ReadAll(a) == x);
  EXPECT_TRUE(t.ReadAll(b) == x);
  MUST(RunGc(t.store()));
  FsckReport r = t.Check(true);
  EXPECT_FSCK_OK(r);
  EXPECT_EQ(r.garbage_chunks, 0u);
  EXPECT_LE(r.stored_bytes, x.size() + 512 * kKiB) << "both files share X's chunks";
}

}  // namespace
}  // namespace snapfs
