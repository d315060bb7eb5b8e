#include "core/fs/buffer_pool.h"

#include <utility>

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
  MutexLock l(&mu_);
  if (kept_bytes_ + cap > kMaxBytes) return;
  kept_bytes_ += cap;
  free_.emplace(cap, std::move(s));
}

}  // namespace snapfs
