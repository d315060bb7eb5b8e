#include "daemon/mount.h"

#include <malloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/fs/filesystem.h"
#include "core/chunks/gc.h"
#include "base/mutex.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/meta/postgres_engine.h"
#include "core/store.h"
#include "core/store_gauges.h"
#include "daemon/control.h"
#include "fuse/fuse_ops.h"
#include "daemon/mount_table.h"
#include "daemon/test_faults.h"
#include "daemon/metrics_server.h"
#include "snapfs_version.h"

namespace snapfs::fuse {

namespace {

// The type and source of the mount at exactly `mp` (the top one); false if `mp` is no
// mount point.
bool MountAt(const std::string& mp, std::string* type, std::string* source) {
  bool found = false;
  for (const auto& m : ReadMountTable()) {
    if (m.point != mp) continue;
    found = true;
    *type = m.type;
    *source = m.source;
  }
  return found;
}

}  // namespace

Status CheckMountpoint(const std::string& mp) {
  // A live FUSE mount (snapfs or another) looks like an empty folder when its file
  // system is empty; mounting over it would stack two mounts and `umount` would then
  // remove only the top one.
  if (std::string type, source; MountAt(mp, &type, &source) && type.starts_with("fuse")) {
    return Status::Busy(mp + " is already a mount point (" + type + " " + source +
                        "): unmount it first");
  }
  struct stat st;
  if (::stat(mp.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return Status::Busy(mp + " is a dead mount (daemon gone): run 'snapfs umount " + mp + "'");
    }
    return PosixError("mount point " + mp, errno);
  }
  if (!S_ISDIR(st.st_mode)) return Status::NotDirectory("mount point " + mp + " is not a folder");
  auto empty_or = DirIsEmpty(mp);
  if (!empty_or.ok()) return empty_or.status().WithContext("mount point");
  bool empty = *empty_or;
  if (!empty) return Status::NotEmpty("mount point " + mp + " is not empty");
  if (::access("/dev/fuse", F_OK) != 0) {
    return PosixError("/dev/fuse (is the fuse kernel module loaded?)", errno);
  }
  // libfuse opens /dev/fuse itself before it hands the mount to fusermount3, so a user
  // needs access to it (Debian's default mode is 0666).
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    return PosixError(
        "/dev/fuse is not accessible to this user (a non-root mount needs it "
        "readable and writable, usually mode 0666)",
        errno);
  }
  return Status::OK();
}

namespace {

std::string Bytes(uint64_t n) { return std::to_string(n) + " bytes"; }

// The last store gauges computed, and when (0: not yet). Thread-safe.
class GaugeCache {
 public:
  void Set(const StoreGauges& g) {
    MutexLock l(&mu_);
    g_ = g;
    when_ns_ = NowNs();
  }
  std::pair<StoreGauges, int64_t> Get() {
    MutexLock l(&mu_);
    return {g_, when_ns_};
  }

 private:
  Mutex mu_;
  StoreGauges g_ GUARDED_BY(mu_);
  int64_t when_ns_ GUARDED_BY(mu_) = 0;
};

// Samples computed at scrape time from what the store already counts (ChunkStoreStats),
// the gauge cache, and the disk under the store.
void Collect(metrics::Exposition& e, Store& store, GaugeCache& cache) {
  using metrics::Type;
  ChunkStoreStats cs = store.chunks().stats();
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    e.Family(name, help, Type::kCounter);
    e.Sample(name, {}, static_cast<double>(v));
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    e.Family(name, help, Type::kGauge);
    e.Sample(name, {}, v);
  };
  counter("snapfs_chunk_cache_hits_total", "Chunk reads served by the chunk cache", cs.cache_hits);
  counter("snapfs_chunk_cache_misses_total", "Chunk reads that went to the pack backend",
          cs.cache_misses);
  counter("snapfs_chunk_puts_total", "Chunks handed to the chunk store by writers", cs.puts);
  counter("snapfs_chunk_dedup_hits_total", "Chunks found already stored (not written again)",
          cs.dedup_hits);
  counter("snapfs_chunk_put_bytes_total", "Bytes of the chunks handed to the chunk store",
          cs.bytes_put);
  counter("snapfs_chunk_new_bytes_total", "Bytes of chunks stored for the first time",
          cs.bytes_new);
  counter("snapfs_dedup_bytes_total", "Bytes written that deduplicated against stored chunks",
          cs.bytes_put >= cs.bytes_new ? cs.bytes_put - cs.bytes_new : 0);
  if (store.shared()) {
    if (auto* pg = dynamic_cast<kv::PostgresEngine*>(&store.meta().engine())) {
      counter("snapfs_metadata_round_trips_total",
              "Round trips to the metadata database (PostgreSQL)", pg->round_trips());
    }
    gauge("snapfs_session_id", "This daemon's session in the shared store",
          static_cast<double>(store.session_id()));
    gauge("snapfs_session_lost",
          "1 while this daemon's session is reaped (no heartbeat in time) and no new one is "
          "registered yet: new data fails",
          store.session()->lost() ? 1 : 0);
    counter("snapfs_session_renewals_total",
            "New sessions this daemon registered after its session was reaped (writes in "
            "flight then failed with EIO)",
            store.session()->renewals());
  }
  auto [g, when] = cache.Get();
  if (when != 0) {
    gauge("snapfs_store_logical_bytes", "Sum of the sizes of all regular files",
          static_cast<double>(g.logical_bytes));
    gauge("snapfs_store_stored_bytes", "Sum of the sizes of all indexed chunks",
          static_cast<double>(g.stored_bytes));
    gauge("snapfs_store_dead_bytes", "Pack bytes holding no referenced chunk (GC reclaims them)",
          static_cast<double>(g.dead_bytes));
    gauge("snapfs_store_pack_bytes", "Sum of the sizes of all packs",
          static_cast<double>(g.pack_bytes));
    gauge("snapfs_store_packs", "Pack files", static_cast<double>(g.packs));
    gauge("snapfs_store_chunks", "Indexed chunks", static_cast<double>(g.chunks));
    gauge("snapfs_snapshots", "Completed snapshots", static_cast<double>(g.snapshots));
    gauge("snapfs_pins", "Files referenced by snapshots (one per snapshot and file)",
          static_cast<double>(g.pins));
    gauge("snapfs_purge_queue_folders",
          "Folders snapfs rm/prune removed whose files the purger has not dropped yet",
          static_cast<double>(g.purge_folders));
    gauge("snapfs_hidden_entries", "Deleted entries kept hidden for snapshots",
          static_cast<double>(g.hidden_entries));
    gauge("snapfs_store_gauges_timestamp_seconds",
          "When the snapfs_store_*, snapshot, pin and hidden-entry gauges were computed",
          static_cast<double>(when) / 1e9);
  }
  struct statvfs sv;
  if (::statvfs(store.dir().c_str(), &sv) == 0) {
    gauge("snapfs_store_disk_free_bytes", "Bytes available on the disk holding the store",
          static_cast<double>(sv.f_bavail) * static_cast<double>(sv.f_frsize));
    gauge("snapfs_store_disk_size_bytes", "Size of the disk holding the store",
          static_cast<double>(sv.f_blocks) * static_cast<double>(sv.f_frsize));
  }
  metrics::DaemonInfo info = metrics::GetDaemonInfo();
  gauge("snapfs_start_time_seconds", "When the daemon started (Unix time)",
        static_cast<double>(info.start_ns) / 1e9);
  e.Family("snapfs_build_info", "Always 1; the labels name the build", Type::kGauge);
  e.Sample("snapfs_build_info", {{"version", SNAPFS_VERSION}, {"commit", SNAPFS_GIT_COMMIT}}, 1);
}

}  // namespace

// The daemon's memory is meant to be its caches. Its large blocks (buffered write ranges
// of up to ~10 MiB, RocksDB's memtable blocks) come and go on 16 worker threads, and
// glibc's default gives each thread its own arena and raises the mmap threshold after the
// first large free: the freed blocks then stay in the arenas, fragmented. Measured
// (scripts/bench_rss.sh): 742 MiB RSS after 9 GiB of Flink checkpoints, ~14 arenas of
// ~50 MiB each. A fixed 1 MiB threshold gives every large block back to the kernel when it
// is freed (the hot ones are reused through BufferPool, so the page faults are few), and
// fewer arenas bound the fragmentation of the rest.
static void BoundMallocArenas() {
  (void)mallopt(M_MMAP_THRESHOLD, 1 << 20);
  (void)mallopt(M_ARENA_MAX, 4);
}

int ServeMount(const MountOptions& opts, const std::function<void(const Status&)>& ready) {
  int64_t start_ns = NowNs();
  BoundMallocArenas();
  if (Status ls = log::Configure(opts.log); !ls.ok()) {
    ready(ls);
    return 1;
  }
  metrics::RegisterCoreMetrics();
  const bool database = IsDatabaseLocation(opts.store);
  char* abs_store = database ? nullptr : realpath(opts.store.c_str(), nullptr);
  std::string store_path = abs_store ? abs_store : opts.store;
  free(abs_store);

  OpenOptions open_opts;
  open_opts.cache_dir = opts.cache_dir;
  open_opts.cache_bytes = opts.cache_bytes;
  open_opts.state_dir = opts.state_dir;
  open_opts.session_timeout = std::chrono::milliseconds(opts.session_timeout_ms);
  open_opts.session_what = MountWhat(opts.mountpoint);
  open_opts.db_max_connections = opts.db_max_connections;
  // Tests only (daemon/test_faults.h): nothing unless SNAPFS_TEST_FAULTS is set.
  std::unique_ptr<TestFaults> test_faults;
  if (!database) {
    auto tf = TestFaults::FromEnv(store_path, &open_opts);
    if (!tf.ok()) {
      SNAPFS_LOG_ERROR(tf.status().ToString());
      ready(tf.status());
      return 1;
    }
    test_faults = std::move(tf).value();
  } else if (std::getenv(TestFaults::kEnv) != nullptr) {
    Status no = Status::InvalidArgument(std::string(TestFaults::kEnv) +
                                        ": test faults are for folder stores only");
    ready(no);
    return 1;
  }
  auto store = Store::Open(store_path, std::move(open_opts));
  // The fault thread steers the store's backend: it stops before the store closes.
  struct StopFaults {
    TestFaults* f;
    ~StopFaults() {
      if (f) f->Stop();
    }
  } stop_faults{test_faults.get()};
  if (test_faults && store.ok()) test_faults->Start();
  if (!store.ok()) {
    // (A database location is logged as libpq parsed it, without the password.)
    SNAPFS_LOG_ERROR("cannot open store " + (database ? std::string("(database)") : store_path) +
                     ": " + store.status().ToString());
    ready(store.status());
    return 1;
  }
  store_path = (*store)->dir();  // a database store: its URL without the password
  auto fs = Filesystem::Open(store->get());
  if (!fs.ok()) {
    ready(fs.status());
    return 1;
  }
  // References in markers name files by absolute path: remember every place the store
  // was mounted so they resolve after the mount moves.
  if (char* abs_mp = realpath(opts.mountpoint.c_str(), nullptr)) {
    Status ms = (*fs)->RecordMountPoint(abs_mp);
    free(abs_mp);
    if (!ms.ok()) {
      ready(ms);
      return 1;
    }
  }
  ControlServer control;
  // A shared store has no store folder for the socket; the CLI opens such a store itself
  // (one more session) instead of asking a daemon.
  if (opts.control && !(*store)->shared()) {
    Store* st = store->get();
    Filesystem* f = fs->get();
    Status cs = control.Start(
        store_path, [&opts, st, f](const std::string& req) { return opts.control(*st, *f, req); });
    if (!cs.ok()) {
      ready(cs);
      return 1;
    }
  }
  FuseContext ctx;
  ctx.fs = fs->get();
  ctx.timeout = opts.timeout;
  ctx.writeback = opts.writeback;
  if ((*store)->shared()) {
    ctx.shared = true;
    ctx.timeout = opts.shared_entry_timeout;
    ctx.attr_timeout = 0;
    ctx.fs->SetSharedAttrTtl(opts.shared_entry_timeout);
    // With the writeback cache the kernel keeps its own idea of a file's size and never
    // takes the daemon's: a file another host rewrote would keep its old size here.
    ctx.writeback = false;
  }

  std::string o = "default_permissions,fsname=snapfs:" + store_path + ",subtype=snapfs";
  for (const auto& x : opts.fuse_options) o += "," + x;
  std::vector<std::string> argv_s = {"snapfs", "-o", o};
  if (opts.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_session* se = fuse_session_new(&args, &Operations(), sizeof(fuse_lowlevel_ops), &ctx);
  if (!se) {
    ready(Status::InvalidArgument("FUSE rejected the mount options: " + o));
    return 1;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    ready(Status::IOError("cannot install signal handlers"));
    return 1;
  }
  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    ready(Status::IOError("mounting " + opts.mountpoint + " failed (see the message above)"));
    return 1;
  }
  ctx.session = se;
  // Before the kernel's INIT arrives: it is answered through the hooks.
  if (Status kp = InstallKillPrivV2(se); !kp.ok()) {
    SNAPFS_LOG_WARN("writes will cost a GETXATTR round trip each: " + kp.ToString());
  }
  // Changes the daemon makes for the CLI (snapfs rm, ...) reach the kernel's caches.
  (*fs)->SetEntryInvalidator([se](uint64_t parent, std::string_view name) {
    std::string n(name);
    (void)fuse_lowlevel_notify_inval_entry(se, parent, n.c_str(), n.size());
  });
  // Metrics: a port that is taken costs the metrics, never the mount. Listening before
  // `snapfs mount` returns (ready), so that a scrape right after it is answered.
  metrics::DaemonInfo info;
  info.start_ns = start_ns;
  info.store = store_path;
  info.mountpoint = opts.mountpoint;
  GaugeCache gauges;
  int collector = metrics::Global().AddCollector(
      [st = store->get(), &gauges](metrics::Exposition& e) { Collect(e, *st, gauges); });
  MetricsServer metrics_server;
  if (!opts.metrics.empty()) {
    auto addr = ParseListenAddress(opts.metrics);
    Status ms = addr.ok() ? metrics_server.Start(*addr, [] { return metrics::Global().Expose(); })
                          : addr.status();
    info.metrics_address = addr.ok() ? addr->ToString() : opts.metrics;
    info.metrics_listening = ms.ok();
    if (ms.ok()) {
      SNAPFS_LOG_INFO("metrics on http://" + info.metrics_address + "/metrics");
    } else {
      info.metrics_error = ms.ToString();
      SNAPFS_LOG_WARN("no metrics: " + ms.ToString() + " (the mount works without them)");
    }
  }
  metrics::SetDaemonInfo(info);
  ready(Status::OK());
  SNAPFS_LOG_INFO(std::string("snapfs ") + SNAPFS_VERSION + " (" + SNAPFS_GIT_COMMIT + ") pid " +
                  std::to_string(::getpid()) + ": store " + store_path + " mounted on " +
                  opts.mountpoint + " (threads " + std::to_string(opts.threads) + ", gc every " +
                  std::to_string(opts.gc_interval_s) + " s, writeback " +
                  (ctx.writeback ? "on" : "off") + ", metrics " +
                  (opts.metrics.empty() ? "off" : opts.metrics) +
                  (opts.options_text.empty() ? "" : ", options: " + opts.options_text) + ")");

  // The store gauges: computed now, every gauge_interval_s, and after each GC.
  std::mutex gauge_mu;
  std::condition_variable gauge_cv;
  bool gauge_now = true, gauge_stop = false;
  std::thread gauge_thread([&, st = store->get()] {
    std::unique_lock l(gauge_mu);
    while (true) {
      gauge_cv.wait_for(l, std::chrono::seconds(std::max(1u, opts.gauge_interval_s)),
                        [&] { return gauge_now || gauge_stop; });
      if (gauge_stop) return;
      gauge_now = false;
      l.unlock();
      auto g = ComputeStoreGauges(*st);
      if (g.ok())
        gauges.Set(*g);
      else
        SNAPFS_LOG_WARN("store gauges: " + g.status().ToString());
      l.lock();
    }
  });

  // Space freed by deletes and snapshot removals comes back without anyone asking.
  std::mutex gc_mu;
  std::condition_variable gc_cv;
  bool stopping = false;
  std::thread gc_thread;
  if (opts.gc_interval_s > 0) {
    gc_thread = std::thread([&, st = store->get()] {
      std::unique_lock l(gc_mu);
      while (
          !gc_cv.wait_for(l, std::chrono::seconds(opts.gc_interval_s), [&] { return stopping; })) {
        l.unlock();
        auto t0 = std::chrono::steady_clock::now();
        if (st->shared()) {
          // Files another host's daemon had open when it died (its session was reaped).
          auto p = (*fs)->PurgeDeadOrphans();
          if (!p.ok()) SNAPFS_LOG_WARN("purge orphans of dead sessions: " + p.status().ToString());
        }
        auto r = RunGc(*st);
        metrics::GcRun run;
        run.when_ns = NowNs();
        run.duration_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r.ok()) {
          run.bytes_freed = r->bytes_freed;
          SNAPFS_LOG_INFO("automatic gc: freed " + Bytes(r->bytes_freed) + " (" +
                          std::to_string(r->chunks_deleted) + " chunks, " +
                          std::to_string(r->packs_removed) + " packs) in " +
                          std::to_string(run.duration_s) + " s");
        } else if (st->shared() && r.status().Is(Code::kBusy)) {
          SNAPFS_LOG_INFO("automatic gc skipped: " + r.status().message());
        } else {
          run.error = r.status().ToString();
          SNAPFS_LOG_ERROR("automatic gc failed after " + std::to_string(run.duration_s) +
                           " s: " + run.error);
        }
        metrics::RecordGcRun(run);
        {
          std::lock_guard gl(gauge_mu);
          gauge_now = true;
        }
        gauge_cv.notify_all();
        l.lock();
      }
    });
  }

  // The purge queue (snapfs rm, prune: docs/snapshots.md): a removal wakes this thread,
  // which drops the removed folders' files in batches of opts.purge_batch (0: never),
  // one transaction each. It also looks every kPurgePollS: a queue left by a crash (it
  // starts with a look), or by another daemon of a shared store, is drained too.
  constexpr unsigned kPurgePollS = 30;
  std::mutex purge_mu;
  std::condition_variable purge_cv;
  bool purge_now = true;
  std::atomic<bool> purge_stop{false};
  std::thread purge_thread([&] {
    std::unique_lock l(purge_mu);
    while (true) {
      purge_cv.wait_for(l, std::chrono::seconds(kPurgePollS),
                        [&] { return purge_now || purge_stop.load(); });
      if (purge_stop) return;
      purge_now = false;
      l.unlock();
      (*fs)->InvalidatePendingEntries();  // what the removal left for the kernel
      auto t0 = std::chrono::steady_clock::now();
      uint64_t removed = 0, folders = 0, batches = 0;
      while (!purge_stop && opts.purge_batch > 0) {
        auto p = (*fs)->PurgeStep(opts.purge_batch);
        if (!p.ok()) {
          SNAPFS_LOG_WARN("purge of removed snapshots (tried again later): " +
                          p.status().ToString());
          break;
        }
        batches++;
        removed += p->removed;
        folders += p->folders_done;
        if (!p->more) break;
      }
      if (folders > 0) {
        SNAPFS_LOG_INFO("purged " + std::to_string(folders) + " removed folder(s): " +
                        std::to_string(removed) + " entries in " + std::to_string(batches) +
                        " batches, " +
                        std::to_string(std::chrono::duration<double>(
                                           std::chrono::steady_clock::now() - t0)
                                           .count()) +
                        " s");
        {
          std::lock_guard gl(gauge_mu);
          gauge_now = true;
        }
        gauge_cv.notify_all();
      }
      l.lock();
    }
  });
  (*fs)->SetPurgeNotifier([&] {
    {
      std::lock_guard l(purge_mu);
      purge_now = true;
    }
    purge_cv.notify_all();
  });

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, opts.threads);
  // Workers are never ended for being idle: libfuse ends one when more than this many wait,
  // and a new one allocates a fresh request buffer of max_write + a page (~1 MiB, fresh
  // pages to fault in). Under a stream of WRITEs the count of waiting workers swings, and
  // with libfuse's default of 10 a 256 MiB `dd` started 36 threads. Their buffers and
  // stacks stay bounded by `threads`.
  fuse_loop_cfg_set_idle_threads(cfg, opts.threads);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);

  // A removal from now on purges before it returns (no background purger).
  (*fs)->SetPurgeNotifier(nullptr);
  {
    std::lock_guard l(purge_mu);
    purge_stop = true;
  }
  purge_cv.notify_all();
  purge_thread.join();
  if (gc_thread.joinable()) {
    {
      std::lock_guard l(gc_mu);
      stopping = true;
    }
    gc_cv.notify_all();
    gc_thread.join();
  }
  {
    std::lock_guard l(gauge_mu);
    gauge_stop = true;
  }
  gauge_cv.notify_all();
  gauge_thread.join();
  SNAPFS_LOG_INFO("unmounting " + opts.mountpoint +
                  (rc == 0 ? "" : " (session ended with an error)"));
  (*fs)->SetEntryInvalidator(nullptr);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  control.Stop();
  metrics_server.Stop();
  metrics::Global().RemoveCollector(collector);  // before the store it reads goes
  Status fl = (*fs)->FlushAll();
  if (!fl.ok()) SNAPFS_LOG_ERROR("flush at unmount: " + fl.ToString());
  fs->reset();
  store->reset();
  SNAPFS_LOG_INFO(std::string("stopped") + (rc == 0 && fl.ok() ? "" : " with errors"));
  log::Shutdown();
  return rc == 0 && fl.ok() ? 0 : 1;
}

}  // namespace snapfs::fuse
