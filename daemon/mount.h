// Serving a store at a mount point: the FUSE session around core::Filesystem.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/status.h"

namespace snapfs {
class Store;
class Filesystem;
}  // namespace snapfs

namespace snapfs::fuse {

struct MountOptions {
  std::string store;
  std::string mountpoint;
  std::vector<std::string> fuse_options;  // "-o" values, comma-joined by us
  unsigned threads = 16;                  // upper bound of the worker pool
  bool debug = false;                     // libfuse request tracing on stderr
  bool writeback = true;
  double timeout = 60.0;
  // GC runs by itself this often while mounted (0: only when asked, `snapfs gc`).
  unsigned gc_interval_s = 600;
  // Entries (or pins) per transaction of the background purge of what `snapfs rm` and
  // prune removed (docs/snapshots.md). 0: no background purge; removed folders wait in
  // the queue (gone from the namespace) until `snapfs gc` or a mount that purges.
  unsigned purge_batch = 1000;
  // Serves Prometheus metrics here ("ADDR:PORT"); empty: not at all. If it cannot listen
  // (the port is taken), the mount goes on without metrics and says so (log, status).
  std::string metrics = "127.0.0.1:9567";
  // Where the daemon logs; configured by ServeMount before anything else.
  log::Options log;
  // The store gauges of /metrics (bytes, packs, snapshots) are recomputed this often, and
  // after each automatic GC: a scan of the metadata, too slow for every scrape.
  unsigned gauge_interval_s = 60;
  // The mount options as the user gave them, for the start line of the log.
  std::string options_text;
  // S3 stores: where fetched pack blocks are cached (empty: STORE/cache) and how much
  // (0: no disk cache). See OpenOptions.
  std::string cache_dir;
  uint64_t cache_bytes = 4ull << 30;
  // Database stores (shared by hosts, docs/scale-out.md): the local state folder (empty:
  // the default), the session timeout, and the kernel's entry cache timeout (how soon a
  // rename or unlink on another host is seen; attributes are not cached at all there).
  std::string state_dir;
  unsigned session_timeout_ms = 60000;
  double shared_entry_timeout = 1.0;
  unsigned db_max_connections = 16;
  // Answers control-socket requests (the CLI while mounted); none if empty.
  std::function<std::string(Store&, Filesystem&, const std::string&)> control;
};

// Opens the store, mounts, and serves requests until the file system is unmounted or
// the process gets SIGTERM/SIGINT/SIGHUP; then flushes everything and closes the store.
// `ready` is called exactly once: with OK as soon as the mount is live, or with the
// reason it could not be set up. Returns 0 after a clean unmount.
int ServeMount(const MountOptions& opts, const std::function<void(const Status&)>& ready);

// Checks a mount point before forking: an existing, empty folder that is not a mount.
Status CheckMountpoint(const std::string& mountpoint);

}  // namespace snapfs::fuse
