#include "base/metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace snapfs::metrics {

namespace {

constexpr double kLatency[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                               0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  // Integers (most samples) print without an exponent or a fraction.
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

// Label values escape backslash, double quote and newline; HELP text backslash and newline.
std::string Escape(std::string_view s, bool quote) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

}  // namespace

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); i++) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::counts() const {
  std::vector<uint64_t> c(bounds_.size() + 1);
  for (size_t i = 0; i < c.size(); i++) c[i] = counts_[i].load(std::memory_order_relaxed);
  return c;
}

std::span<const double> LatencyBuckets() { return kLatency; }

void Exposition::Family(std::string_view name, std::string_view help, Type type) {
  static const char* kTypes[] = {"counter", "gauge", "histogram"};
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += Escape(help, false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += kTypes[static_cast<int>(type)];
  out_ += '\n';
}

void Exposition::Sample(std::string_view name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); i++) {
      if (i) out_ += ',';
      out_ += labels[i].first + "=\"" + Escape(labels[i].second, true) + "\"";
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += FormatValue(value);
  out_ += '\n';
}

void Exposition::Histogram(std::string_view name, const Labels& labels,
                           const metrics::Histogram& h) {
  std::vector<uint64_t> c = h.counts();
  std::string base(name);
  uint64_t cum = 0;
  Labels l = labels;
  l.emplace_back("le", "");
  for (size_t i = 0; i < c.size(); i++) {
    cum += c[i];
    l.back().second = i < h.bounds().size() ? FormatValue(h.bounds()[i]) : "+Inf";
    Sample(base + "_bucket", l, static_cast<double>(cum));
  }
  Sample(base + "_sum", labels, h.sum());
  Sample(base + "_count", labels, static_cast<double>(cum));
}

Registry::Child* Registry::GetChild(const std::string& name, const std::string& help, Type type,
                                    const Labels& labels, std::span<const double> bounds) {
  MutexLock l(&mu_);
  auto [it, fresh] = families_.try_emplace(name);
  Fam& f = it->second;
  if (fresh) {
    f.help = help;
    f.type = type;
  }
  auto make = [&] {
    auto c = std::make_unique<Child>();
    c->labels = labels;
    if (type == Type::kCounter) c->counter = std::make_unique<Counter>();
    if (type == Type::kGauge) c->gauge = std::make_unique<Gauge>();
    if (type == Type::kHistogram) c->histogram = std::make_unique<metrics::Histogram>(bounds);
    return c;
  };
  if (f.type != type) {
    orphans_.push_back(make());
    return orphans_.back().get();
  }
  for (auto& c : f.children) {
    if (c->labels == labels) return c.get();
  }
  f.children.push_back(make());
  return f.children.back().get();
}

Counter* Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  return GetChild(name, help, Type::kCounter, labels, {})->counter.get();
}

Gauge* Registry::GetGauge(const std::string& name, const std::string& help, const Labels& labels) {
  return GetChild(name, help, Type::kGauge, labels, {})->gauge.get();
}

Histogram* Registry::GetHistogram(const std::string& name, const std::string& help,
                                  std::span<const double> bounds, const Labels& labels) {
  return GetChild(name, help, Type::kHistogram, labels, bounds)->histogram.get();
}

int Registry::AddCollector(Collector c) {
  MutexLock l(&mu_);
  int id = next_collector_++;
  collectors_[id] = std::move(c);
  return id;
}

void Registry::RemoveCollector(int id) {
  MutexLock l(&mu_);
  collectors_.erase(id);
}

std::string Registry::Expose() const {
  Exposition e;
  MutexLock l(&mu_);
  for (const auto& [name, f] : families_) {
    e.Family(name, f.help, f.type);
    for (const auto& c : f.children) {
      if (c->counter) e.Sample(name, c->labels, static_cast<double>(c->counter->value()));
      if (c->gauge) e.Sample(name, c->labels, c->gauge->value());
      if (c->histogram) e.Histogram(name, c->labels, *c->histogram);
    }
  }
  for (const auto& [id, c] : collectors_) c(e);
  return e.text();
}

Registry& Global() {
  static Registry* r = new Registry;  // never destroyed: threads may record until exit
  return *r;
}

Counter& HashMismatches() {
  static Counter* c = Global().GetCounter(
      "snapfs_chunk_hash_mismatches_total",
      "Chunks read whose bytes did not match their hash (answered as I/O errors)");
  return *c;
}

Counter& TxnConflicts() {
  static Counter* c = Global().GetCounter(
      "snapfs_txn_conflicts_total",
      "Metadata transactions that conflicted with another and ran again");
  return *c;
}

Counter& IoErrors() {
  static Counter* c =
      Global().GetCounter("snapfs_io_errors_total", "FUSE requests answered with EIO");
  return *c;
}

namespace {

struct DaemonState {
  std::mutex mu;
  std::optional<GcRun> last_gc;      // GUARDED_BY(mu)
  std::optional<FsckRun> last_fsck;  // GUARDED_BY(mu)
  DaemonInfo info;                   // GUARDED_BY(mu)
  std::optional<IoErrorNote> last_io_error;  // GUARDED_BY(mu)
};

DaemonState& State() {
  static DaemonState* s = new DaemonState;
  return *s;
}

Counter& GcRunsCounter(bool ok) {
  static Counter* good =
      Global().GetCounter("snapfs_gc_runs_total", "GC runs, by result", {{"result", "ok"}});
  static Counter* bad =
      Global().GetCounter("snapfs_gc_runs_total", "GC runs, by result", {{"result", "error"}});
  return ok ? *good : *bad;
}

struct GcMetrics {
  Histogram* duration =
      Global().GetHistogram("snapfs_gc_duration_seconds", "Duration of GC runs", LatencyBuckets());
  Counter* freed = Global().GetCounter("snapfs_gc_freed_bytes_total", "Pack bytes GC removed");
  Gauge* last = Global().GetGauge("snapfs_gc_last_run_timestamp_seconds",
                                  "When the last GC run ended (Unix time; 0: none yet)");
};

GcMetrics& Gc() {
  static GcMetrics* m = new GcMetrics;
  return *m;
}

}  // namespace

void RegisterCoreMetrics() {
  (void)HashMismatches();
  (void)TxnConflicts();
  (void)IoErrors();
  (void)GcRunsCounter(true);
  (void)GcRunsCounter(false);
  (void)Gc();
}

void NoteIoError(std::string what) {
  constexpr size_t kMax = 512;  // a status line, not a log
  if (what.size() > kMax) what = what.substr(0, kMax) + "...";
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::lock_guard l(State().mu);
  State().last_io_error = IoErrorNote{now, std::move(what)};
}

std::optional<IoErrorNote> LastIoError() {
  std::lock_guard l(State().mu);
  return State().last_io_error;
}

void RecordGcRun(const GcRun& run) {
  GcRunsCounter(run.error.empty()).Inc();
  Gc().duration->Observe(run.duration_s);
  Gc().freed->Inc(run.bytes_freed);
  Gc().last->Set(static_cast<double>(run.when_ns) / 1e9);
  std::lock_guard l(State().mu);
  State().last_gc = run;
}

std::optional<GcRun> LastGcRun() {
  std::lock_guard l(State().mu);
  return State().last_gc;
}

uint64_t GcFailures() { return GcRunsCounter(false).value(); }

void RecordFsckRun(const FsckRun& run) {
  std::lock_guard l(State().mu);
  State().last_fsck = run;
}

std::optional<FsckRun> LastFsckRun() {
  std::lock_guard l(State().mu);
  return State().last_fsck;
}

void SetDaemonInfo(const DaemonInfo& info) {
  std::lock_guard l(State().mu);
  State().info = info;
}

DaemonInfo GetDaemonInfo() {
  std::lock_guard l(State().mu);
  return State().info;
}

}  // namespace snapfs::metrics
