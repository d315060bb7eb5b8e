// Store: where a store lives and its lifecycle. Two kinds:
//
// A folder store (the embedded default), one host:
//
//   STORE/snapfs.conf   config (core/store_config.h), written once by init
//   STORE/lock          flock'ed by the one process that has the store open; holds its pid
//   STORE/meta/         RocksDB: all metadata (core/meta/meta_store.h)
//   STORE/packs/        chunk packs (local backend)
//   STORE/spool/        packs being written or not yet uploaded (S3 backend, docs/s3.md)
//   STORE/cache/        fetched pack blocks (S3 backend; `mount --cache-dir` moves it)
//
//
// A database store ("postgresql://user@host/db", docs/scale-out.md), shared by many hosts:
//   the metadata and the config are in the database (core/meta/postgres_engine.h; the
//   config under the default space's "config" key); packs in an S3 bucket or in a folder
//   every host mounts at one path (`data`). Each process that opens it registers a session
//   (core/sessions.h) and heartbeats it from a thread of the Store. Local state (S3 spool
//   and block cache) lives in a per-host state folder, one subfolder per session:
//   STATE/spool/<session>/, STATE/cache/<session>/.
//
// Thread-safety: after Open, the accessors are safe to call from any thread; the objects
// they return document their own thread-safety.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "core/chunks/chunk_store.h"
#include "core/meta/meta_store.h"
#include "core/sessions.h"
#include "core/space_guard.h"
#include "core/store_config.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace snapfs {

// True for a database location: "postgresql://..." or "postgres://...".
bool IsDatabaseLocation(const std::string& location);
// Where a database store keeps its local state on this host by default:
// /var/lib/snapfs/<id> for root, else $XDG_STATE_HOME (or ~/.local/state)/snapfs/<id>,
// where <id> is "pg-" and a hash of the location.
std::string DefaultStateDir(const std::string& location);

struct InitOptions {
  ChunkerParams chunker;
  bool verify_dedup = false;
  std::string marker_names = "_metadata";
  // Where packs live: empty (STORE/packs) or "s3://bucket/prefix", with the S3 settings
  // recorded in the config (docs/s3.md). The bucket must exist unless create_bucket.
  // A database store needs one: s3://... or an absolute folder every host mounts.
  std::string data;
  std::string s3_endpoint;  // empty: AWS_ENDPOINT_URL, else AWS
  std::string s3_region;    // empty: AWS_REGION, else us-east-1
  std::string s3_credentials_file;
  bool create_bucket = false;
};

struct OpenOptions {
  // Replaces the store's local pack folder (tests use memory or fault-injecting backends).
  std::unique_ptr<Backend> backend;
  // Replaces the store's RocksDB metadata (STORE/meta) with another engine holding the
  // store's metadata (tests: a memory engine set up by InitMetadata).
  std::unique_ptr<kv::Engine> engine;
  // Opens the store's own RocksDB (STORE/meta) through this Env instead of RocksDB's
  // default (not owned; must outlive the store): the test-only fault hook of a daemon
  // (daemon/test_faults.h) makes metadata writes fail through it.
  rocksdb::Env* meta_env = nullptr;
  size_t chunk_cache_bytes = 64ull << 20;
  // S3 stores: the local cache of fetched pack blocks (empty: STORE/cache) and its size
  // bound (0: no disk cache). Ignored for local stores.
  std::string cache_dir;
  uint64_t cache_bytes = kDefaultCacheBytes;
  static constexpr uint64_t kDefaultCacheBytes = 4ull << 30;
  // Database stores: the local state folder (empty: DefaultStateDir), the session's
  // timeout and what `snapfs status` says the session is.
  std::string state_dir;
  std::chrono::milliseconds session_timeout{60000};
  std::string session_what = "snapfs";
  // Database stores: connections to PostgreSQL this process keeps open at most (a soft
  // bound: kv::PostgresOptions::max_open).
  size_t db_max_connections = 16;
  // False: open an S3-backed store without first asking for its bucket, and give up on a
  // request after 2 attempts. For `snapfs status`, which reports an unreachable object
  // store (Backend::Probe) instead of failing to open.
  bool check_data = true;
};

class Store {
 public:
  // Creates a store in `dir` (created if missing; must be empty otherwise). Every input
  // is checked before anything is created (an S3 location: URL, credentials, endpoint
  // reachable, bucket present, prefix holding no packs), so a failed init leaves nothing.
  static Status Init(const std::string& dir, const InitOptions& opts);
  // The same for a database location (called by Init): makes the schema (refusing a
  // database schema that holds any table), then the metadata and the config, in one
  // transaction (a schema without the config is an init that did not finish).
  // Writes what a new store's metadata starts with (the root folder, the inode counter)
  // into an empty engine. Init does it for the store's own RocksDB.
  static Status InitMetadata(kv::Engine& engine, const StoreConfig* config = nullptr);
  // Opens a store: a folder store exclusively, a database store as one more session.
  // Errors: NotFound (no such folder/store), InvalidArgument (not a store),
  // NotSupported (unknown format version), Busy ("store in use by pid N"), IOError
  // (database or object store unreachable).
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, OpenOptions opts = {});
  ~Store();

  // The folder, or for a database store its URL without the password.
  const std::string& dir() const { return dir_; }
  bool shared() const { return session_ != nullptr; }
  // Database stores: this process's session (null for folder stores) and state folder.
  Session* session() { return session_.get(); }
  uint64_t session_id() const;
  const std::string& state_dir() const { return state_dir_; }
  // Stops the session's heartbeats (tests: a process that stalls, or a host cut off).
  void StopHeartbeat();
  const StoreConfig& config() const { return config_; }
  MetaStore& meta() { return *meta_; }
  ChunkStore& chunks() { return *chunks_; }
  Backend& backend() { return *backend_; }
  // Folder stores: what keeps a full disk from reaching the metadata log
  // (space_guard.h); null for database stores.
  SpaceGuard* space_guard() { return space_guard_.get(); }

 private:
  Store() = default;
  static Status InitDatabase(const std::string& location, InitOptions opts);
  static Result<std::unique_ptr<Store>> OpenDatabase(const std::string& location, OpenOptions opts);
  void HeartbeatLoop();
  // After our session was reaped: registers a new one and gives up the old one's packs.
  Status RenewSession();
  std::string dir_;
  std::string state_dir_;
  std::unique_ptr<Session> session_;
  std::thread heartbeat_;
  std::mutex hb_mu_;
  std::condition_variable hb_cv_;
  bool hb_stop_ = false;  // guarded by hb_mu_
  StoreConfig config_;
  int lock_fd_ = -1;
  // Database stores on S3: STATE/spool/<id> and STATE/cache/<id> of our first session,
  // flock'ed while we use them (a renewed session keeps them; see
  // RemoveDeadSessionFolders).
  std::vector<int> state_lock_fds_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<ChunkStore> chunks_;
  std::unique_ptr<SpaceGuard> space_guard_;
};

// True if `dir` has no entries besides "." and "..".
Result<bool> DirIsEmpty(const std::string& dir);

// Reads the pid recorded in STORE/lock, or 0.
int StoreLockHolder(const std::string& dir);
// True while some process holds the store's lock (probed with flock, so a dead or
// zombie daemon does not count); `pid` gets the recorded holder.
bool StoreLockHeld(const std::string& dir, int* pid = nullptr);

}  // namespace snapfs
