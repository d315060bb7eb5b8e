#include "core/fs/flusher.h"

namespace snapfs {

Flusher::Flusher() {
  for (int i = 0; i < kThreads; i++) threads_.emplace_back([this] { Loop(); });
}

Flusher::~Flusher() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Flusher::Submit(std::function<void()> task) {
  {
    std::lock_guard l(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Flusher::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and everything submitted ran
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace snapfs
