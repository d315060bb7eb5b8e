#include "core/fs/attr_cache.h"

namespace snapfs {

void AttrCache::set_ttl(Clock::duration ttl) {
  MutexLock l(&mu_);
  ttl_ = ttl;
  map_.clear();
  enabled_.store(ttl > Clock::duration::zero(), std::memory_order_relaxed);
}

void AttrCache::Committed(const Inode& n) {
  if (!enabled() || !(n.is_dir() || n.is_reg())) return;
  const auto now = Clock::now();
  MutexLock l(&mu_);
  if (map_.size() >= kMaxEntries && !map_.count(n.ino)) {
    // Full: what has expired goes; if nothing has, everything (a cache miss only costs
    // the database read it saves).
    const auto ttl = ttl_;
    std::erase_if(map_, [&](const auto& kv) { return now - kv.second.at >= ttl; });
    if (map_.size() >= kMaxEntries) map_.clear();
  }
  map_.insert_or_assign(n.ino, Entry{n, now});
}

void AttrCache::Erase(uint64_t ino) {
  if (!enabled()) return;
  MutexLock l(&mu_);
  map_.erase(ino);
}

std::optional<Inode> AttrCache::Get(uint64_t ino, Clock::duration* left) {
  if (!enabled()) return std::nullopt;
  MutexLock l(&mu_);
  auto it = map_.find(ino);
  if (it == map_.end()) return std::nullopt;
  const auto age = Clock::now() - it->second.at;
  if (age >= ttl_) {
    map_.erase(it);
    return std::nullopt;
  }
  *left = ttl_ - age;
  return it->second.node;
}

}  // namespace snapfs
