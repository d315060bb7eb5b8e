#include "fuse/write_order.h"

namespace snapfs::fuse {

namespace {
thread_local uint64_t tls_write_unique = 0;
}  // namespace

uint64_t CurrentWriteUnique() { return tls_write_unique; }
void SetCurrentWriteUnique(uint64_t unique) { tls_write_unique = unique; }

void WriteOrder::Noted(uint64_t ino, uint64_t unique) {
  std::lock_guard l(mu_);
  pending_[ino][unique] = Pending{std::chrono::steady_clock::now()};
}

WriteOrder::Turn::Turn(WriteOrder* order, uint64_t ino, uint64_t unique)
    : order_(order), ino_(ino), unique_(unique) {
  std::unique_lock l(order_->mu_);
  auto by_ino = order_->pending_.find(ino);
  if (by_ino == order_->pending_.end()) return;
  auto& pending = by_ino->second;
  auto self = pending.find(unique);
  if (self == pending.end()) return;  // forgotten as stale: go ahead
  noted_ = true;
  self->second.started = true;
  for (;;) {
    auto first = pending.begin();  // the map holds at least this request
    if (first->first == unique) return;
    if (first->second.started) {
      // An earlier WRITE is being handled: wait for it, as its lock would make us.
      order_->cv_.wait(l);
      continue;
    }
    const auto stale_at = first->second.read_at + order_->stale_after_;
    if (std::chrono::steady_clock::now() >= stale_at) {
      pending.erase(first);  // its handler never came: do not wait on it again
      continue;
    }
    order_->cv_.wait_until(l, stale_at);
  }
}

WriteOrder::Turn::~Turn() {
  if (!noted_) return;
  {
    std::lock_guard l(order_->mu_);
    auto by_ino = order_->pending_.find(ino_);
    if (by_ino != order_->pending_.end()) {
      by_ino->second.erase(unique_);
      if (by_ino->second.empty()) order_->pending_.erase(by_ino);
    }
  }
  order_->cv_.notify_all();
}

size_t WriteOrder::noted_for_tests() const {
  std::lock_guard l(mu_);
  size_t n = 0;
  for (const auto& [ino, m] : pending_) n += m.size();
  return n;
}

}  // namespace snapfs::fuse
