#include "core/fs/buffer_pool.h"

#include <utility>

namespace snapfs {

std::string BufferPool::Take() {
  {
    MutexLock l(&mu_);
    if (!free_.empty()) {
      std::string s = std::move(free_.back());
      free_.pop_back();
      return s;
    }
  }
  std::string s;
  s.reserve(kCapacity);
  return s;
}

void BufferPool::Give(std::string&& s) {
  if (s.capacity() < kCapacity || s.capacity() > 2 * kCapacity) return;  // freed by the caller
  s.clear();
  MutexLock l(&mu_);
  if (free_.size() < kMaxBuffers) free_.push_back(std::move(s));
}

}  // namespace snapfs
