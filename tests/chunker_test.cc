#include "core/chunks/chunker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/chunk_id.h"
#include "tests/util/random.h"

namespace snapfs {
namespace {

constexpr uint64_t kSeed = 0x5eed;
using test::kMiB;

std::vector<ChunkId> ChunkIds(const std::vector<uint8_t>& buf, const std::vector<size_t>& cuts) {
  std::vector<ChunkId> ids;
  size_t pos = 0;
  for (size_t len : cuts) {
    ids.push_back(ChunkId::Of(buf.data() + pos, len, kSeed));
    pos += len;
  }
  return ids;
}

ChunkerParams Params(uint32_t min, uint32_t avg, uint32_t max, uint32_t nc = 2) {
  ChunkerParams p;
  p.min_size = min;
  p.avg_size = avg;
  p.max_size = max;
  p.normalization = nc;
  return p;
}

void ExpectInvalid(const ChunkerParams& p, const std::string& needle) {
  Status s = p.Validate();
  EXPECT_TRUE(s.Is(Code::kInvalidArgument)) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(ChunkerTest, ValidateAcceptsDefaultsAndEdges) {
  EXPECT_TRUE(ChunkerParams{}.Validate().ok());
  EXPECT_TRUE(Params(64, 128, 129, 4).Validate().ok());
  EXPECT_TRUE(Params(1024, 4096, 16 * kMiB, 0).Validate().ok());
  EXPECT_TRUE(Params(2048, 8 * kMiB, 16 * kMiB, 4).Validate().ok());
}

TEST(ChunkerTest, ValidateRejectsBadParams) {
  ExpectInvalid(Params(63, 128, 1024), "min_size");
  ExpectInvalid(Params(0, 128, 1024), "min_size");
  ExpectInvalid(Params(64, 0, 1024), "power of two");
  ExpectInvalid(Params(64, 1000, 4096), "power of two");
  ExpectInvalid(Params(4096, 4096, 8192), "less than avg_size");
  ExpectInvalid(Params(8192, 4096, 16384), "less than avg_size");
  ExpectInvalid(Params(1024, 4096, 4096), "less than max_size");
  ExpectInvalid(Params(1024, 4096, 2048), "less than max_size");
  ExpectInvalid(Params(1024, 4096, 16 * kMiB + 1), "16 MiB");
  ExpectInvalid(Params(1024, 8 * kMiB, 32 * kMiB), "16 MiB");
  ExpectInvalid(Params(16384, 65536, 262144, 5), "normalization");
}

TEST(ChunkerTest, EmptyAndTinyInputs) {
  Chunker c(ChunkerParams{});
  EXPECT_TRUE(c.Split(nullptr, 0).empty());
  EXPECT_EQ(c.NextCut(nullptr, 0, true), 0u);
  EXPECT_EQ(c.NextCut(nullptr, 0, false), 0u);
  auto buf = test::RandomByteVector(c.params().min_size, 1);
  EXPECT_EQ(c.Split(buf.data(), 1), std::vector<size_t>{1});
  EXPECT_EQ(c.Split(buf.data(), buf.size()), std::vector<size_t>{buf.size()});
  EXPECT_EQ(c.NextCut(buf.data(), buf.size(), false), 0u);
}

TEST(ChunkerTest, Deterministic) {
  auto buf = test::RandomByteVector(8 * kMiB, 2);
  Chunker a(ChunkerParams{});
  Chunker b(ChunkerParams{});
  auto cuts = a.Split(buf.data(), buf.size());
  EXPECT_GT(cuts.size(), 50u);
  EXPECT_EQ(cuts, a.Split(buf.data(), buf.size()));
  EXPECT_EQ(cuts, b.Split(buf.data(), buf.size()));
}

// Pins the cut points for a fixed input: stored data depends on the gear table, the masks
// and the cut rule never changing. If this fails, you changed the on-disk format.
TEST(ChunkerTest, GoldenCuts) {
  auto buf = test::RandomByteVector(1 * kMiB, 42);
  Chunker c(ChunkerParams{});
  EXPECT_EQ(c.Split(buf.data(), buf.size()),
            (std::vector<size_t>{67425, 80335, 89388, 72326, 103273, 20086, 72280, 67094, 67176,
                                 77059, 77237, 67344, 67107, 68562, 51884}));
  Chunker small(Params(256, 1024, 8192));
  EXPECT_EQ(small.Split(buf.data(), 16384),
            (std::vector<size_t>{1093, 600, 1028, 1842, 1156, 1043, 1134, 1362, 1087, 1194, 1086,
                                 1270, 1063, 1056, 370}));
}

// The cut rule as docs/ and chunker.cc's header state it, one byte at a time and written
// apart from chunker.cc (whose search runs several hashes at once): the gear table from
// SplitMix64 seeded with "snapfsCD", fp = (fp << 1) + GEAR[byte] from the byte after
// min_size, a cut where fp has none of the mask's bits (its top bits below bit 63, more of
// them before avg_size), a forced cut at max_size.
size_t ReferenceCut(const ChunkerParams& p, const uint8_t* data, size_t n) {
  static const std::vector<uint64_t> gear = [] {
    std::vector<uint64_t> t(256);
    uint64_t state = 0x736e617066734344ULL;
    for (auto& v : t) {
      uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      v = z ^ (z >> 31);
    }
    return t;
  }();
  auto top_mask = [](unsigned bits) { return ((uint64_t{1} << bits) - 1) << (63 - bits); };
  const unsigned bits = static_cast<unsigned>(std::countr_zero(p.avg_size));
  const uint64_t strict = top_mask(bits + p.normalization);
  const uint64_t loose = top_mask(bits - p.normalization);
  if (n <= p.min_size) return n;
  const size_t limit = std::min<size_t>(n, p.max_size);
  uint64_t fp = 0;
  for (size_t i = p.min_size; i < limit; i++) {
    fp = (fp << 1) + gear[data[i]];
    if (!(fp & (i < p.avg_size ? strict : loose))) return i + 1;
  }
  return limit;
}

TEST(ChunkerTest, CutsAreTheOneByteAtATimeRulesCuts) {
  std::mt19937_64 rng(7);
  const std::vector<ChunkerParams> params = {
      ChunkerParams{},          Params(64, 128, 256, 0),  Params(64, 128, 4096, 1),
      Params(100, 256, 70000),  Params(256, 1024, 8192),  Params(4096, 8192, 1 << 20, 4),
      Params(2048, 65536, 1 << 20, 0),
  };
  auto random = test::RandomByteVector(3 * kMiB + 77, 11);
  std::vector<uint8_t> zeros(600 * 1024, 0);
  std::vector<uint8_t> pattern(600 * 1024);  // low entropy: cuts rare or never
  for (size_t i = 0; i < pattern.size(); i++) pattern[i] = static_cast<uint8_t>("abcab"[i % 5]);
  size_t cuts_checked = 0;
  for (const auto& p : params) {
    Chunker c(p);
    for (const auto* buf : {&random, &zeros, &pattern}) {
      // Every chunk of the buffer, then 200 random windows of random lengths (the lanes'
      // block boundaries fall everywhere relative to the cuts).
      for (size_t pos = 0; pos < buf->size();) {
        const size_t want = ReferenceCut(p, buf->data() + pos, buf->size() - pos);
        ASSERT_EQ(c.NextCut(buf->data() + pos, buf->size() - pos, true), want) << pos;
        pos += want;
        cuts_checked++;
      }
      for (int i = 0; i < 200; i++) {
        const size_t pos = rng() % buf->size();
        const size_t n = rng() % (buf->size() - pos + 1);
        ASSERT_EQ(c.NextCut(buf->data() + pos, n, true), ReferenceCut(p, buf->data() + pos, n))
            << "min " << p.min_size << " avg " << p.avg_size << " at " << pos << " n " << n;
      }
    }
  }
  EXPECT_GT(cuts_checked, 20000u);
}

void CheckBounds(const Chunker& c, const std::vector<uint8_t>& buf) {
  const auto& p = c.params();
  auto cuts = c.Split(buf.data(), buf.size());
  ASSERT_FALSE(cuts.empty());
  EXPECT_EQ(std::accumulate(cuts.begin(), cuts.end(), size_t{0}), buf.size());
  for (size_t i = 0; i + 1 < cuts.size(); i++) {
    EXPECT_GT(cuts[i], p.min_size) << "chunk " << i;  // cut points are in (min, max]
    EXPECT_LE(cuts[i], p.max_size) << "chunk " << i;
  }
  EXPECT_GE(cuts.back(), 1u);
  EXPECT_LE(cuts.back(), p.max_size);
}

TEST(ChunkerTest, ChunksWithinBounds) {
  auto random = test::RandomByteVector(4 * kMiB + 123, 3);
  std::vector<uint8_t> zeros(4 * kMiB + 7, 0);
  // Low-entropy data: a short repeating pattern.
  std::vector<uint8_t> text(4 * kMiB);
  const char kLine[] = "the quick brown fox jumps over the lazy dog 0123456789\n";
  for (size_t i = 0; i < text.size(); i++) text[i] = kLine[i % (sizeof kLine - 1)];
  for (const auto& params : {ChunkerParams{}, Params(64, 128, 256, 4), Params(256, 1024, 4096, 0),
                             Params(2048, 8192, 65536, 1), Params(4096, 16384, 16384 + 1, 3)}) {
    Chunker c(params);
    SCOPED_TRACE(std::to_string(params.min_size) + "/" + std::to_string(params.avg_size) + "/" +
                 std::to_string(params.max_size));
    CheckBounds(c, random);
    CheckBounds(c, zeros);
    CheckBounds(c, text);
  }
}

TEST(ChunkerTest, NextCutNeedsMoreBytes) {
  Chunker c(ChunkerParams{});
  const auto& p = c.params();
  auto buf = test::RandomByteVector(2 * kMiB, 4);
  auto cuts = c.Split(buf.data(), buf.size());
  // Find a content-defined chunk (shorter than max) to probe around.
  size_t pos = 0, len = 0;
  for (size_t l : cuts) {
    if (l < p.max_size) {
      len = l;
      break;
    }
    pos += l;
  }
  ASSERT_GT(len, p.min_size);
  const uint8_t* d = buf.data() + pos;
  EXPECT_EQ(c.NextCut(d, len, false), len);
  EXPECT_EQ(c.NextCut(d, len + 1, false), len);
  EXPECT_EQ(c.NextCut(d, buf.size() - pos, false), len);
  // No cut within fewer than max bytes: undecided unless at EOF.
  EXPECT_EQ(c.NextCut(d, len - 1, false), 0u);
  EXPECT_EQ(c.NextCut(d, len - 1, true), len - 1);
  EXPECT_EQ(c.NextCut(d, p.min_size + 1, false), 0u);
  EXPECT_EQ(c.NextCut(d, p.min_size, false), 0u);
  EXPECT_EQ(c.NextCut(d, p.min_size, true), p.min_size);
}

TEST(ChunkerTest, NextCutForcesMaxSize) {
  // All-zero input: the gear hash settles on a constant that does not match the mask, so
  // there is no content-defined cut and every chunk is max_size.
  Chunker c(ChunkerParams{});
  const size_t max = c.params().max_size;
  std::vector<uint8_t> zeros(3 * max + 100, 0);
  EXPECT_EQ(c.NextCut(zeros.data(), max - 1, false), 0u);
  EXPECT_EQ(c.NextCut(zeros.data(), max - 1, true), max - 1);
  EXPECT_EQ(c.NextCut(zeros.data(), max, false), max);
  EXPECT_EQ(c.NextCut(zeros.data(), max + 1, false), max);
  EXPECT_EQ(c.NextCut(zeros.data(), zeros.size(), true), max);
  EXPECT_EQ(c.Split(zeros.data(), zeros.size()), (std::vector<size_t>{max, max, max, 100}));
}

// Drives NextCut the way a writer does: bytes arrive in pieces, and an undecided answer (0)
// means "append more and ask again".
std::vector<size_t> StreamCuts(const Chunker& c, const std::vector<uint8_t>& src, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> piece(1, 3 * c.params().max_size / 2);
  std::vector<uint8_t> pending;
  std::vector<size_t> cuts;
  size_t fed = 0;
  while (fed < src.size()) {
    size_t k = std::min(piece(rng), src.size() - fed);
    pending.insert(pending.end(), src.begin() + fed, src.begin() + fed + k);
    fed += k;
    const bool eof = fed == src.size();
    size_t off = 0;
    while (off < pending.size()) {
      size_t len = c.NextCut(pending.data() + off, pending.size() - off, eof);
      if (len == 0) break;
      cuts.push_back(len);
      off += len;
    }
    pending.erase(pending.begin(), pending.begin() + off);
  }
  EXPECT_TRUE(pending.empty());
  return cuts;
}

TEST(ChunkerTest, StreamingMatchesSplit) {
  auto buf = test::RandomByteVector(8 * kMiB + 4321, 5);
  for (const auto& params : {ChunkerParams{}, Params(256, 1024, 4096, 1)}) {
    Chunker c(params);
    auto whole = c.Split(buf.data(), buf.size());
    for (uint64_t seed = 0; seed < 3; seed++) {
      EXPECT_EQ(StreamCuts(c, buf, seed), whole) << "seed " << seed;
    }
  }
}

TEST(ChunkerTest, ShiftResistance) {
  Chunker c(ChunkerParams{});
  auto a = test::RandomByteVector(8 * kMiB, 6);
  auto b = a;
  b.insert(b.begin() + 1000, 0xab);
  auto ids_a = ChunkIds(a, c.Split(a.data(), a.size()));
  auto ids_b = ChunkIds(b, c.Split(b.data(), b.size()));
  std::unordered_set<ChunkId, ChunkIdHash> set_a(ids_a.begin(), ids_a.end());
  size_t changed = 0;
  for (const auto& id : ids_b) changed += set_a.count(id) == 0;
  std::cout << "shift: " << changed << " of " << ids_b.size() << " chunks changed\n";
  EXPECT_LE(changed, 3u);
  EXPECT_GT(ids_b.size(), 50u);
}

double CheckAverage(const ChunkerParams& params, size_t n) {
  Chunker c(params);
  auto buf = test::RandomByteVector(n, 7);
  auto cuts = c.Split(buf.data(), buf.size());
  const double avg = static_cast<double>(n) / static_cast<double>(cuts.size());
  std::cout << "avg chunk size for " << params.min_size << "/" << params.avg_size << "/"
            << params.max_size << " nc=" << params.normalization << ": " << avg << " bytes ("
            << cuts.size() << " chunks)\n";
  EXPECT_GT(avg, 0.65 * params.avg_size);
  EXPECT_LT(avg, 1.35 * params.avg_size);
  return avg;
}

TEST(ChunkerTest, AverageChunkSize) {
  double avg = CheckAverage(ChunkerParams{}, 64 * kMiB);
  RecordProperty("avg_chunk_size", std::to_string(avg));
  CheckAverage(Params(2048, 8192, 65536, 2), 16 * kMiB);
  CheckAverage(Params(16384, 65536, 262144, 0), 64 * kMiB);
  CheckAverage(Params(16384, 65536, 262144, 3), 64 * kMiB);
}

TEST(ChunkerTest, DedupNearIdenticalFiles) {
  Chunker c(ChunkerParams{});
  auto a = test::RandomByteVector(16 * kMiB, 8);
  auto b = a;
  std::mt19937_64 rng(9);
  // A few scattered small edits: overwrites, one insertion and one deletion.
  for (int i = 0; i < 8; i++) {
    size_t at = rng() % (b.size() - 64);
    for (size_t k = 0; k < 1 + rng() % 32; k++) b[at + k] ^= 0x5a;
  }
  b.insert(b.begin() + static_cast<ptrdiff_t>(rng() % b.size()), {1, 2, 3, 4, 5});
  auto del = static_cast<ptrdiff_t>(rng() % (b.size() - 100));
  b.erase(b.begin() + del, b.begin() + del + 17);

  std::unordered_map<ChunkId, size_t, ChunkIdHash> unique;
  for (const auto* f : {&a, &b}) {
    auto cuts = c.Split(f->data(), f->size());
    size_t pos = 0;
    for (size_t len : cuts) {
      unique.emplace(ChunkId::Of(f->data() + pos, len, kSeed), len);
      pos += len;
    }
  }
  size_t stored = 0;
  for (const auto& [id, len] : unique) stored += len;
  const double ratio = static_cast<double>(stored) / static_cast<double>(a.size());
  std::cout << "dedup: two 16 MiB files with 10 small edits store " << stored
            << " unique bytes = " << ratio << "x of one file\n";
  RecordProperty("dedup_ratio", std::to_string(ratio));
  EXPECT_LT(ratio, 1.2);
}

}  // namespace
}  // namespace snapfs
