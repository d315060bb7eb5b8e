// Chunking and hashing throughput on random data with the default parameters
// (16/64/256 KiB, normalisation 2).
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "base/chunk_id.h"
#include "core/chunks/chunker.h"

namespace snapfs {
namespace {

constexpr size_t kBufSize = 64 * 1024 * 1024;
constexpr uint64_t kSeed = 0x5eed;

const std::vector<uint8_t>& RandomBuffer() {
  static const std::vector<uint8_t> buf = [] {
    std::mt19937_64 rng(1);
    std::vector<uint8_t> v(kBufSize);
    for (size_t i = 0; i < v.size(); i += 8) {
      uint64_t x = rng();
      std::memcpy(&v[i], &x, 8);
    }
    return v;
  }();
  return buf;
}

void BM_Chunk(benchmark::State& state) {
  const auto& buf = RandomBuffer();
  Chunker chunker(ChunkerParams{});
  size_t chunks = 0;
  for (auto _ : state) {
    auto cuts = chunker.Split(buf.data(), buf.size());
    chunks = cuts.size();
    benchmark::DoNotOptimize(cuts.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size()));
  state.counters["avg_chunk"] = static_cast<double>(buf.size()) / static_cast<double>(chunks);
}
BENCHMARK(BM_Chunk)->Unit(benchmark::kMillisecond);

void BM_Hash(benchmark::State& state) {
  const auto& buf = RandomBuffer();
  constexpr size_t kPiece = 64 * 1024;
  for (auto _ : state) {
    for (size_t pos = 0; pos < buf.size(); pos += kPiece) {
      ChunkId id = ChunkId::Of(buf.data() + pos, kPiece, kSeed);
      benchmark::DoNotOptimize(id);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_Hash)->Unit(benchmark::kMillisecond);

void BM_ChunkAndHash(benchmark::State& state) {
  const auto& buf = RandomBuffer();
  Chunker chunker(ChunkerParams{});
  for (auto _ : state) {
    auto cuts = chunker.Split(buf.data(), buf.size());
    size_t pos = 0;
    for (size_t len : cuts) {
      ChunkId id = ChunkId::Of(buf.data() + pos, len, kSeed);
      benchmark::DoNotOptimize(id);
      pos += len;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size()));
}
BENCHMARK(BM_ChunkAndHash)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace snapfs
