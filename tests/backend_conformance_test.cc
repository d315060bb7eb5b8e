// One conformance suite run against every Backend (backends/backend.h), then tests of what
// only one backend does: the local backend's folder layout and persistence, and the fault
// injection wrapper's knobs.
//
// Append after Seal fails with InvalidArgument in every backend.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "backends/backend.h"
#include "backends/fault_backend.h"
#include "tests/util/s3_env.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {

Status StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}

#define BT_ASSERT_OK(expr)                                    \
  do {                                                        \
    const ::snapfs::Status _st = StatusOf(expr);              \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st.ToString(); \
  } while (0)
#define BT_EXPECT_OK(expr)                                    \
  do {                                                        \
    const ::snapfs::Status _st = StatusOf(expr);              \
    EXPECT_TRUE(_st.ok()) << #expr << ": " << _st.ToString(); \
  } while (0)
#define BT_EXPECT_CODE(expr, want)                                \
  do {                                                            \
    const ::snapfs::Status _st = StatusOf(expr);                  \
    EXPECT_TRUE(_st.Is(want)) << #expr << ": " << _st.ToString(); \
  } while (0)
#define BT_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  BT_ASSERT_OK_AND_ASSIGN_IMPL(SNAPFS_CONCAT(_res_, __LINE__), lhs, expr)
#define BT_ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                 \
  auto tmp = (expr);                                                 \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().ToString(); \
  lhs = std::move(tmp).value()

using test::TempDir;

// The byte at `pos` of pack `id` in these tests: differs between packs and positions.
uint8_t PatternByte(PackId id, uint64_t pos) {
  uint64_t x = (id + 1) * 0x9E3779B97F4A7C15ull ^ (pos + 1) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  return static_cast<uint8_t>(x ^ (x >> 17));
}

std::vector<uint8_t> Pattern(PackId id, uint64_t offset, size_t len) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = PatternByte(id, offset + i);
  return v;
}

Result<std::vector<uint8_t>> ReadBytes(const Backend& b, PackId id, uint64_t offset, size_t len) {
  std::vector<uint8_t> out(len);
  RETURN_IF_ERROR(b.Read(id, offset, len, out.data()));
  return out;
}

// Appends pattern bytes [w.size(), w.size()+len) of the writer's pack.
Result<uint64_t> AppendPattern(PackWriter& w, size_t len) {
  return w.Append(Pattern(w.id(), w.size(), len));
}

// Creates pack `id` holding `size` pattern bytes, appended in pieces of up to 4000 bytes.
Result<std::unique_ptr<PackWriter>> WritePack(Backend& b, PackId id, size_t size, bool seal) {
  ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> w, b.Create(id));
  while (w->size() < size) {
    RETURN_IF_ERROR(AppendPattern(*w, std::min<size_t>(4000, size - w->size())).status());
  }
  if (seal) RETURN_IF_ERROR(w->Seal());
  return w;
}

// Whether pack `id` holds exactly its pattern bytes [0, size).
::testing::AssertionResult HasPattern(const Backend& b, PackId id, size_t size) {
  auto got = ReadBytes(b, id, 0, size);
  if (!got.ok()) return ::testing::AssertionFailure() << got.status().ToString();
  if (*got != Pattern(id, 0, size)) {
    return ::testing::AssertionFailure() << "pack " << id << " bytes differ";
  }
  return ::testing::AssertionSuccess();
}

// ---- The conformance suite ----

struct BackendKind {
  std::string name;
  // Opens a backend; `dir` is a fresh path under a temp folder that does not exist yet.
  std::function<Result<std::unique_ptr<Backend>>(const std::string& dir)> open;
  bool needs_s3 = false;  // runs against the test S3 server (tests/util/s3_env.h)
};

void PrintTo(const BackendKind& k, std::ostream* os) { *os << k.name; }

class BackendConformanceTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    if (GetParam().needs_s3) SNAPFS_REQUIRE_S3_OR_SKIP();
    auto opened = GetParam().open(tmp_.path() + "/packs");
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    backend_ = std::move(opened).value();
  }

  TempDir tmp_;
  std::unique_ptr<Backend> backend_;  // destroyed before tmp_
};

TEST_P(BackendConformanceTest, AppendReturnsConsecutiveOffsets) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, backend_->Create(7));
  EXPECT_EQ(w->id(), 7u);
  EXPECT_EQ(w->size(), 0u);
  uint64_t end = 0;
  for (size_t len : {1, 10, 4096, 3, 100000, 1}) {
    BT_ASSERT_OK_AND_ASSIGN(uint64_t offset, AppendPattern(*w, len));
    EXPECT_EQ(offset, end);
    end += len;
    EXPECT_EQ(w->size(), end);
  }
  BT_ASSERT_OK(w->Seal());
  EXPECT_EQ(w->size(), end);
  EXPECT_TRUE(HasPattern(*backend_, 7, end));
}

TEST_P(BackendConformanceTest, ReadsBackExactBytes) {
  constexpr size_t kSize = (1 << 20) + 12345;
  BT_ASSERT_OK(WritePack(*backend_, 1, kSize, /*seal=*/true));
  EXPECT_TRUE(HasPattern(*backend_, 1, kSize));
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200; ++i) {
    const uint64_t offset = rng() % kSize;
    const size_t len = rng() % std::min<uint64_t>(kSize - offset + 1, 70000);
    BT_ASSERT_OK_AND_ASSIGN(auto got, ReadBytes(*backend_, 1, offset, len));
    ASSERT_EQ(got, Pattern(1, offset, len)) << "offset " << offset << " len " << len;
  }
  BT_EXPECT_OK(ReadBytes(*backend_, 1, kSize, 0));
  BT_EXPECT_OK(ReadBytes(*backend_, 1, 0, 0));
}

TEST_P(BackendConformanceTest, ReadsWhileThePackIsBeingWritten) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, backend_->Create(3));
  BT_ASSERT_OK(AppendPattern(*w, 100));
  EXPECT_TRUE(HasPattern(*backend_, 3, 100));
  BT_ASSERT_OK(AppendPattern(*w, 5000));
  EXPECT_TRUE(HasPattern(*backend_, 3, 5100));
  BT_ASSERT_OK_AND_ASSIGN(auto tail, ReadBytes(*backend_, 3, 100, 5000));
  EXPECT_EQ(tail, Pattern(3, 100, 5000));
  BT_ASSERT_OK(w->Sync());
  BT_ASSERT_OK(AppendPattern(*w, 7));
  EXPECT_TRUE(HasPattern(*backend_, 3, 5107));
  BT_EXPECT_CODE(ReadBytes(*backend_, 3, 5100, 8), Code::kCorruption);
  BT_ASSERT_OK(w->Seal());
  EXPECT_TRUE(HasPattern(*backend_, 3, 5107));
}

TEST_P(BackendConformanceTest, ReadPastEndIsCorruption) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(*backend_, 9, 100, /*seal=*/false));
  for (int sealed = 0; sealed < 2; ++sealed) {
    SCOPED_TRACE(sealed ? "sealed" : "open");
    BT_EXPECT_CODE(ReadBytes(*backend_, 9, 0, 101), Code::kCorruption);
    BT_EXPECT_CODE(ReadBytes(*backend_, 9, 99, 2), Code::kCorruption);
    BT_EXPECT_CODE(ReadBytes(*backend_, 9, 100, 1), Code::kCorruption);
    BT_EXPECT_CODE(ReadBytes(*backend_, 9, 5000, 10), Code::kCorruption);
    BT_EXPECT_CODE(ReadBytes(*backend_, 9, 101, 0), Code::kCorruption);
    uint8_t byte;
    BT_EXPECT_CODE(backend_->Read(9, UINT64_MAX - 1, 1, &byte), Code::kCorruption);
    BT_EXPECT_CODE(backend_->Read(9, UINT64_MAX, 1, &byte), Code::kCorruption);
    BT_EXPECT_OK(ReadBytes(*backend_, 9, 99, 1));
    BT_EXPECT_OK(ReadBytes(*backend_, 9, 100, 0));
    BT_ASSERT_OK(w->Seal());
  }
}

TEST_P(BackendConformanceTest, ReadOfMissingPackIsNotFound) {
  BT_EXPECT_CODE(ReadBytes(*backend_, 42, 0, 1), Code::kNotFound);
  BT_EXPECT_CODE(ReadBytes(*backend_, 42, 0, 0), Code::kNotFound);
  BT_ASSERT_OK(WritePack(*backend_, 41, 10, /*seal=*/true));
  BT_ASSERT_OK(WritePack(*backend_, 42 + 256, 10, /*seal=*/true));  // same fan-out folder
  BT_EXPECT_CODE(ReadBytes(*backend_, 42, 0, 1), Code::kNotFound);
}

TEST_P(BackendConformanceTest, CreateOfExistingIdIsAlreadyExists) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(*backend_, 5, 10, /*seal=*/false));
  BT_EXPECT_CODE(backend_->Create(5), Code::kAlreadyExists);
  BT_ASSERT_OK(w->Seal());
  BT_EXPECT_CODE(backend_->Create(5), Code::kAlreadyExists);
  EXPECT_TRUE(HasPattern(*backend_, 5, 10));  // untouched by the failed Creates
  BT_ASSERT_OK_AND_ASSIGN(auto empty, backend_->Create(6));
  BT_EXPECT_CODE(backend_->Create(6), Code::kAlreadyExists);
}

TEST_P(BackendConformanceTest, RemoveThenReadIsNotFound) {
  BT_ASSERT_OK(WritePack(*backend_, 1, 100, /*seal=*/true));
  BT_ASSERT_OK(WritePack(*backend_, 2, 100, /*seal=*/true));
  EXPECT_TRUE(HasPattern(*backend_, 1, 100));  // caches a read fd in the local backend
  BT_ASSERT_OK(backend_->Remove(1));
  BT_EXPECT_CODE(ReadBytes(*backend_, 1, 0, 1), Code::kNotFound);
  EXPECT_TRUE(HasPattern(*backend_, 2, 100));
  BT_ASSERT_OK_AND_ASSIGN(auto packs, backend_->List());
  ASSERT_EQ(packs.size(), 1u);
  EXPECT_EQ(packs[0].id, 2u);
}

TEST_P(BackendConformanceTest, RemoveOfMissingPackIsNotFound) {
  BT_EXPECT_CODE(backend_->Remove(77), Code::kNotFound);
  BT_ASSERT_OK(WritePack(*backend_, 77, 1, /*seal=*/true));
  BT_EXPECT_OK(backend_->Remove(77));
  BT_EXPECT_CODE(backend_->Remove(77), Code::kNotFound);
}

TEST_P(BackendConformanceTest, RemoveOfPackBeingWritten) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(*backend_, 8, 10, /*seal=*/false));
  BT_ASSERT_OK(backend_->Remove(8));
  BT_EXPECT_CODE(ReadBytes(*backend_, 8, 0, 1), Code::kNotFound);
  w.reset();  // the writer of a removed pack can still be dropped
  BT_ASSERT_OK_AND_ASSIGN(auto packs, backend_->List());
  EXPECT_TRUE(packs.empty());
}

TEST_P(BackendConformanceTest, ListIsAscendingWithSizes) {
  BT_ASSERT_OK_AND_ASSIGN(auto none, backend_->List());
  EXPECT_TRUE(none.empty());
  const std::map<PackId, size_t> want = {{300, 17},
                                         {5, 0},
                                         {0, 1},
                                         {256, 4096},
                                         {uint64_t{1} << 40, 3},
                                         {6, 12345},
                                         {UINT64_MAX, 2},
                                         {UINT64_MAX - 255, 9}};
  std::unique_ptr<PackWriter> open_writer;
  for (const auto& [id, size] : want) {
    BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(*backend_, id, size, /*seal=*/id != 6));
    if (id == 6) open_writer = std::move(w);  // List sees unsealed packs too
  }
  BT_ASSERT_OK_AND_ASSIGN(auto packs, backend_->List());
  ASSERT_EQ(packs.size(), want.size());
  auto it = want.begin();
  for (const PackInfo& p : packs) {
    EXPECT_EQ(p.id, it->first);
    EXPECT_EQ(p.size, it->second) << "pack " << p.id;
    ++it;
  }
  BT_ASSERT_OK(AppendPattern(*open_writer, 5));
  BT_ASSERT_OK_AND_ASSIGN(packs, backend_->List());
  EXPECT_EQ(packs[2].id, 6u);
  EXPECT_EQ(packs[2].size, 12350u);
}

TEST_P(BackendConformanceTest, SealIsIdempotent) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(*backend_, 11, 300, /*seal=*/false));
  BT_EXPECT_OK(w->Seal());
  BT_EXPECT_OK(w->Seal());
  BT_EXPECT_OK(w->Sync());
  BT_EXPECT_OK(w->Seal());
  EXPECT_EQ(w->size(), 300u);
  EXPECT_TRUE(HasPattern(*backend_, 11, 300));
}

TEST_P(BackendConformanceTest, AppendAfterSealIsInvalidArgument) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(*backend_, 12, 30, /*seal=*/true));
  BT_EXPECT_CODE(AppendPattern(*w, 1), Code::kInvalidArgument);
  BT_EXPECT_CODE(AppendPattern(*w, 0), Code::kInvalidArgument);
  EXPECT_EQ(w->size(), 30u);
  BT_ASSERT_OK_AND_ASSIGN(auto packs, backend_->List());
  ASSERT_EQ(packs.size(), 1u);
  EXPECT_EQ(packs[0].size, 30u);
}

TEST_P(BackendConformanceTest, ZeroByteAppend) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, backend_->Create(13));
  BT_ASSERT_OK_AND_ASSIGN(uint64_t at, w->Append({}));
  EXPECT_EQ(at, 0u);
  BT_ASSERT_OK(AppendPattern(*w, 10));
  BT_ASSERT_OK_AND_ASSIGN(at, w->Append({}));
  EXPECT_EQ(at, 10u);
  EXPECT_EQ(w->size(), 10u);
  BT_ASSERT_OK_AND_ASSIGN(at, AppendPattern(*w, 1));
  EXPECT_EQ(at, 10u);
  BT_ASSERT_OK(w->Seal());
  EXPECT_TRUE(HasPattern(*backend_, 13, 11));

  BT_ASSERT_OK_AND_ASSIGN(auto empty, backend_->Create(14));
  BT_ASSERT_OK(empty->Append({}));
  BT_ASSERT_OK(empty->Sync());
  BT_ASSERT_OK(empty->Seal());
  BT_EXPECT_OK(ReadBytes(*backend_, 14, 0, 0));
  BT_EXPECT_CODE(ReadBytes(*backend_, 14, 0, 1), Code::kCorruption);
  BT_ASSERT_OK_AND_ASSIGN(auto packs, backend_->List());
  ASSERT_EQ(packs.size(), 2u);
  EXPECT_EQ(packs[1].id, 14u);
  EXPECT_EQ(packs[1].size, 0u);
}

TEST_P(BackendConformanceTest, ManyPacks) {
  // More packs than fan-out folders and than the local backend's read-fd cache.
  constexpr int kPacks = 600;
  auto id_of = [](int i) { return PackId(i) * 37 + 1; };
  auto size_of = [](int i) { return size_t(i % 50) * 13 + 1; };
  for (int i = 0; i < kPacks; ++i) {
    BT_ASSERT_OK(WritePack(*backend_, id_of(i), size_of(i), /*seal=*/i % 3 != 0));
  }
  std::vector<int> order(kPacks);
  for (int i = 0; i < kPacks; ++i) order[i] = i;
  std::mt19937 rng(7);
  for (int round = 0; round < 2; ++round) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int i : order) ASSERT_TRUE(HasPattern(*backend_, id_of(i), size_of(i))) << i;
  }
  BT_ASSERT_OK_AND_ASSIGN(auto packs, backend_->List());
  ASSERT_EQ(packs.size(), size_t{kPacks});
  for (int i = 0; i < kPacks; ++i) {
    EXPECT_EQ(packs[i].id, id_of(i));
    EXPECT_EQ(packs[i].size, size_of(i));
  }
}

TEST_P(BackendConformanceTest, ConcurrentReadersAndOneWriter) {
  constexpr PackId kLive = 100;
  constexpr int kSealedPacks = 4;
  for (int i = 0; i < kSealedPacks; ++i) BT_ASSERT_OK(WritePack(*backend_, i, 50000, true));
  BT_ASSERT_OK_AND_ASSIGN(auto w, backend_->Create(kLive));
  std::atomic<uint64_t> published{0};  // bytes of kLive that Append has returned for
  std::atomic<bool> done{false};
  std::atomic<int> bad{0}, reads{0};

  auto reader = [&](int seed) {
    std::mt19937_64 rng(seed);
    // Runs until the writer is done and at least a few reads happened, so that the test
    // also reads on a loaded machine where readers start late.
    for (int n = 0; !done.load() || n < 16; n++) {
      const bool live = rng() % 2 == 0;
      const PackId id = live ? kLive : rng() % kSealedPacks;
      const uint64_t size = live ? published.load() : 50000;
      const uint64_t offset = size == 0 ? 0 : rng() % size;
      const size_t len = std::min<uint64_t>(size - offset, rng() % 3000);
      auto got = ReadBytes(*backend_, id, offset, len);
      if (!got.ok() || *got != Pattern(id, offset, len)) bad++;
      reads++;
    }
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) readers.emplace_back(reader, i);
  std::mt19937 rng(99);
  for (int i = 0; i < 3000; ++i) {
    auto appended = AppendPattern(*w, rng() % 2000);
    if (!appended.ok()) {
      bad++;
      break;
    }
    published.store(w->size());
    if (i % 500 == 0) BT_EXPECT_OK(w->Sync());
  }
  BT_EXPECT_OK(w->Seal());
  done.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_TRUE(HasPattern(*backend_, kLive, w->size()));
}

TEST_P(BackendConformanceTest, ConcurrentCreatesOfOneIdHaveOneWinner) {
  std::atomic<int> won{0}, exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto w = backend_->Create(99);
      if (w.ok()) {
        won++;
      } else if (w.status().Is(Code::kAlreadyExists)) {
        exists++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(exists.load(), 7);
}

TEST_P(BackendConformanceTest, ReadsRacingRemoveSeeDataOrNotFound) {
  constexpr int kPacks = 100;
  for (int i = 0; i < kPacks; ++i) BT_ASSERT_OK(WritePack(*backend_, i, 1000, true));
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(t);
      while (!done.load()) {
        const PackId id = rng() % kPacks;
        auto got = ReadBytes(*backend_, id, 0, 1000);
        if (got.ok() ? *got != Pattern(id, 0, 1000) : !got.status().Is(Code::kNotFound)) bad++;
      }
    });
  }
  for (int i = 0; i < kPacks; ++i) BT_EXPECT_OK(backend_->Remove(i));
  done.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  for (int i = 0; i < kPacks; ++i) BT_EXPECT_CODE(ReadBytes(*backend_, i, 0, 1), Code::kNotFound);
  BT_ASSERT_OK_AND_ASSIGN(auto packs, backend_->List());
  EXPECT_TRUE(packs.empty());
}

TEST_P(BackendConformanceTest, SpaceIsSane) {
  BT_ASSERT_OK_AND_ASSIGN(SpaceInfo space, backend_->Space());
  EXPECT_GT(space.total_bytes, 0u);
  EXPECT_GE(space.total_bytes, space.free_bytes);
  BT_ASSERT_OK(WritePack(*backend_, 1, 100000, true));
  BT_ASSERT_OK_AND_ASSIGN(space, backend_->Space());
  EXPECT_GE(space.total_bytes, space.free_bytes);
}

TEST_P(BackendConformanceTest, DescribeIsNotEmpty) { EXPECT_FALSE(backend_->Describe().empty()); }

Result<std::unique_ptr<Backend>> OpenMemory(const std::string&) { return NewMemoryBackend(); }
Result<std::unique_ptr<Backend>> OpenFaultOver(Result<std::unique_ptr<Backend>> target) {
  if (!target.ok()) return target.status();
  return std::unique_ptr<Backend>(
      std::make_unique<FaultInjectionBackend>(std::move(target).value()));
}

// A fresh prefix per test, the spool beside `dir`.
Result<std::unique_ptr<Backend>> OpenS3(const std::string& dir, bool disk_cache) {
  auto env = test::GetS3TestEnv();
  if (!env) return Status::NotFound("no S3 test server");
  S3BackendOptions o =
      test::S3TestBackendOptions(*env, dir + "-spool", test::UniqueS3Prefix("conformance"));
  if (disk_cache) {
    o.disk_cache_dir = dir + "-cache";
    o.disk_cache_bytes = 4 << 20;  // small: evictions happen
    o.block_cache_bytes = 2 << 20;  // small: the disk cache is asked
  }
  ASSIGN_OR_RETURN(auto b, OpenS3Backend(std::move(o)));
  return std::unique_ptr<Backend>(std::move(b));
}

INSTANTIATE_TEST_SUITE_P(
    AllBackends, BackendConformanceTest,
    ::testing::Values(
        BackendKind{"Memory", OpenMemory}, BackendKind{"Local", OpenLocalBackend},
        BackendKind{"FaultOverMemory",
                    [](const std::string& dir) { return OpenFaultOver(OpenMemory(dir)); }},
        BackendKind{"FaultOverLocal",
                    [](const std::string& dir) { return OpenFaultOver(OpenLocalBackend(dir)); }},
        BackendKind{"S3", [](const std::string& d) { return OpenS3(d, false); }, /*needs_s3=*/true},
        BackendKind{"S3DiskCache", [](const std::string& d) { return OpenS3(d, true); },
                    /*needs_s3=*/true}),
    [](const ::testing::TestParamInfo<BackendKind>& info) { return info.param.name; });

// ---- The local backend ----

std::unique_ptr<Backend> MustOpenLocal(const std::string& dir) {
  auto b = OpenLocalBackend(dir);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(b).value() : nullptr;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path) << content;
}

TEST(LocalBackendTest, PersistsAcrossReopen) {
  TempDir tmp;
  {
    auto b = MustOpenLocal(tmp.path());
    ASSERT_NE(b, nullptr);
    BT_ASSERT_OK(WritePack(*b, 1, 70000, /*seal=*/true));
    BT_ASSERT_OK(WritePack(*b, 1000, 5, /*seal=*/true));
    BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(*b, 2, 300, /*seal=*/false));
    BT_ASSERT_OK(w->Sync());  // the writer goes away without Seal
  }
  auto b = MustOpenLocal(tmp.path());
  ASSERT_NE(b, nullptr);
  BT_ASSERT_OK_AND_ASSIGN(auto packs, b->List());
  ASSERT_EQ(packs.size(), 3u);
  EXPECT_EQ(packs[0].id, 1u);
  EXPECT_EQ(packs[0].size, 70000u);
  EXPECT_EQ(packs[1].id, 2u);
  EXPECT_EQ(packs[1].size, 300u);
  EXPECT_EQ(packs[2].id, 1000u);
  EXPECT_TRUE(HasPattern(*b, 1, 70000));
  EXPECT_TRUE(HasPattern(*b, 2, 300));
  EXPECT_TRUE(HasPattern(*b, 1000, 5));
  BT_EXPECT_CODE(b->Create(2), Code::kAlreadyExists);
}

TEST(LocalBackendTest, UsesFanOutLayout) {
  TempDir tmp;
  auto b = MustOpenLocal(tmp.path());
  ASSERT_NE(b, nullptr);
  BT_ASSERT_OK(WritePack(*b, 0x1234, 10, true));
  BT_ASSERT_OK(WritePack(*b, 0xabcdef00, 10, true));
  struct stat st;
  ASSERT_EQ(::stat((tmp.path() + "/34/0000000000001234.pack").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 10);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((tmp.path() + "/00/00000000abcdef00.pack").c_str(), &st), 0);
  ASSERT_EQ(::stat((tmp.path() + "/00").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(b->Describe(), "local:" + tmp.path());
}

TEST(LocalBackendTest, IgnoresForeignFiles) {
  TempDir tmp;
  auto b = MustOpenLocal(tmp.path());
  ASSERT_NE(b, nullptr);
  BT_ASSERT_OK(WritePack(*b, 0x101, 10, true));  // makes folder 01
  const std::string& d = tmp.path();
  WriteFile(d + "/README", "hello");
  WriteFile(d + "/0000000000000005.pack", "top level");  // not in a fan-out folder
  WriteFile(d + "/07", "a file named like a fan-out folder");
  ASSERT_EQ(::mkdir((d + "/zz").c_str(), 0700), 0);
  WriteFile(d + "/zz/0000000000000005.pack", "x");
  ASSERT_EQ(::mkdir((d + "/AB").c_str(), 0700), 0);  // upper case is not ours
  WriteFile(d + "/AB/00000000000000ab.pack", "x");
  ASSERT_EQ(::mkdir((d + "/123").c_str(), 0700), 0);
  WriteFile(d + "/01/notes.txt", "x");
  WriteFile(d + "/01/0000000000000101.pack.tmp", "x");
  WriteFile(d + "/01/000000000000101.pack", "15 digits");
  WriteFile(d + "/01/00000000000000FF.pack", "upper case");
  WriteFile(d + "/01/0000000000000002.pack", "id 2 belongs in folder 02");
  ASSERT_EQ(::mkdir((d + "/01/0000000000000201.pack").c_str(), 0700), 0);  // a folder
  ASSERT_EQ(::symlink("0000000000000101.pack", (d + "/01/0000000000000301.pack").c_str()), 0);

  BT_ASSERT_OK_AND_ASSIGN(auto packs, b->List());
  ASSERT_EQ(packs.size(), 1u);
  EXPECT_EQ(packs[0].id, 0x101u);
  EXPECT_EQ(packs[0].size, 10u);
  EXPECT_TRUE(HasPattern(*b, 0x101, 10));
  BT_EXPECT_CODE(WritePack(*b, 7, 3, true), Code::kNotDirectory);  // "07" is a file
  BT_ASSERT_OK_AND_ASSIGN(packs, b->List());
  EXPECT_EQ(packs.size(), 1u);
}

TEST(LocalBackendTest, PathThatIsARegularFileIsNotDirectory) {
  TempDir tmp;
  const std::string file = tmp.path() + "/file";
  WriteFile(file, "x");
  BT_EXPECT_CODE(OpenLocalBackend(file), Code::kNotDirectory);
  BT_EXPECT_CODE(OpenLocalBackend(file + "/"), Code::kNotDirectory);
  BT_EXPECT_CODE(OpenLocalBackend(file + "/sub/packs"), Code::kNotDirectory);
}

TEST(LocalBackendTest, MakesMissingParents) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/a/b//c/";
  auto b = MustOpenLocal(dir);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->Describe(), "local:" + tmp.path() + "/a/b//c");
  EXPECT_TRUE(std::filesystem::is_directory(tmp.path() + "/a/b/c"));
  BT_ASSERT_OK(WritePack(*b, 1, 1, true));
  EXPECT_TRUE(MustOpenLocal(dir) != nullptr);  // opening an existing folder is fine
}

TEST(LocalBackendTest, ShortReadIsCorruptionNamingPackOffsetAndLength) {
  TempDir tmp;
  auto b = MustOpenLocal(tmp.path());
  ASSERT_NE(b, nullptr);
  BT_ASSERT_OK(WritePack(*b, 0x2a, 100, true));
  ASSERT_EQ(::truncate((tmp.path() + "/2a/000000000000002a.pack").c_str(), 50), 0);
  const Status st = ReadBytes(*b, 0x2a, 40, 20).status();
  EXPECT_TRUE(st.Is(Code::kCorruption)) << st.ToString();
  EXPECT_NE(st.message().find("000000000000002a.pack"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("offset 40"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("20 bytes"), std::string::npos) << st.message();
  EXPECT_TRUE(HasPattern(*b, 0x2a, 50));
}

// ---- The fault injection wrapper ----

class FaultBackendTest : public ::testing::Test {
 protected:
  FaultInjectionBackend fault_{NewMemoryBackend()};
};

TEST_F(FaultBackendTest, NoSpaceAfterNBytesKeepsEverythingBefore) {
  BT_ASSERT_OK_AND_ASSIGN(auto a, fault_.Create(1));
  BT_ASSERT_OK(AppendPattern(*a, 10000));  // before the limit is set: not counted
  fault_.FailAppendsAfter(1000);
  BT_ASSERT_OK(AppendPattern(*a, 400));
  BT_ASSERT_OK_AND_ASSIGN(auto b, fault_.Create(2));
  BT_ASSERT_OK(AppendPattern(*b, 400));  // the budget is shared by all packs
  const Status full = AppendPattern(*a, 201).status();
  EXPECT_TRUE(full.Is(Code::kNoSpace)) << full.ToString();
  EXPECT_EQ(full.message(), "injected: device full");
  EXPECT_EQ(a->size(), 10400u);
  BT_ASSERT_OK(AppendPattern(*a, 200));  // exactly fills the device
  BT_EXPECT_CODE(AppendPattern(*b, 1), Code::kNoSpace);
  BT_EXPECT_OK(b->Append({}));  // nothing still fits
  EXPECT_TRUE(HasPattern(fault_, 1, 10600));
  EXPECT_TRUE(HasPattern(fault_, 2, 400));
  BT_ASSERT_OK_AND_ASSIGN(auto packs, fault_.List());
  ASSERT_EQ(packs.size(), 2u);
  EXPECT_EQ(packs[0].size, 10600u);
  EXPECT_EQ(packs[1].size, 400u);
  fault_.FailAppendsAfter(FaultInjectionBackend::kNoLimit);
  BT_ASSERT_OK(AppendPattern(*b, 100000));
  EXPECT_TRUE(HasPattern(fault_, 2, 100400));
}

TEST_F(FaultBackendTest, FailSyncsAndFailReads) {
  BT_ASSERT_OK_AND_ASSIGN(auto w, WritePack(fault_, 1, 100, /*seal=*/false));
  fault_.FailSyncs(true);
  BT_EXPECT_CODE(w->Sync(), Code::kIOError);
  BT_EXPECT_CODE(w->Seal(), Code::kIOError);
  fault_.FailSyncs(false);
  BT_EXPECT_OK(w->Sync());
  BT_EXPECT_OK(w->Seal());
  fault_.FailReads(true);
  BT_EXPECT_CODE(ReadBytes(fault_, 1, 0, 10), Code::kIOError);
  BT_EXPECT_CODE(ReadBytes(fault_, 2, 0, 10), Code::kIOError);
  fault_.FailReads(false);
  EXPECT_TRUE(HasPattern(fault_, 1, 100));
}

TEST_F(FaultBackendTest, CorruptReadsFlipsAByte) {
  BT_ASSERT_OK(WritePack(fault_, 1, 1000, true));
  fault_.CorruptReads(true);
  for (size_t len : {1, 2, 999, 1000}) {
    BT_ASSERT_OK_AND_ASSIGN(auto got, ReadBytes(fault_, 1, 1000 - len, len));
    const auto want = Pattern(1, 1000 - len, len);
    size_t differ = 0;
    for (size_t i = 0; i < len; ++i) differ += got[i] != want[i];
    EXPECT_EQ(differ, 1u) << "len " << len;
  }
  BT_EXPECT_OK(ReadBytes(fault_, 1, 0, 0));
  BT_EXPECT_CODE(ReadBytes(fault_, 1, 999, 2), Code::kCorruption);  // errors pass through
  fault_.CorruptReads(false);
  EXPECT_TRUE(HasPattern(fault_, 1, 1000));
  EXPECT_TRUE(HasPattern(*fault_.target(), 1, 1000));  // the stored bytes were never touched
}

// Power loss over `fault`: exactly the bytes past each pack's last Sync/Seal are lost.
void CheckDropUnsynced(FaultInjectionBackend& fault) {
  BT_ASSERT_OK(WritePack(*fault.target(), 50, 30, /*seal=*/false));  // not made by the wrapper
  BT_ASSERT_OK_AND_ASSIGN(auto synced, WritePack(fault, 1, 100, /*seal=*/false));
  BT_ASSERT_OK(synced->Sync());
  BT_ASSERT_OK(AppendPattern(*synced, 50));
  BT_ASSERT_OK_AND_ASSIGN(auto twice, WritePack(fault, 2, 10, /*seal=*/false));
  BT_ASSERT_OK(twice->Sync());
  BT_ASSERT_OK(AppendPattern(*twice, 20));
  BT_ASSERT_OK(twice->Sync());
  BT_ASSERT_OK(AppendPattern(*twice, 5));
  fault.FailSyncs(true);
  BT_EXPECT_CODE(twice->Sync(), Code::kIOError);  // a failed Sync makes nothing durable
  fault.FailSyncs(false);
  BT_ASSERT_OK(WritePack(fault, 3, 500, /*seal=*/true));
  BT_ASSERT_OK(WritePack(fault, 4, 70, /*seal=*/false));  // never synced: gone
  BT_ASSERT_OK_AND_ASSIGN(auto empty, fault.Create(5));
  BT_ASSERT_OK(empty->Sync());  // synced while empty: stays, empty
  BT_ASSERT_OK(AppendPattern(*empty, 9));

  BT_ASSERT_OK(fault.DropUnsynced());

  BT_ASSERT_OK_AND_ASSIGN(auto packs, fault.List());
  const std::vector<std::pair<PackId, uint64_t>> want = {
      {1, 100}, {2, 30}, {3, 500}, {5, 0}, {50, 30}};
  ASSERT_EQ(packs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(packs[i].id, want[i].first);
    EXPECT_EQ(packs[i].size, want[i].second) << "pack " << packs[i].id;
    EXPECT_TRUE(HasPattern(fault, want[i].first, want[i].second));
  }
  BT_EXPECT_CODE(ReadBytes(fault, 4, 0, 1), Code::kNotFound);
  BT_EXPECT_CODE(ReadBytes(fault, 1, 100, 1), Code::kCorruption);

  // Writers from before the power loss are dead.
  BT_EXPECT_CODE(AppendPattern(*synced, 1), Code::kIOError);
  BT_EXPECT_CODE(synced->Sync(), Code::kIOError);
  BT_EXPECT_CODE(synced->Seal(), Code::kIOError);
  EXPECT_TRUE(HasPattern(fault, 1, 100));

  // Life goes on: new packs, and a second power loss keeps what survived the first.
  BT_ASSERT_OK(WritePack(fault, 6, 40, /*seal=*/true));
  BT_ASSERT_OK(WritePack(fault, 7, 40, /*seal=*/false));
  BT_ASSERT_OK(fault.DropUnsynced());
  BT_ASSERT_OK_AND_ASSIGN(packs, fault.List());
  ASSERT_EQ(packs.size(), want.size() + 1);
  EXPECT_TRUE(HasPattern(fault, 1, 100));
  EXPECT_TRUE(HasPattern(fault, 6, 40));
  BT_EXPECT_CODE(ReadBytes(fault, 7, 0, 1), Code::kNotFound);
}

TEST_F(FaultBackendTest, DropUnsyncedLosesExactlyTheUnsyncedTail) { CheckDropUnsynced(fault_); }

TEST(FaultOverLocalBackendTest, DropUnsyncedLosesExactlyTheUnsyncedTail) {
  TempDir tmp;
  auto local = MustOpenLocal(tmp.path());
  ASSERT_NE(local, nullptr);
  FaultInjectionBackend fault(std::move(local));
  CheckDropUnsynced(fault);
}

}  // namespace
}  // namespace snapfs
