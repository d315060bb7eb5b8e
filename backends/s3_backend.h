// The S3 backend: packs as immutable objects in a bucket (AWS S3, Ceph radosgw, MinIO...),
// named PREFIX/packs/<id % 256 as 2 hex>/<id as 16 hex>.pack. docs/s3.md has the design;
// the parts that carry the guarantees:
//   - An open pack lives in a local spool file (SPOOL/<16 hex>.pack). Append writes it,
//     Sync fdatasyncs it: fsync and kill -9 guarantees are those of the local backend,
//     and no fsync waits for the network.
//   - Seal syncs the spool file and queues the pack for upload (a bounded pool of upload
//     threads; PUT with If-None-Match: *, multipart above 96 MiB). The spool file is
//     deleted only once the object is stored. Spool files found at open (a crash, an
//     upload that kept failing) are uploaded again: that is the replay.
//   - Reads of a pack still in the spool read the file; reads of uploaded packs are
//     ranged GETs of aligned blocks kept in an in-memory LRU, so a sequential reader
//     costs one GET per block, not one per chunk.
//     Fetched blocks also go to a size-bounded disk cache (`mount --cache-dir`), and
//     Prefetch (a sequential reader's next chunks) fetches blocks ahead in the background.
//   - Remove deletes the object (and a spooled copy); List merges the bucket listing
//     with the spool.
//
// Thread-safety: every method may be called concurrently (Backend's contract).
#pragma once

#include <memory>
#include <string>

#include "backends/backend.h"
#include "backends/s3_client.h"

namespace snapfs {

struct S3BackendOptions {
  S3ClientOptions client;
  std::string prefix;     // key prefix inside the bucket, no leading/trailing '/'
  std::string spool_dir;  // local folder for open and not yet uploaded packs
  int upload_threads = 4;
  // Reads of uploaded packs fetch aligned blocks of this size (one ranged GET each).
  uint64_t block_size = 1ull << 20;
  uint64_t block_cache_bytes = 128ull << 20;
  // How long a failed upload waits before it is tried again (the spool keeps it safe).
  int upload_retry_delay_ms = 5000;
  // The local disk cache of fetched blocks (backends/block_cache.h); none if empty.
  std::string disk_cache_dir;
  uint64_t disk_cache_bytes = 4ull << 30;
  // Seal uploads the pack before it returns (shared stores: a commit that points into a
  // pack must find it in the bucket from every host). Failed uploads fail the seal.
  // (A shared store gives each session its own spool folder; Store deletes those of
  // sessions that are gone: nothing committed can need a pack that was never uploaded.)
  bool upload_on_seal = false;
  // Open checks that the bucket answers (false: `snapfs status`, which probes instead).
  bool check_bucket = true;
  // Threads fetching the blocks Prefetch asks for ahead of the reader, and how far ahead
  // (at least; a longer hint is kept). A ranged GET on a loopback radosgw takes ~10 ms
  // for 1 MiB: a reader at 100+ MiB/s needs that many blocks in flight to never wait.
  int prefetch_threads = 16;
  uint64_t readahead_bytes = 16ull << 20;
};

class S3Backend;

// Opens the backend: checks that the bucket answers (check_bucket), and queues spooled
// packs for upload.
Result<std::unique_ptr<S3Backend>> OpenS3Backend(S3BackendOptions opts);

class S3Backend : public Backend {
 public:
  // Blocks until every queued upload has finished (stored, or failed for now).
  virtual Status WaitForUploads() = 0;
  // Packs still in the spool (not yet stored in the bucket).
  virtual size_t SpooledPacks() const = 0;
  virtual S3ClientStats client_stats() const = 0;
  // Disk cache hits and misses (0 without a disk cache).
  virtual uint64_t disk_cache_hits() const = 0;
  virtual uint64_t disk_cache_misses() const = 0;
  // The object key of a pack (for tests and messages).
  virtual std::string PackKey(PackId id) const = 0;
};

}  // namespace snapfs
