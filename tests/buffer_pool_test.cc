// BufferPool (core/fs/buffer_pool.h): which buffers a full pool keeps, and that a request
// gets a kept buffer rather than fresh memory.
#include "core/fs/buffer_pool.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

namespace snapfs {
namespace {

std::string Reserved(size_t cap) {
  std::string s;
  s.reserve(cap);
  return s;
}

size_t Large(const std::vector<size_t>& caps) {
  size_t n = 0;
  for (size_t c : caps) n += c >= BufferPool::kCapacity;
  return n;
}

TEST(BufferPool, AFullPoolKeepsALargeBufferOverSmallOnes) {
  BufferPool pool;
  constexpr size_t kSmall = 1 << 20;
  // The budget filled with WRITE-sized buffers, as an incremental checkpoint's first
  // WRITEs and outgrown ranges leave it.
  for (size_t i = 0; i < BufferPool::kMaxBytes / kSmall; i++) pool.Give(Reserved(kSmall));
  pool.Give(Reserved(BufferPool::kCapacity));
  auto kept = pool.KeptCapacities();
  ASSERT_EQ(Large(kept), 1u) << "the pool freed its large buffer and kept small ones";
  EXPECT_LE(std::accumulate(kept.begin(), kept.end(), size_t{0}), BufferPool::kMaxBytes);
  // A streamed range asks for kCapacity and gets that buffer.
  std::string got = pool.Take(BufferPool::kCapacity);
  EXPECT_GE(got.capacity(), BufferPool::kCapacity);
  EXPECT_EQ(Large(pool.KeptCapacities()), 0u);
  // A small request gets the smallest kept buffer that is large enough.
  const size_t before = pool.KeptCapacities().size();
  EXPECT_EQ(pool.Take(kSmall).capacity(), kSmall);
  EXPECT_EQ(pool.KeptCapacities().size(), before - 1);
}

TEST(BufferPool, KeepsNoMoreThanItsBudget) {
  BufferPool pool;
  const size_t fit = BufferPool::kMaxBytes / BufferPool::kCapacity;
  for (size_t i = 0; i < fit + 2; i++) pool.Give(Reserved(BufferPool::kCapacity));
  EXPECT_EQ(pool.KeptCapacities().size(), fit);
  for (size_t i = 0; i < fit; i++) pool.Take(BufferPool::kCapacity);
  EXPECT_TRUE(pool.KeptCapacities().empty());
}

TEST(BufferPool, BuffersOutsideTheKeptSizesAreNotKept) {
  BufferPool pool;
  pool.Give(Reserved(BufferPool::kMinSize / 2));
  pool.Give(Reserved(BufferPool::kMaxKeep * 2));
  EXPECT_TRUE(pool.KeptCapacities().empty());
}

}  // namespace
}  // namespace snapfs
