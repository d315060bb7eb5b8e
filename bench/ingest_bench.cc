// Engine ingest throughput, through core::Filesystem only (no FUSE), on a fresh store with
// the default local backend in a temporary folder:
//   BM_IngestUnique     SIZE of unique random data into one file: 1 MiB writes, fsync, close
//   BM_IngestDuplicate  the same SIZE again into a second file (every chunk already stored)
//   BM_SmallFiles       2,000 files of 16 KiB: create, write, fsync, close (Flink's pattern)
//
// SIZE is SNAPFS_BENCH_GIB GiB (default 1; fractions allowed, e.g. 0.25). The store goes
// under SNAPFS_BENCH_DIR, else TMPDIR, else /tmp, and is removed afterwards. Compare with
// `dd bs=1M conv=fsync` into the same folder (scripts/bench.sh does both).
//
// Data generation (splitmix64, distinct per 1 MiB buffer) is outside the timed region;
// its own rate is reported as the gen_MBps counter.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/fs/filesystem.h"
#include "core/store.h"

namespace snapfs {
namespace {

constexpr size_t kWriteSize = 1 << 20;
constexpr int kSmallFiles = 2000;
constexpr size_t kSmallFileSize = 16 * 1024;

uint64_t BenchBytes() {
  double gib = 1.0;
  if (const char* e = std::getenv("SNAPFS_BENCH_GIB"); e && *e) gib = std::atof(e);
  if (!(gib > 0)) gib = 1.0;
  uint64_t bytes = static_cast<uint64_t>(gib * static_cast<double>(1ull << 30));
  return std::max<uint64_t>(kWriteSize, bytes / kWriteSize * kWriteSize);
}

std::string BenchBaseDir() {
  for (const char* var : {"SNAPFS_BENCH_DIR", "TMPDIR"}) {
    if (const char* e = std::getenv(var); e && *e) return e;
  }
  return "/tmp";
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Fills `buf` with the pseudo-random stream number `index` of `stream`: distinct streams
// and indexes give unrelated bytes, so no chunk of one buffer repeats in another.
void FillRandom(char* buf, size_t n, uint64_t stream, uint64_t index) {
  uint64_t state = stream * 0xd1b54a32d192ed03ULL ^ (index + 1) * 0x9e3779b97f4a7c15ULL;
  state = SplitMix64(state);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x = SplitMix64(state);
    std::memcpy(buf + i, &x, 8);
  }
  if (i < n) {
    uint64_t x = SplitMix64(state);
    std::memcpy(buf + i, &x, n - i);
  }
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "ingest_bench: %s: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

template <typename T>
T Check(Result<T> r, const char* what) {
  Check(r.status(), what);
  return std::move(*r);
}

// A fresh store with the default (local) backend and an open Filesystem; removed on exit.
class TempStore {
 public:
  TempStore() {
    std::string tmpl = BenchBaseDir() + "/snapfs-bench-XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::perror(("ingest_bench: mkdtemp " + tmpl).c_str());
      std::abort();
    }
    dir_ = tmpl;
    const std::string store_dir = dir_ + "/store";
    Check(Store::Init(store_dir, InitOptions{}), "init store");
    store_ = Check(Store::Open(store_dir), "open store");
    fs_ = Check(Filesystem::Open(store_.get()), "open filesystem");
  }
  ~TempStore() {
    fs_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Filesystem& fs() { return *fs_; }

 private:
  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Filesystem> fs_;
};

const Caller kCaller{static_cast<uint32_t>(::getuid()), static_cast<uint32_t>(::getgid())};
constexpr int kCreateFlags = O_WRONLY | O_CREAT | O_TRUNC;

// Writes `bytes` of stream `stream` into a new file `name` with 1 MiB writes, then fsyncs
// and closes it. With `state`, data generation is excluded from the timed region and its
// duration is added to *gen_seconds.
void WriteStream(Filesystem& fs, const std::string& name, uint64_t bytes, uint64_t stream,
                 benchmark::State* state, double* gen_seconds) {
  std::vector<char> buf(kWriteSize);
  auto [attr, fh] = Check(fs.Create(kRootIno, name, 0644, kCreateFlags, kCaller), "create");
  for (uint64_t off = 0, i = 0; off < bytes; off += kWriteSize, i++) {
    if (state) state->PauseTiming();
    auto t0 = std::chrono::steady_clock::now();
    FillRandom(buf.data(), buf.size(), stream, i);
    if (gen_seconds) {
      *gen_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (state) state->ResumeTiming();
    size_t n = Check(fs.Write(fh, off, buf.data(), buf.size()), "write");
    if (n != buf.size()) Check(Status::IOError("short write"), "write");
  }
  Check(fs.Fsync(fh, /*datasync=*/false), "fsync");
  Check(fs.Release(fh), "release");
}

void ReportBytes(benchmark::State& state, uint64_t bytes, double gen_seconds) {
  state.SetBytesProcessed(static_cast<int64_t>(bytes * state.iterations()));
  state.counters["MBps"] =
      benchmark::Counter(static_cast<double>(bytes * state.iterations()) / 1e6,
                         benchmark::Counter::kIsRate);
  if (gen_seconds > 0) {
    state.counters["gen_MBps"] = static_cast<double>(bytes * state.iterations()) / 1e6 / gen_seconds;
  }
}

void BM_IngestUnique(benchmark::State& state) {
  const uint64_t bytes = BenchBytes();
  double gen = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto store = std::make_unique<TempStore>();
    state.ResumeTiming();
    WriteStream(store->fs(), "unique", bytes, /*stream=*/1, &state, &gen);
    state.PauseTiming();
    store.reset();  // close and remove: not timed
    state.ResumeTiming();
  }
  ReportBytes(state, bytes, gen);
}
BENCHMARK(BM_IngestUnique)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_IngestDuplicate(benchmark::State& state) {
  const uint64_t bytes = BenchBytes();
  double gen = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto store = std::make_unique<TempStore>();
    // The first copy (not timed) stores every chunk.
    WriteStream(store->fs(), "first", bytes, /*stream=*/1, nullptr, nullptr);
    state.ResumeTiming();
    WriteStream(store->fs(), "second", bytes, /*stream=*/1, &state, &gen);
    state.PauseTiming();
    store.reset();
    state.ResumeTiming();
  }
  ReportBytes(state, bytes, gen);
}
BENCHMARK(BM_IngestDuplicate)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SmallFiles(benchmark::State& state) {
  // Every file gets its own bytes (Flink state files are unique), generated up front.
  std::vector<char> data(kSmallFiles * kSmallFileSize);
  for (int i = 0; i < kSmallFiles; i++) {
    FillRandom(data.data() + i * kSmallFileSize, kSmallFileSize, /*stream=*/2, i);
  }
  for (auto _ : state) {
    state.PauseTiming();
    auto store = std::make_unique<TempStore>();
    Filesystem& fs = store->fs();
    uint64_t dir = Check(fs.Mkdir(kRootIno, "chk-1", 0755, kCaller), "mkdir").ino;
    state.ResumeTiming();
    for (int i = 0; i < kSmallFiles; i++) {
      char name[32];
      std::snprintf(name, sizeof name, "state-%05d", i);
      auto [attr, fh] = Check(fs.Create(dir, name, 0644, kCreateFlags, kCaller), "create");
      size_t n = Check(fs.Write(fh, 0, data.data() + i * kSmallFileSize, kSmallFileSize), "write");
      if (n != kSmallFileSize) Check(Status::IOError("short write"), "write");
      Check(fs.Fsync(fh, /*datasync=*/false), "fsync");
      Check(fs.Release(fh), "release");
    }
    state.PauseTiming();
    store.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(kSmallFiles * state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(kSmallFiles * kSmallFileSize * state.iterations()));
}
BENCHMARK(BM_SmallFiles)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace snapfs
