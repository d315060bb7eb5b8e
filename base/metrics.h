// Metrics: counters, gauges and fixed-bucket histograms, and their Prometheus text
// exposition (format 0.0.4). docs/metrics.md lists every metric the daemon exports.
//
// The hot path (Counter::Inc, Histogram::Observe) is lock-free: FUSE requests run on many
// threads and must not meet on one mutex. Registration and exposition take the registry's
// mutex; callers register once and keep the returned pointer (it lives as long as the
// registry, which for Global() is the process).
//
// Also here: the few facts about a running daemon that `snapfs status` reports and the
// metrics mirror (start time, last GC, the metrics listener), so the core and the FUSE
// layer record them without knowing who reads them.
//
// Thread-safety: every class and function here is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"

namespace snapfs::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  // `bounds`: the upper bounds of the buckets, ascending (+Inf is implied).
  explicit Histogram(std::span<const double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Per-bucket counts (not cumulative), the last one for +Inf; and the sum.
  std::vector<uint64_t> counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Latency buckets, in seconds: 50 us .. 10 s.
std::span<const double> LatencyBuckets();

enum class Type { kCounter, kGauge, kHistogram };

// Writes the exposition text: one Family() call, then its samples.
class Exposition {
 public:
  void Family(std::string_view name, std::string_view help, Type type);
  // One sample line; `name` includes a histogram's "_bucket"/"_sum"/"_count" suffix.
  void Sample(std::string_view name, const Labels& labels, double value);
  void Histogram(std::string_view name, const Labels& labels, const metrics::Histogram& h);
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

class Registry {
 public:
  // The same name and labels give the same object; help and type come from the first
  // registration of the name (a later one with another type is a programming error and
  // returns a detached object that is never exported).
  Counter* GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge* GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          std::span<const double> bounds, const Labels& labels = {});

  // A collector adds samples computed at scrape time (values another component already
  // counts, e.g. ChunkStoreStats). It runs under the registry's mutex: RemoveCollector
  // returns only when no scrape is running it any more.
  using Collector = std::function<void(Exposition&)>;
  int AddCollector(Collector c);
  void RemoveCollector(int id);

  std::string Expose() const;

 private:
  struct Child {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<metrics::Histogram> histogram;
  };
  struct Fam {
    std::string help;
    Type type;
    std::vector<std::unique_ptr<Child>> children;
  };
  Child* GetChild(const std::string& name, const std::string& help, Type type, const Labels& labels,
                  std::span<const double> bounds);

  mutable Mutex mu_;
  std::map<std::string, Fam> families_ GUARDED_BY(mu_);
  std::map<int, Collector> collectors_ GUARDED_BY(mu_);
  int next_collector_ GUARDED_BY(mu_) = 1;
  std::vector<std::unique_ptr<Child>> orphans_ GUARDED_BY(mu_);  // mistyped registrations
};

// The process's registry: what the daemon serves on /metrics.
Registry& Global();

// ---- metrics recorded by the core itself ----

// Registers the metrics below (so they are exported as 0 before anything happened).
void RegisterCoreMetrics();

// A chunk whose bytes do not match its hash was read.
Counter& HashMismatches();
// A metadata transaction conflicted with another (of this daemon or any other on the
// store) and ran again (kv::RetryOnConflict).
Counter& TxnConflicts();

// ---- daemon facts (snapfs status) ----

struct GcRun {
  int64_t when_ns = 0;  // wall clock at the end of the run
  double duration_s = 0;
  uint64_t bytes_freed = 0;
  std::string error;  // empty if it succeeded
};
// Counts a GC run in the metrics and remembers it as the last one.
void RecordGcRun(const GcRun& run);
std::optional<GcRun> LastGcRun();
uint64_t GcFailures();

// An fsck the daemon ran (snapfs fsck on a mount): what it found. `snapfs status` says
// degraded while the last one found problems or failed, until a later one is clean.
struct FsckRun {
  int64_t when_ns = 0;    // wall clock at the end of the run
  bool verified = false;  // --verify (chunk bytes re-hashed)
  uint64_t problems = 0;
  std::string error;  // empty unless fsck itself failed (e.g. unreadable metadata)
};
void RecordFsckRun(const FsckRun& run);
std::optional<FsckRun> LastFsckRun();

struct DaemonInfo {
  int64_t start_ns = 0;
  std::string store, mountpoint;
  std::string metrics_address;  // "" when --metrics off
  bool metrics_listening = false;
  std::string metrics_error;  // why it is not listening
};
void SetDaemonInfo(const DaemonInfo& info);
DaemonInfo GetDaemonInfo();

// Requests the FUSE layer answered with EIO (kept here so status can read it).
Counter& IoErrors();
// The last of them, as logged ("WRITE of /f: I/O error: ..."): what `status` shows (for a
// shared store, through the session's health record, core/sessions.h).
struct IoErrorNote {
  int64_t when_ns = 0;
  std::string what;
};
void NoteIoError(std::string what);
std::optional<IoErrorNote> LastIoError();

}  // namespace snapfs::metrics
