// fuse/write_order.h: a file's WRITEs go in the order they were read, a WRITE never waits
// long on one whose handler does not come, and other files are not held up.
#include "fuse/write_order.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

namespace snapfs::fuse {
namespace {

using std::chrono::milliseconds;

TEST(WriteOrder, ALaterWriteWaitsUntilTheEarlierOneIsDone) {
  WriteOrder order;
  order.Noted(7, 100);
  order.Noted(7, 101);
  order.Noted(8, 102);  // another file
  std::optional<WriteOrder::Turn> first;
  first.emplace(&order, 7, 100);
  std::atomic<bool> later_ran{false};
  std::thread later([&] {
    WriteOrder::Turn t(&order, 7, 101);
    later_ran = true;
  });
  {
    WriteOrder::Turn other_file(&order, 8, 102);  // does not wait for inode 7
  }
  // However long this sleeps, the later WRITE cannot go while the earlier one is handled.
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(later_ran.load());
  first.reset();
  later.join();
  EXPECT_TRUE(later_ran.load());
  EXPECT_EQ(order.noted_for_tests(), 0u);
}

TEST(WriteOrder, AWriteWhoseHandlerNeverCameIsForgotten) {
  WriteOrder order;
  order.Noted(7, 100);  // read, but its handler never runs (answered by libfuse itself)
  order.Noted(7, 101);
  const auto t0 = std::chrono::steady_clock::now();
  {
    WriteOrder::Turn t(&order, 7, 101);  // returns once 100 counts as stale
    EXPECT_GE(std::chrono::steady_clock::now() - t0, WriteOrder::kStaleAfter);
    EXPECT_EQ(order.noted_for_tests(), 1u);  // itself
  }
  EXPECT_EQ(order.noted_for_tests(), 0u);
  WriteOrder::Turn late(&order, 7, 100);  // its handler comes after all: goes at once
  WriteOrder::Turn unnoted(&order, 9, 0);  // a WRITE the hook never saw
}

TEST(WriteOrder, ManyThreadsTakeTheirTurnsInOrder) {
  WriteOrder order(std::chrono::minutes(10));  // none goes stale while threads start
  constexpr int kWrites = 200;
  for (int i = 1; i <= kWrites; i++) order.Noted(3, static_cast<uint64_t>(i));
  std::vector<int> done;
  std::mutex done_mu;
  std::vector<std::thread> threads;
  // Started in reverse: without the order they would mostly finish in reverse too.
  for (int i = kWrites; i >= 1; i--) {
    threads.emplace_back([&, i] {
      WriteOrder::Turn t(&order, 3, static_cast<uint64_t>(i));
      std::lock_guard l(done_mu);
      done.push_back(i);
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(done.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; i++) EXPECT_EQ(done[i], i + 1);
}

}  // namespace
}  // namespace snapfs::fuse
