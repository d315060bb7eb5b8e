// ChunkId::Of is XXH3-128 with the store's seed, whichever build of XXH3 computes it
// (base/chunk_id.cc takes libxxhash's run-time dispatch to AVX2/AVX-512 on x86-64): the
// ids of stored chunks are on disk, so the function must never change.
#include "base/chunk_id.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>
#include <vector>

#include "tests/util/random.h"

namespace snapfs {
namespace {

TEST(ChunkIdTest, IsXxh3With128BitsOfTheSeededHashBigEndian) {
  // Every length up to 1,100 (XXH3 has separate code for 0, 1-3, 4-8, 9-16, 17-128,
  // 129-240 and longer inputs, the last in stripes of 64 bytes and blocks of 1 KiB), then
  // longer random ones, each with a few seeds: against libxxhash's portable entry point.
  auto buf = test::RandomByteVector(300 * 1024, 5);
  std::mt19937_64 rng(9);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 1100; n++) lengths.push_back(n);
  for (int i = 0; i < 200; i++) lengths.push_back(rng() % buf.size());
  for (size_t n : lengths) {
    for (uint64_t seed : {uint64_t{0}, uint64_t{0x5eed}, rng()}) {
      const size_t off = rng() % (buf.size() - n + 1);  // any alignment
      XXH128_canonical_t want;
      XXH128_canonicalFromHash(&want, XXH3_128bits_withSeed(buf.data() + off, n, seed));
      ASSERT_EQ(ChunkId::Of(buf.data() + off, n, seed), ChunkId::FromBytes(want.digest))
          << "length " << n << " seed " << seed;
    }
  }
}

TEST(ChunkIdTest, GoldenIds) {
  // Ids that stores hold: a change here breaks dedup against every existing store.
  const char kText[] = "snapfs: the chunk id of this text is fixed forever";
  EXPECT_EQ(ChunkId::Of(kText, sizeof(kText) - 1, 0).Hex(), "66f480c3054cd5d8593cf26575e981d1");
  auto big = test::RandomByteVector(100000, 42);
  EXPECT_EQ(ChunkId::Of(big.data(), big.size(), 0x5eed).Hex(), "cbcfc17b6eba3b1025dfa43d4d2b8683");
}

}  // namespace
}  // namespace snapfs
