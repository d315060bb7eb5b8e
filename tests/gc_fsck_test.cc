// GC and fsck over a real Filesystem: GC frees only garbage and keeps live bytes intact
// when it rewrites packs (also against writers that dedup against dying chunks), fsck
// notices broken refcounts, index entries, link counts and pack bytes, corrupt bytes are
// never returned by a read, and a kill -9 mid-way leaves closed files intact and the store
// consistent (DESIGN.md invariants 2, 3 and 6).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/coding.h"
#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "core/chunks/gc.h"
#include "core/fs/inode.h"
#include "core/meta/meta_store.h"
#include "tests/util/test_fs.h"

namespace snapfs {
namespace {

using test::kKiB;
using test::kMiB;
using test::RandomBytes;

// Every index entry: chunk id -> where its bytes are.
std::vector<std::pair<ChunkId, ChunkLocation>> IndexEntries(Store& store) {
  std::vector<std::pair<ChunkId, ChunkLocation>> out;
  auto it = store.meta().NewIterator(Cf::kChunks);
  for (it->Seek(""); it->Valid(); it->Next()) {
    out.emplace_back(ChunkId::FromBytes(it->key().data()),
                     MUST(ChunkLocation::Decode(it->value())));
  }
  return out;
}

// The local backend's file of a pack (backends/local_backend.cc: fan-out by id % 256).
std::string PackPath(const std::string& store_dir, PackId id) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "/packs/%02" PRIx64 "/%016" PRIx64 ".pack", id % 256, id);
  return store_dir + buf;
}

// Writes behind the Filesystem's back, as damage would.
Status Raw(Store& store, const std::function<void(kv::Txn&)>& write) {
  return kv::RunTxn(store.meta().engine(), [&](kv::Txn& t) {
    write(t);
    return Status::OK();
  });
}

void MergeRef(Store& store, const ChunkId& id, int64_t delta) {
  ASSERT_TRUE(Raw(store, [&](kv::Txn& t) { t.Add(Cf::kRefs, keys::Chunk(id), delta); }).ok());
}

class GcFsckTest : public ::testing::Test {
 protected:
  Filesystem& fs() { return t.fs(); }
  test::TestFs t;
};

// Filesystem operations that free or share chunks, checked through fsck and GC.
using FilesystemSpaceTest = GcFsckTest;

TEST_F(FilesystemSpaceTest, RenameOverExistingFileFreesItsData) {
  const std::string a = RandomBytes(200 * kKiB, 1), b = RandomBytes(200 * kKiB, 2);
  uint64_t ia = t.WriteFile(kRootIno, "a", a);
  uint64_t ib = t.WriteFile(kRootIno, "b", b);
  FsckReport r0 = t.Check();
  EXPECT_EQ(r0.garbage_chunks, 0u);
  EXPECT_OK(fs().Rename(kRootIno, "a", kRootIno, "b"));
  EXPECT_CODE(fs().Lookup(kRootIno, "a"), Code::kNotFound);
  EXPECT_EQ(t.InoOf(kRootIno, "b"), ia);
  EXPECT_CODE(fs().GetAttr(ib), Code::kNotFound);
  EXPECT_EQ(t.ReadAll(ia), a);
  FsckReport r1 = t.Check();
  EXPECT_FSCK_OK(r1);
  EXPECT_GT(r1.garbage_chunks, 0u) << "the replaced file's chunks have refcount 0";
  MUST(RunGc(t.store()));
  FsckReport r2 = t.Check(true);
  EXPECT_FSCK_OK(r2);
  EXPECT_EQ(r2.garbage_chunks, 0u);
  EXPECT_LT(r2.chunks, r1.chunks);
  EXPECT_LE(r2.stored_bytes + 190 * kKiB, r0.stored_bytes);
  EXPECT_EQ(t.ReadAll(ia), a);
}

TEST_F(FilesystemSpaceTest, OpenUnlinkedFileLivesUntilRelease) {
  std::string data = RandomBytes(300 * kKiB, 8);
  auto [a, fh] = t.New("f");
  t.WriteAll(fh, 0, data);
  EXPECT_OK(fs().Fsync(fh, false));
  EXPECT_OK(fs().Unlink(kRootIno, "f"));
  EXPECT_CODE(fs().Lookup(kRootIno, "f"), Code::kNotFound);
  EXPECT_EQ(t.Nlink(a.ino), 0u);
  EXPECT_TRUE(t.ReadFh(fh, a.ino) == data);
  const std::string more = RandomBytes(50 * kKiB, 9);
  t.WriteAll(fh, data.size(), more);
  data += more;
  EXPECT_OK(fs().Fsync(fh, false));
  EXPECT_TRUE(t.ReadFh(fh, a.ino) == data);
  EXPECT_TRUE(t.FsckClean());
  EXPECT_OK(fs().Release(fh));
  EXPECT_CODE(fs().GetAttr(a.ino), Code::kNotFound);
  FsckReport closed = t.Check();
  EXPECT_FSCK_OK(closed);
  EXPECT_GT(closed.garbage_chunks, 0u);
  MUST(RunGc(t.store()));
  FsckReport after = t.Check(true);
  EXPECT_FSCK_OK(after);
  EXPECT_EQ(std::tuple(after.garbage_chunks, after.chunks, after.extents), std::tuple(0u, 0u, 0u));
}

TEST_F(FilesystemSpaceTest, UnlinkedOpenFileIsPurgedAtNextOpen) {
  const std::string keep = RandomBytes(40 * kKiB, 10);
  uint64_t k = t.WriteFile(kRootIno, "keep", keep);
  auto [a, fh] = t.New("f");
  t.WriteAll(fh, 0, RandomBytes(200 * kKiB, 11));
  EXPECT_OK(fs().Fsync(fh, false));
  auto [b, fh2] = t.New("g");
  t.WriteAll(fh2, 0, RandomBytes(100 * kKiB, 12));  // dirty, never flushed
  EXPECT_OK(fs().Unlink(kRootIno, "f"));
  EXPECT_OK(fs().Unlink(kRootIno, "g"));
  t.Close();  // no Release: as if the process died with the files open
  t.Open();
  EXPECT_CODE(fs().GetAttr(a.ino), Code::kNotFound);
  EXPECT_CODE(fs().GetAttr(b.ino), Code::kNotFound);
  FsckReport r = t.Check();
  EXPECT_FSCK_OK(r);
  EXPECT_EQ(r.inodes, 2u) << "root and 'keep'";
  MUST(RunGc(t.store()));
  FsckReport g = t.Check(true);
  EXPECT_FSCK_OK(g);
  EXPECT_EQ(std::tuple(g.garbage_chunks, g.logical_bytes), std::tuple(0u, keep.size()));
  EXPECT_LE(g.stored_bytes, keep.size());
  EXPECT_EQ(t.ReadAll(k), keep);
}

TEST_F(FilesystemSpaceTest, CloneRangeSharesChunks) {
  const std::string data = RandomBytes(4 * kMiB, 13);
  uint64_t src = t.WriteFile(kRootIno, "src", data);
  FsckReport r0 = t.Check();
  const uint64_t new0 = t.store().chunks().stats().bytes_new;
  FileHandle sfh = MUST(fs().Open(src, O_RDONLY));
  auto [d, dfh] = t.New("dst");
  EXPECT_EQ(MUST(fs().CloneRange(sfh, 0, dfh, 0, 4 * kMiB)), 4 * kMiB);
  EXPECT_EQ(t.Stat(d.ino).size, 4 * kMiB);
  EXPECT_OK(fs().Release(dfh));
  EXPECT_OK(fs().Release(sfh));
  EXPECT_LE(t.store().chunks().stats().bytes_new - new0, 32 * kKiB);
  FsckReport r1 = t.Check();
  EXPECT_FSCK_OK(r1);
  EXPECT_LE(r1.chunks, r0.chunks + 2);
  EXPECT_LE(r1.stored_bytes, r0.stored_bytes + 32 * kKiB);
  EXPECT_EQ(r1.logical_bytes, 8 * kMiB);
  EXPECT_TRUE(t.ReadAll(d.ino) == data);
  // Deleting the source leaves the clone intact and frees nothing it uses.
  EXPECT_OK(fs().Unlink(kRootIno, "src"));
  MUST(RunGc(t.store()));
  t.Reopen();
  EXPECT_TRUE(t.ReadAll(d.ino) == data);
  EXPECT_TRUE(t.FsckClean(true));
}

TEST_F(GcFsckTest, GcReclaimsGarbageAndKeepsLiveFiles) {
  const std::string keep = RandomBytes(kMiB, 1);
  uint64_t k = t.WriteFile(kRootIno, "keep", keep);
  for (int i = 0; i < 9; i++)
    t.WriteFile(kRootIno, "tmp" + std::to_string(i), RandomBytes(kMiB, 10 + i));
  t.Reopen();  // seals the pack: GC never rewrites the pack being appended to
  for (int i = 0; i < 9; i++) ASSERT_OK(fs().Unlink(kRootIno, "tmp" + std::to_string(i)));
  FsckReport r0 = t.Check();
  EXPECT_FSCK_OK(r0);
  EXPECT_GT(r0.garbage_chunks, 0u);
  const uint64_t bytes0 = t.PackBytes();
  GcResult g = MUST(RunGc(t.store()));
  EXPECT_GT(g.chunks_deleted, 0u);
  EXPECT_GE(g.packs_removed, 1u);
  EXPECT_GT(g.bytes_freed, 8 * kMiB);
  EXPECT_LT(t.PackBytes() + 8 * kMiB, bytes0) << "the backend must actually shrink";
  FsckReport r1 = t.Check(true);
  EXPECT_FSCK_OK(r1);
  EXPECT_EQ(r1.garbage_chunks, 0u);
  EXPECT_LE(r1.stored_bytes, keep.size());
  EXPECT_EQ(t.ReadAll(k), keep);
  t.Reopen();  // no chunk cache: the bytes come from the new pack
  EXPECT_EQ(t.ReadAll(k), keep);
  FsckReport r2 = t.Check(true);
  EXPECT_FSCK_OK(r2);
}

TEST_F(GcFsckTest, PackRewriteKeepsLiveBytes) {
  std::map<uint64_t, std::string> live;
  for (int i = 0; i < 6; i++) {
    std::string data = RandomBytes(512 * kKiB, 100 + i);
    uint64_t ino = t.WriteFile(kRootIno, "f" + std::to_string(i), data);
    if (i % 2 == 0) live[ino] = data;
  }
  t.Reopen();
  for (int i = 1; i < 6; i += 2) ASSERT_OK(fs().Unlink(kRootIno, "f" + std::to_string(i)));
  GcOptions o;
  o.rewrite_below_live_fraction = 0.99;
  GcPlan plan = MUST(PlanGc(t.store(), o));
  EXPECT_FALSE(plan.dead_chunks.empty());
  ASSERT_FALSE(plan.rewrite.empty()) << "a half-dead sealed pack must be rewritten at 0.99";
  EXPECT_GT(plan.bytes_to_copy, 1 * kMiB);
  GcResult g = MUST(ExecuteGc(t.store(), plan));
  EXPECT_EQ(g.packs_removed, plan.rewrite.size());
  EXPECT_GE(g.bytes_copied, 1 * kMiB);
  auto packs = MUST(t.store().backend().List());
  for (const auto& p : plan.rewrite) {
    for (const auto& q : packs) EXPECT_NE(q.id, p.id) << "rewritten pack still there";
  }
  for (auto& [ino, data] : live) EXPECT_EQ(t.ReadAll(ino), data);
  t.Reopen();
  for (auto& [ino, data] : live) EXPECT_EQ(t.ReadAll(ino), data);
  FsckReport r = t.Check(true);
  EXPECT_FSCK_OK(r);
  EXPECT_EQ(r.garbage_chunks, 0u);
}

// fsck reads one snapshot of the index, so GC in the same process (a daemon's periodic
// GC, a `snapfs gc` sent to it) must not remove or rewrite packs meanwhile: it waits
// while fsck (HoldOffGc) runs, and does its work after.
TEST_F(GcFsckTest, GcWaitsWhileFsckHoldsItOff) {
  for (int i = 0; i < 4; i++) t.WriteFile(kRootIno, "f" + std::to_string(i), RandomBytes(300 * kKiB, 300 + i));
  t.Reopen();
  ASSERT_OK(fs().Unlink(kRootIno, "f1"));
  ASSERT_OK(fs().Unlink(kRootIno, "f3"));
  GcOptions o;
  o.rewrite_below_live_fraction = 0.99;
  GcPlan plan = MUST(PlanGc(t.store(), o));
  std::atomic<bool> done{false};
  GcResult result;
  std::thread gc;
  {
    auto off = HoldOffGc();
    gc = std::thread([&] {
      result = MUST(ExecuteGc(t.store(), plan));
      done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(done.load()) << "GC ran while fsck held it off";
  }
  gc.join();
  EXPECT_TRUE(done.load());
  EXPECT_GT(result.chunks_deleted, 0u);
  auto r = MUST(Fsck(t.store(), FsckOptions{.verify_data = true}));
  for (const auto& p : r.problems) ADD_FAILURE() << p;
}

TEST_F(GcFsckTest, GcTwiceIsIdempotent) {
  std::map<uint64_t, std::string> live;
  for (int i = 0; i < 4; i++) {
    std::string data = RandomBytes(300 * kKiB, 200 + i);
    uint64_t ino = t.WriteFile(kRootIno, "f" + std::to_string(i), data);
    if (i < 2) live[ino] = data;
  }
  t.Reopen();
  ASSERT_OK(fs().Unlink(kRootIno, "f2"));
  ASSERT_OK(fs().Unlink(kRootIno, "f3"));
  GcOptions o;
  o.rewrite_below_live_fraction = 0.99;
  GcPlan p1 = MUST(PlanGc(t.store(), o));
  GcResult g1 = MUST(ExecuteGc(t.store(), p1));
  EXPECT_GT(g1.chunks_deleted, 0u);
  GcPlan p2 = MUST(PlanGc(t.store(), o));
  EXPECT_TRUE(p2.dead_chunks.empty());
  EXPECT_TRUE(p2.rewrite.empty());
  GcResult g2 = MUST(ExecuteGc(t.store(), p2));
  EXPECT_EQ(g2.chunks_deleted, 0u);
  EXPECT_EQ(g2.packs_removed, 0u);
  GcResult g3 = MUST(RunGc(t.store(), o));
  EXPECT_EQ(g3.chunks_deleted, 0u);
  EXPECT_EQ(g3.bytes_copied, 0u);
  // Executing the first plan again (as after a crash and a retry) must not hurt live data.
  Status again = ExecuteGc(t.store(), p1).status();
  for (auto& [ino, data] : live) EXPECT_EQ(t.ReadAll(ino), data);
  t.Reopen();
  for (auto& [ino, data] : live) EXPECT_EQ(t.ReadAll(ino), data);
  FsckReport r = t.Check(true);
  EXPECT_FSCK_OK(r);
  // A stale plan names packs that are gone: executing it again does nothing, and works.
  EXPECT_TRUE(again.ok()) << again.ToString();
}

// A plan lists chunks as dead; before it executes, a new file brings the same bytes back
// (dedup against the dying chunks). The new file must stay readable.
class GcReviveTest : public GcFsckTest, public ::testing::WithParamInterface<int> {};

TEST_P(GcReviveTest, WriteBetweenPlanAndExecute) {
  enum { kReleased, kFsyncedOpen, kUnflushed };
  const int mode = GetParam();
  const std::string data = RandomBytes(512 * kKiB, 300);
  const std::string other = RandomBytes(128 * kKiB, 301);
  uint64_t o = t.WriteFile(kRootIno, "other", other);
  t.WriteFile(kRootIno, "a", data);
  t.Reopen();
  ASSERT_OK(fs().Unlink(kRootIno, "a"));
  GcOptions opts;
  opts.rewrite_below_live_fraction = 0.99;
  GcPlan plan = MUST(PlanGc(t.store(), opts));
  ASSERT_FALSE(plan.dead_chunks.empty());
  const uint64_t new0 = t.store().chunks().stats().bytes_new;
  auto [b, fh] = MUST(fs().Create(kRootIno, "b", 0644, O_RDWR | O_CREAT, t.who()));
  t.WriteAll(fh, 0, data);
  if (mode == kReleased) {
    ASSERT_OK(fs().Release(fh));
  } else if (mode == kFsyncedOpen) {
    ASSERT_OK(fs().Fsync(fh, false));
  }
  if (mode != kUnflushed) {
    EXPECT_LE(t.store().chunks().stats().bytes_new - new0, 16 * kKiB) << "should dedup";
  }
  MUST(ExecuteGc(t.store(), plan));
  if (mode != kReleased) {
    EXPECT_TRUE(t.ReadFh(fh, b.ino) == data);
    ASSERT_OK(fs().Release(fh));
  }
  EXPECT_TRUE(t.ReadAll(b.ino) == data);
  t.Reopen();  // empty chunk cache: every byte comes from a pack
  EXPECT_TRUE(t.ReadAll(b.ino) == data);
  EXPECT_EQ(t.ReadAll(o), other);
  FsckReport r = t.Check(true);
  EXPECT_FSCK_OK(r);
  MUST(RunGc(t.store(), opts));
  t.Reopen();
  EXPECT_TRUE(t.ReadAll(b.ino) == data);
  FsckReport r2 = t.Check(true);
  EXPECT_FSCK_OK(r2);
  EXPECT_EQ(r2.garbage_chunks, 0u);
}

INSTANTIATE_TEST_SUITE_P(Gc, GcReviveTest, ::testing::Values(0, 1, 2));

// Writers keep re-creating files from a few blobs (deduping against chunks that are dying)
// while GC runs in a loop; afterwards every file holds its blob.
TEST_F(GcFsckTest, GcConcurrentWithDedupingWriters) {
  std::vector<std::string> blobs;
  for (int i = 0; i < 4; i++) blobs.push_back(RandomBytes(200 * kKiB, 400 + i));
  std::map<std::string, int> model;  // name -> blob
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 4; i++) {
      t.WriteFile(kRootIno, "seed" + std::to_string(i), blobs[(i + round) % 4]);
      model["seed" + std::to_string(i)] = (i + round) % 4;
    }
    t.Reopen();  // seal what we have, so GC has packs to rewrite
    std::atomic<bool> stop{false};
    std::atomic<int> gc_runs{0};
    std::thread gc([&] {
      GcOptions o;
      o.rewrite_below_live_fraction = 0.99;
      while (!stop) {
        auto r = RunGc(t.store(), o);
        EXPECT_OK(r);
        gc_runs++;
      }
    });
    std::mt19937_64 rng(round);
    try {
      for (int i = 0; i < 150; i++) {
        std::string name = "w" + std::to_string(rng() % 6);
        if (rng() % 5 == 0 && model.count(name)) {
          EXPECT_OK(fs().Unlink(kRootIno, name));
          model.erase(name);
          continue;
        }
        int k = static_cast<int>(rng() % blobs.size());
        t.WriteFile(kRootIno, name, blobs[k]);
        model[name] = k;
        if (i % 10 == 0) {
          std::string s = "seed" + std::to_string(rng() % 4);
          EXPECT_OK(fs().Unlink(kRootIno, s));  // make more garbage
          t.WriteFile(kRootIno, s, blobs[(k + 1) % 4]);
          model[s] = (k + 1) % 4;
        }
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "writer: " << e.what();  // stop GC before failing
    }
    stop = true;
    gc.join();
    EXPECT_GT(gc_runs.load(), 0);
    for (auto& [name, k] : model) {
      EXPECT_TRUE(t.ReadAll(t.InoOf(kRootIno, name)) == blobs[k]) << name << " round " << round;
    }
  }
  t.Reopen();
  for (auto& [name, k] : model) EXPECT_TRUE(t.ReadAll(t.InoOf(kRootIno, name)) == blobs[k]);
  MUST(RunGc(t.store()));
  FsckReport r = t.Check(true);
  EXPECT_FSCK_OK(r);
  EXPECT_EQ(r.garbage_chunks, 0u);
}

// ---- kill -9 (DESIGN.md invariants 2, 3, 5) ----
// A child process (this binary, see KillChildHook) writes files, runs GC in a loop and
// keeps an unlinked file open, logging each file it closed to a progress file; the parent
// kills it with SIGKILL mid-way and checks what it finds.

std::string ChildData(int i) {
  const uint64_t seed = i % 5 == 0 ? 5 : static_cast<uint64_t>(i);  // every 5th: same bytes
  return RandomBytes(20 * kKiB + (seed * 7919) % (300 * kKiB), seed);
}

// The child's whole life; it ends by SIGKILL (or, on an error, by exit code 3).
[[noreturn]] void KillChildMain(const char* dir) {
  try {
    auto store = MUST(Store::Open(dir));
    auto fs = MUST(Filesystem::Open(store.get()));
    int prog =
        ::open((std::string(dir) + ".progress").c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (prog < 0) throw std::runtime_error("open progress file");
    std::thread([&] {
      GcOptions o;
      o.rewrite_below_live_fraction = 0.99;
      for (;;) (void)RunGc(*store, o);  // until killed
    }).detach();
    const Caller who{1, 1};
    const int flags = O_RDWR | O_CREAT | O_EXCL;
    auto [sa, sfh] = MUST(fs->Create(kRootIno, "scratch", 0644, flags, who));
    const std::string scratch = RandomBytes(200 * kKiB, 77);
    MUST(fs->Write(sfh, 0, scratch.data(), 100 * kKiB));
    MUST(fs->Fsync(sfh, false));
    MUST(fs->Unlink(kRootIno, "scratch"));
    MUST(fs->Write(sfh, 100 * kKiB, scratch.data() + 100 * kKiB, 100 * kKiB));  // buffered
    for (int i = 0;; i++) {
      const std::string data = ChildData(i);
      auto [a, fh] = MUST(fs->Create(kRootIno, "f" + std::to_string(i), 0644, flags, who));
      for (size_t off = 0; off < data.size(); off += 64 * kKiB) {
        MUST(fs->Write(fh, off, data.data() + off, std::min(64 * kKiB, data.size() - off)));
      }
      if (i % 2 == 0) MUST(fs->Fsync(fh, false));
      MUST(fs->Release(fh));
      std::string line = "w " + std::to_string(i) + "\n";
      if (i % 4 == 3) {
        MUST(fs->Unlink(kRootIno, "f" + std::to_string(i - 2)));
        line += "u " + std::to_string(i - 2) + "\n";
      }
      if (::write(prog, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        throw std::runtime_error("write progress file");
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kill -9 child: %s\n", e.what());
  }
  std::_Exit(3);
}

// This binary started as the child (by the test below) runs KillChildMain before main().
constexpr char kKillChildEnv[] = "SNAPFS_KILL_CHILD_STORE";
struct KillChildHook {
  KillChildHook() {
    if (const char* dir = std::getenv(kKillChildEnv)) KillChildMain(dir);
  }
} kill_child_hook;

TEST_F(GcFsckTest, KillDashNineKeepsClosedFilesAndConsistency) {
  const std::string dir = t.dir(), progress = dir + ".progress";
  t.Close();
  ::setenv(kKillChildEnv, dir.c_str(), 1);
  char arg0[] = "/proc/self/exe";
  char* argv[] = {arg0, nullptr};
  const std::string log = dir + ".child.log";  // the child's output, shown on failure
  posix_spawn_file_actions_t io;
  posix_spawn_file_actions_init(&io);
  posix_spawn_file_actions_addopen(&io, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&io, 1, 2);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, "/proc/self/exe", &io, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&io);
  ::unsetenv(kKillChildEnv);
  auto child_log = [&] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto read_progress = [&] {
    std::ifstream in(progress);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  for (int waited = 0; waited < 30000; waited += 10) {  // until 40 files were closed
    std::string p = read_progress();
    if (std::count(p.begin(), p.end(), 'w') >= 40) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child ended by itself:\n" << child_log();
  std::set<int> written, unlinked;
  std::istringstream lines(read_progress());
  for (std::string op; lines >> op;) {
    int i;
    lines >> i;
    (op == "w" ? written : unlinked).insert(i);
  }
  ASSERT_GE(written.size(), 40u) << child_log();
  t.Open();  // purges the unlinked-but-open scratch file
  auto check = [&] {
    for (int i : written) {
      if (unlinked.count(i)) {
        EXPECT_CODE(fs().Lookup(kRootIno, "f" + std::to_string(i)), Code::kNotFound) << i;
      } else {
        EXPECT_TRUE(t.ReadAll(t.InoOf(kRootIno, "f" + std::to_string(i))) == ChildData(i)) << i;
      }
    }
    auto names = t.List(kRootIno);
    for (const auto& e : names) {
      const int i = std::atoi(e.name.c_str() + 1);
      EXPECT_TRUE(e.name[0] == 'f' && (written.count(i) || i == *written.rbegin() + 1)) << e.name;
    }
    FsckReport r = t.Check(true);
    EXPECT_FSCK_OK(r);
    EXPECT_EQ(r.inodes, names.size() + 1) << "an orphan survived the restart";
  };
  check();
  MUST(RunGc(t.store()));
  FsckReport g = t.Check(true);
  EXPECT_FSCK_OK(g);
  EXPECT_EQ(g.garbage_chunks, 0u);
  t.Reopen();
  check();
}

TEST_F(GcFsckTest, FsckDetectsWrongRefcounts) {
  t.WriteFile(kRootIno, "f", RandomBytes(64 * kKiB, 500));
  FsckReport r0 = t.Check();
  ASSERT_FSCK_OK(r0);
  auto index = IndexEntries(t.store());
  ASSERT_FALSE(index.empty());
  const ChunkId id = index[index.size() / 2].first;
  MergeRef(t.store(), id, +1);  // one more than the extents
  EXPECT_FALSE(t.Check().ok()) << "refcount too high not detected";
  MergeRef(t.store(), id, -2);  // one fewer: GC could free a live chunk
  FsckReport low = t.Check();
  EXPECT_FALSE(low.ok()) << "refcount too low not detected";
  MergeRef(t.store(), id, +1);
  FsckReport back = t.Check();
  EXPECT_FSCK_OK(back);
  // A refcount for a chunk that no extent uses and the index does not know.
  std::string fake(ChunkId::kSize, '\x5a');
  MergeRef(t.store(), ChunkId::FromBytes(fake.data()), +1);
  EXPECT_FALSE(t.Check().ok()) << "stray refcount not detected";
}

// An indexed chunk nothing references is reclaimed only through its garbage marker;
// fsck counts such chunks and names one without a marker (leaked). It finds them by
// merging the sorted index, refcounts and markers (no read per chunk): unreferenced
// chunks before, between and after the referenced ones are all found.
TEST_F(GcFsckTest, FsckCountsUnreferencedChunksAndNamesOnesNotMarkedForGc) {
  t.WriteFile(kRootIno, "keep", RandomBytes(256 * kKiB, 700));
  t.WriteFile(kRootIno, "drop", RandomBytes(256 * kKiB, 701));
  const size_t all = IndexEntries(t.store()).size();
  ASSERT_OK(fs().Unlink(kRootIno, "drop"));
  FsckReport r = t.Check();
  ASSERT_FSCK_OK(r);
  ASSERT_GT(r.garbage_chunks, 1u);
  ASSERT_LT(r.garbage_chunks, all);
  // Take the marker of every unreferenced chunk away: each is now leaked.
  std::vector<ChunkId> garbage;
  {
    auto it = t.store().meta().NewIterator(Cf::kGarbage);
    for (it->Seek(""); it->Valid(); it->Next()) garbage.push_back(ChunkId::FromBytes(it->key().data()));
  }
  ASSERT_EQ(garbage.size(), r.garbage_chunks);
  ASSERT_TRUE(Raw(t.store(), [&](kv::Txn& x) {
                for (const auto& id : garbage) x.Delete(Cf::kGarbage, keys::Chunk(id));
              }).ok());
  FsckReport leaked = t.Check();
  EXPECT_EQ(leaked.garbage_chunks, r.garbage_chunks);
  size_t named = 0;
  for (const auto& p : leaked.problems) named += p.find("not marked for GC (leaked)") != p.npos;
  EXPECT_EQ(named, garbage.size());
}

TEST_F(GcFsckTest, FsckDetectsMissingIndexEntryAndReadFails) {
  const std::string data = RandomBytes(64 * kKiB, 600);
  uint64_t f = t.WriteFile(kRootIno, "f", data);
  auto index = IndexEntries(t.store());
  ASSERT_GE(index.size(), 2u);
  ASSERT_TRUE(Raw(t.store(), [&](kv::Txn& x) {
                x.Delete(Cf::kChunks, keys::Chunk(index[1].first));
              }).ok());
  EXPECT_FALSE(t.Check().ok());
  t.Reopen();
  FileHandle fh = MUST(fs().Open(f, O_RDONLY));
  std::string buf(data.size(), '\0');
  size_t got = 0;
  Status err;
  while (got < data.size()) {
    auto r = fs().Read(fh, got, data.size() - got, buf.data() + got);
    if (!r.ok()) {
      err = r.status();
      break;
    }
    if (*r == 0) break;
    got += *r;
  }
  EXPECT_FALSE(err.ok()) << "a read over a chunk missing from the index must fail";
  EXPECT_EQ(buf.substr(0, got), data.substr(0, got)) << "never wrong bytes";
  EXPECT_OK(fs().Release(fh));
}

// The extents are checked against the lengths the scan of the index collected (not a
// point read each: docs/reliability.md, "Scale"); a wrong length is still named, and a
// missing entry (the test above) still is.
TEST_F(GcFsckTest, FsckDetectsAnIndexEntryWhoseLengthDiffersFromItsExtents) {
  t.WriteFile(kRootIno, "f", RandomBytes(64 * kKiB, 601));
  auto index = IndexEntries(t.store());
  ASSERT_GE(index.size(), 2u);
  ChunkLocation loc = index[1].second;
  loc.length += 1;
  ASSERT_TRUE(Raw(t.store(), [&](kv::Txn& x) {
                x.Put(Cf::kChunks, keys::Chunk(index[1].first), loc.Encode());
              }).ok());
  FsckReport r = t.Check();
  int named = 0;
  for (const auto& p : r.problems) named += p.find("extent length differs from chunk") != p.npos;
  EXPECT_EQ(named, 1) << "the one extent of that chunk";
  EXPECT_FALSE(r.ok());
}

TEST_F(GcFsckTest, FsckDetectsWrongLinkCount) {
  uint64_t f = t.WriteFile(kRootIno, "f", "x");
  std::string v;
  ASSERT_OK(t.store().meta().Get(Cf::kInodes, keys::Ino(f), &v));
  Inode node = MUST(Inode::Decode(f, v));
  node.nlink = 2;
  ASSERT_TRUE(
      Raw(t.store(), [&](kv::Txn& x) { x.Put(Cf::kInodes, keys::Ino(f), node.Encode()); }).ok());
  EXPECT_FALSE(t.Check().ok()) << "nlink 2 with one entry not detected";
}

TEST_F(GcFsckTest, CorruptPackByteIsDetectedAndNeverRead) {
  const std::string data = RandomBytes(256 * kKiB, 700);
  uint64_t f = t.WriteFile(kRootIno, "f", data);
  t.Reopen();  // seal the pack, drop the chunk cache
  auto index = IndexEntries(t.store());
  ASSERT_FALSE(index.empty());
  const ChunkLocation loc = index[index.size() / 2].second;
  {
    const std::string path = PackPath(t.dir(), loc.pack);
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << path;
    char c;
    const off_t at = static_cast<off_t>(loc.offset + loc.length / 2);
    ASSERT_EQ(::pread(fd, &c, 1, at), 1);
    c = static_cast<char>(c ^ 0x40);
    ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
    ::close(fd);
  }
  FsckReport quick = t.Check(false);
  (void)quick;  // without verify_data only record headers are checked: may pass
  FsckReport full = t.Check(true);
  EXPECT_FALSE(full.ok()) << "flipped pack byte not reported by fsck --verify";
  FileHandle fh = MUST(fs().Open(f, O_RDONLY));
  int errors = 0;
  for (size_t off = 0; off < data.size(); off += 4 * kKiB) {
    char buf[4 * kKiB];
    auto r = fs().Read(fh, off, sizeof buf, buf);
    if (!r.ok()) {
      errors++;
      EXPECT_TRUE(r.status().Is(Code::kCorruption) || r.status().Is(Code::kIOError))
          << r.status().ToString();
      continue;
    }
    EXPECT_EQ(std::string(buf, *r), data.substr(off, *r)) << "wrong bytes at " << off;
  }
  EXPECT_GT(errors, 0) << "reads of the corrupt chunk succeeded";
  EXPECT_OK(fs().Release(fh));
  // GC must not spread the corruption either: it refuses or keeps the damage detectable.
  GcOptions o;
  o.rewrite_below_live_fraction = 1.1;
  auto g = RunGc(t.store(), o);
  (void)g;
  FsckReport after = t.Check(true);
  EXPECT_FALSE(after.ok()) << "corruption hidden by GC";
}

// Damaged chunks come back with the inodes that use them, found in the one pass over the
// extents: a removed pack, an index entry gone; and --subset re-hashes a random part.
TEST_F(GcFsckTest, DamagedChunksNameTheirInodes) {
  uint64_t f = t.WriteFile(kRootIno, "f", RandomBytes(256 * kKiB, 900));
  t.Reopen();  // seals f's pack: g goes to another one
  uint64_t g = t.WriteFile(kRootIno, "g", RandomBytes(256 * kKiB, 901));
  // Enough chunks (~64) that a random half is neither none nor all.
  uint64_t h = t.WriteFile(kRootIno, "h", RandomBytes(4 * kMiB, 902));
  t.Reopen();
  std::set<PackId> f_packs;
  std::vector<ChunkId> g_chunks;
  {
    auto it = t.store().meta().NewIterator(Cf::kExtents);  // gone before Reopen
    for (it->Seek(""); it->Valid(); it->Next()) {
      uint64_t ino = GetBE64(it->key().data());
      ExtentValue e = MUST(ExtentValue::Decode(it->value()));
      std::string v;
      ASSERT_OK(t.store().meta().Get(Cf::kChunks, keys::Chunk(e.id), &v));
      ChunkLocation loc = MUST(ChunkLocation::Decode(v));
      if (ino == f) f_packs.insert(loc.pack);
      if (ino == g) g_chunks.push_back(e.id);
    }
  }
  ASSERT_EQ(f_packs.size(), 1u);
  ASSERT_GE(g_chunks.size(), 2u);
  FsckReport clean = t.Check(true);
  ASSERT_FSCK_OK(clean);
  ASSERT_TRUE(clean.damaged.empty());

  ASSERT_EQ(::unlink(PackPath(t.dir(), *f_packs.begin()).c_str()), 0);
  ASSERT_TRUE(Raw(t.store(), [&](kv::Txn& x) {
                x.Delete(Cf::kChunks, keys::Chunk(g_chunks[0]));
              }).ok());
  t.Reopen();
  FsckReport r = t.Check(false);
  EXPECT_FALSE(r.ok());
  size_t missing_pack = 0, missing_index = 0;
  for (const auto& d : r.damaged) {
    if (d.problem == "missing pack") {
      missing_pack++;
      EXPECT_EQ(d.inodes, std::vector<uint64_t>{f}) << d.id.Hex();
      EXPECT_EQ(d.pack, *f_packs.begin());
    } else if (d.problem == "missing from the index") {
      missing_index++;
      EXPECT_EQ(d.id, g_chunks[0]);
      EXPECT_EQ(d.inodes, std::vector<uint64_t>{g});
    } else {
      ADD_FAILURE() << "unexpected damage: " << d.description;
    }
    EXPECT_NE(std::find(r.problems.begin(), r.problems.end(), d.description), r.problems.end())
        << "every damaged chunk is also a problem line";
  }
  EXPECT_GE(missing_pack, 1u);
  EXPECT_EQ(missing_index, 1u);
  for (const auto& d : r.damaged) EXPECT_EQ(std::count(d.inodes.begin(), d.inodes.end(), h), 0);

  // --subset: 0 re-hashes nothing, 1 everything readable, 0.5 a part that one seed fixes.
  auto verify = [&](double fraction, uint64_t seed) {
    FsckOptions o;
    o.verify_data = true;
    o.verify_fraction = fraction;
    o.seed = seed;
    return MUST(Fsck(t.store(), o));
  };
  EXPECT_EQ(verify(0, 0).verified_chunks, 0u);
  FsckReport all = verify(1, 0);
  EXPECT_GT(all.verified_chunks, 2u);
  FsckReport half = verify(0.5, 42);
  EXPECT_GT(half.verified_chunks, 0u);
  EXPECT_LT(half.verified_chunks, all.verified_chunks);
  EXPECT_EQ(verify(0.5, 42).verified_chunks, half.verified_chunks) << "one seed, one choice";
  EXPECT_EQ(half.verify_fraction, 0.5);
}

TEST_F(GcFsckTest, SameBytesTwiceAreStoredOnce) {
  const std::string data = RandomBytes(8 * kMiB, 800);
  const uint64_t new0 = t.store().chunks().stats().bytes_new;
  uint64_t a = t.WriteFile(kRootIno, "a", data);
  const uint64_t new1 = t.store().chunks().stats().bytes_new;
  EXPECT_GE(new1 - new0, 8 * kMiB - 64 * kKiB);
  FsckReport r1 = t.Check();
  // The same bytes again, written in different pieces.
  auto [b, fh] = MUST(fs().Create(kRootIno, "b", 0644, O_RDWR | O_CREAT, t.who()));
  for (size_t off = 0; off < data.size(); off += kMiB + 3) {
    t.WriteAll(fh, off, std::string_view(data).substr(off, kMiB + 3));
  }
  ASSERT_OK(fs().Release(fh));
  const uint64_t new2 = t.store().chunks().stats().bytes_new;
  EXPECT_LE(new2 - new1, 32 * kKiB) << "identical content must dedup";
  FsckReport r2 = t.Check();
  EXPECT_FSCK_OK(r2);
  EXPECT_LE(r2.stored_bytes, r1.stored_bytes + 32 * kKiB);
  EXPECT_EQ(r2.logical_bytes, 16 * kMiB);
  // Shifted by an insert at the front: content-defined chunks resynchronise.
  t.WriteFile(kRootIno, "c", RandomBytes(1000, 801) + data);
  EXPECT_LE(t.store().chunks().stats().bytes_new - new2, 64 * kKiB);
  EXPECT_TRUE(t.ReadAll(a) == data);
  EXPECT_TRUE(t.ReadAll(b.ino) == data);
}

}  // namespace
}  // namespace snapfs
