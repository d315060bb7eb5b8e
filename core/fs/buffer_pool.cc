#include "core/fs/buffer_pool.h"

#include <utility>
#include <vector>

namespace snapfs {

std::string BufferPool::Take(size_t want) {
  {
    MutexLock l(&mu_);
    auto it = free_.lower_bound(want);
    if (it != free_.end()) {
      std::string s = std::move(it->second);
      kept_bytes_ -= it->first;
      free_.erase(it);
      return s;
    }
  }
  constexpr size_t kMiB = 1 << 20;
  std::string s;
  s.reserve((want + kMiB - 1) / kMiB * kMiB);
  return s;
}

void BufferPool::Give(std::string&& s) {
  const size_t cap = s.capacity();
  if (cap < kMinSize || cap > kMaxKeep) return;  // freed by the caller
  s.clear();
  std::vector<std::string> evicted;  // freed after the lock is released
  MutexLock l(&mu_);
  kept_bytes_ += cap;
  free_.emplace(cap, std::move(s));
  // Over budget: the smallest go. A large buffer serves any request (Take hands out the
  // smallest that is large enough), a small one only small requests; keeping small ones
  // while large ones were freed made most streamed ranges start in fresh memory.
  while (kept_bytes_ > kMaxBytes) {
    auto it = free_.begin();
    kept_bytes_ -= it->first;
    evicted.push_back(std::move(it->second));
    free_.erase(it);
  }
}

std::vector<size_t> BufferPool::KeptCapacities() const {
  MutexLock l(&mu_);
  std::vector<size_t> out;
  for (const auto& [cap, s] : free_) out.push_back(cap);
  return out;
}

}  // namespace snapfs
