// Snapshot operations through core::Filesystem (no FUSE, no CLI process):
//   BM_SnapshotMeasure  MeasureSnapshots of one checkpoint of FILES files (what `snapfs ls`
//                       and `snapfs du` compute per snapshot)
//   BM_SnapshotRemove   RemoveSnapshots of it (`snapfs rm`), one transaction
//   BM_SnapshotCommit   the rename of _metadata that recognises it and records its pins
// FILES is SNAPFS_BENCH_SNAPSHOT_FILES (default 10000) files of 4 KiB, named by a
// Flink-like _metadata (writeUTF bare names). Setup is outside the timed region.
#include <benchmark/benchmark.h>
#include <fcntl.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "core/fs/filesystem.h"
#include "core/store.h"

namespace snapfs {
namespace {

int Files() {
  const char* e = std::getenv("SNAPFS_BENCH_SNAPSHOT_FILES");
  int n = e && *e ? std::atoi(e) : 10000;
  return n > 0 ? n : 10000;
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "snapshot_bench: %s: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

struct Fixture {
  std::string dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<Filesystem> fs;
  uint64_t chk = 0;
  std::string marker;

  Fixture() {
    const char* base = std::getenv("SNAPFS_BENCH_DIR");
    dir = std::string(base && *base ? base : "/tmp") + "/snapfs-snapbench-" + std::to_string(getpid());
    std::filesystem::remove_all(dir);
    Check(Store::Init(dir, {}), "init");
    auto s = Store::Open(dir);
    Check(s.status(), "open");
    store = std::move(*s);
    auto f = Filesystem::Open(store.get());
    Check(f.status(), "fs");
    fs = std::move(*f);
  }
  ~Fixture() {
    fs.reset();
    store.reset();
    std::filesystem::remove_all(dir);
  }
  // job/chk-N with `n` files and a marker naming them, not yet committed.
  void Build(int n, int id) {
    auto job = fs->Lookup(kRootIno, "job");
    if (!job.ok()) job = fs->Mkdir(kRootIno, "job", 0755, {});
    Check(job.status(), "mkdir job");
    auto c = fs->Mkdir(job->ino, "chk-" + std::to_string(id), 0755, {});
    Check(c.status(), "mkdir chk");
    chk = c->ino;
    std::string data(4096, 'x');
    marker = std::string("\x49\x60\x67\x2d\0\0\0\3", 8);
    for (int i = 0; i < n; i++) {
      char name[32];
      int len = std::snprintf(name, sizeof name, "f-%08d", i);
      std::memcpy(data.data(), name, static_cast<size_t>(len));  // unique content
      std::memcpy(data.data() + 100, &id, sizeof id);
      auto fh = fs->Create(chk, name, 0644, O_WRONLY, {});
      Check(fh.status(), "create");
      Check(fs->Write(fh->second, 0, data.data(), data.size()).status(), "write");
      Check(fs->Release(fh->second), "release");
      marker.push_back(0);
      marker.push_back(static_cast<char>(len));
      marker.append(name, static_cast<size_t>(len));
    }
    auto fh = fs->Create(chk, "._metadata.inprogress", 0644, O_WRONLY, {});
    Check(fh.status(), "create marker");
    Check(fs->Write(fh->second, 0, marker.data(), marker.size()).status(), "write marker");
    Check(fs->Release(fh->second), "release marker");
  }
  void Commit() { Check(fs->Rename(chk, "._metadata.inprogress", chk, "_metadata"), "commit"); }
};

void BM_SnapshotCommit(benchmark::State& state) {
  Fixture f;
  int id = 0;
  for (auto _ : state) {
    state.PauseTiming();
    f.Build(Files(), ++id);
    state.ResumeTiming();
    f.Commit();
  }
  state.counters["files"] = Files();
}

void BM_SnapshotMeasure(benchmark::State& state) {
  Fixture f;
  f.Build(Files(), 1);
  f.Commit();
  for (auto _ : state) {
    auto u = f.fs->MeasureSnapshots({f.chk});
    Check(u.status(), "measure");
    benchmark::DoNotOptimize(u->exclusive);
  }
  state.counters["files"] = Files();
}

void BM_SnapshotRemove(benchmark::State& state) {
  Fixture f;
  int id = 0;
  for (auto _ : state) {
    state.PauseTiming();
    f.Build(Files(), ++id);
    f.Commit();
    state.ResumeTiming();
    auto r = f.fs->RemoveSnapshots({f.chk}, false);
    Check(r.status(), "remove");
  }
  state.counters["files"] = Files();
}

BENCHMARK(BM_SnapshotCommit)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_SnapshotMeasure)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_SnapshotRemove)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace snapfs
