// Flusher: the threads that run background flushes ("flights", FileData::StartFlight).
//
// Why threads of our own: a threshold flush (chunking, hashing, the pack append and its
// fdatasync, the commit) took ~10 ms per 8 MiB in the thread of the WRITE that crossed
// the threshold, with the file's lock held: every other WRITE of the stream waited, so
// taking bytes from the kernel and committing them never overlapped. A flight runs here
// instead, while the FUSE threads go on taking WRITEs into the buffer.
//
// kThreads: the machines this runs on have few cores; one flight per file at a time, and
// two files' flights at once keep both cores of the smallest ones busy.
//
// Thread-safety: thread-safe. The destructor runs every task already submitted, then
// joins the threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace snapfs {

class Flusher {
 public:
  static constexpr int kThreads = 2;

  Flusher();
  ~Flusher();
  Flusher(const Flusher&) = delete;
  Flusher& operator=(const Flusher&) = delete;

  void Submit(std::function<void()> task);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace snapfs
