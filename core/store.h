// Store: the on-disk folder and its lifecycle.
//
//   STORE/snapfs.conf   config (core/store_config.h), written once by init
//   STORE/lock          flock'ed by the one process that has the store open; holds its pid
//   STORE/meta/         RocksDB: all metadata (core/meta/meta_store.h)
//   STORE/packs/        chunk packs (local backend)
//   STORE/spool/        packs being written or not yet uploaded (S3 backend, docs/s3.md)
//   STORE/cache/        fetched pack blocks (S3 backend; `mount --cache-dir` moves it)
//
// Thread-safety: after Open, the accessors are safe to call from any thread; the objects
// they return document their own thread-safety.
#pragma once

#include <memory>
#include <string>

#include "backends/backend.h"
#include "core/chunks/chunk_store.h"
#include "core/meta/meta_store.h"
#include "core/store_config.h"

namespace snapfs {

struct InitOptions {
  ChunkerParams chunker;
  bool verify_dedup = false;
  std::string marker_names = "_metadata";
  // Where packs live: empty (STORE/packs) or "s3://bucket/prefix", with the S3 settings
  // recorded in the config (docs/s3.md). The bucket must exist unless create_bucket.
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
  size_t chunk_cache_bytes = 64ull << 20;
  // S3 stores: the local cache of fetched pack blocks (empty: STORE/cache) and its size
  // bound (0: no disk cache). Ignored for local stores.
  std::string cache_dir;
  uint64_t cache_bytes = kDefaultCacheBytes;
  static constexpr uint64_t kDefaultCacheBytes = 4ull << 30;
};

class Store {
 public:
  // Creates a store in `dir` (created if missing; must be empty otherwise). Every input
  // is checked before anything is created (an S3 location: URL, credentials, endpoint
  // reachable, bucket present, prefix holding no packs), so a failed init leaves nothing.
  static Status Init(const std::string& dir, const InitOptions& opts);
  // Writes what a new store's metadata starts with (the root folder, the inode counter)
  // into an empty engine. Init does it for the store's own RocksDB.
  static Status InitMetadata(kv::Engine& engine);
  // Opens a store exclusively. Errors: NotFound (no such folder), InvalidArgument (not a
  // store), NotSupported (unknown format version), Busy ("store in use by pid N").
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, OpenOptions opts = {});
  ~Store();

  const std::string& dir() const { return dir_; }
  const StoreConfig& config() const { return config_; }
  MetaStore& meta() { return *meta_; }
  ChunkStore& chunks() { return *chunks_; }
  Backend& backend() { return *backend_; }

 private:
  Store() = default;
  std::string dir_;
  StoreConfig config_;
  int lock_fd_ = -1;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<ChunkStore> chunks_;
};

// True if `dir` has no entries besides "." and "..".
Result<bool> DirIsEmpty(const std::string& dir);

// Reads the pid recorded in STORE/lock, or 0.
int StoreLockHolder(const std::string& dir);
// True while some process holds the store's lock (probed with flock, so a dead or
// zombie daemon does not count); `pid` gets the recorded holder.
bool StoreLockHeld(const std::string& dir, int* pid = nullptr);

}  // namespace snapfs
