// S3Client: the few S3 calls the S3 backend needs, over libcurl, against AWS or any
// S3-compatible service (Ceph radosgw, MinIO, ...). docs/s3.md describes the protocol
// choices; in short:
//   - requests are signed by libcurl itself (CURLOPT_AWS_SIGV4), never by hand; every
//     request carries x-amz-content-sha256 (radosgw answers 403 without it) and every
//     PUT a Content-MD5, so a body damaged on the way is refused by the server;
//   - easy handles are pooled, so connections (and TLS sessions) are reused;
//   - every attempt has a deadline (a fixed part plus time for the bytes at a minimum
//     rate), and attempts that failed for a transient reason (5xx, 408, 429, SlowDown,
//     timeouts, resets, truncated bodies) are retried with full-jitter exponential
//     backoff, up to max_attempts; then the call fails with IOError naming the object;
//   - path-style URLs for a custom endpoint, virtual-hosted ones for AWS.
// Credentials never appear in a Status message or a log line.
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"

namespace snapfs {

struct S3Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // optional (temporary credentials)
};

struct S3ClientOptions {
  // "http://127.0.0.1:7480" (path-style) or empty for AWS (virtual-hosted, https).
  std::string endpoint;
  std::string region = "us-east-1";
  std::string bucket;
  S3Credentials credentials;
  // Deadline of one attempt: this much, plus the transfer time of its body at
  // min_bytes_per_sec. A server that sends nothing for that long fails the attempt.
  int request_timeout_ms = 30000;
  int connect_timeout_ms = 5000;
  uint64_t min_bytes_per_sec = 1 << 20;
  int max_attempts = 6;
  int backoff_base_ms = 50;
  int backoff_max_ms = 3000;
  // Objects above this size are uploaded in parts of part_size. Above a full pack (64 MiB
  // plus its last chunk), so that a pack is one PUT: requests are what stores bill.
  uint64_t multipart_threshold = 96ull << 20;
  uint64_t part_size = 16ull << 20;
  int list_page_size = 1000;  // S3's maximum; tests make pages small
};

struct S3Object {
  std::string key;
  uint64_t size = 0;
};

// Counters for tests, metrics and the benchmark (request counts per GiB).
struct S3ClientStats {
  uint64_t requests = 0;  // attempts sent, retries included
  uint64_t retries = 0;
  uint64_t puts = 0, gets = 0, heads = 0, deletes = 0, lists = 0;
  uint64_t bytes_up = 0, bytes_down = 0;
};

// Reads body bytes [offset, offset+len) into out; used for uploads from a file, so a
// retry re-reads instead of keeping the whole body in memory.
using BodyReader = std::function<Status(uint64_t offset, size_t len, uint8_t* out)>;

class S3Client {
 public:
  static Result<std::unique_ptr<S3Client>> Create(S3ClientOptions opts);
  ~S3Client();

  const S3ClientOptions& options() const { return opts_; }

  // Stores an object. With if_none_match, AlreadyExists if the key exists (412). Above
  // multipart_threshold, a multipart upload (then if_none_match is checked with a HEAD
  // first: see docs/s3.md).
  Status Put(const std::string& key, uint64_t size, const BodyReader& body, bool if_none_match);
  Status PutBytes(const std::string& key, std::span<const uint8_t> data, bool if_none_match);
  // Reads [offset, offset+len) of an object. NotFound if absent. Without `got`,
  // Corruption if the object ends before offset+len; with it, a short read is fine and
  // `*got` says how many bytes came (0 when offset is at or past the end).
  // `*object_size` gets the object's size when the server says it.
  Status GetRange(const std::string& key, uint64_t offset, size_t len, uint8_t* out,
                  size_t* got = nullptr, uint64_t* object_size = nullptr);
  // The object's size; NotFound if absent.
  Result<uint64_t> Head(const std::string& key);
  // Deletes an object (S3 answers 204 whether or not it existed).
  Status Delete(const std::string& key);
  // Every object whose key starts with `prefix`, in key order (all pages).
  Result<std::vector<S3Object>> List(const std::string& prefix);
  // OK if the bucket exists and the credentials may use it; NotFound if it does not
  // exist; Access if the credentials are refused; IOError if the endpoint is unreachable.
  Status CheckBucket();
  Status CreateBucket();

  S3ClientStats stats() const;

  // Implementation detail, public so the .cc's helpers can name it.
  struct Handle;
  struct Response;
  struct Request;

 private:
  explicit S3Client(S3ClientOptions opts);
  std::string Url(const std::string& key, const std::string& query) const;
  // Sends with retries; the final response, or the error of the last attempt.
  Result<Response> Send(Request& req);
  Result<Response> SendOnce(Request& req);
  std::unique_ptr<Handle> TakeHandle();
  void ReturnHandle(std::unique_ptr<Handle> h);
  Status PutMultipart(const std::string& key, uint64_t size, const BodyReader& body);
  void Count(uint64_t S3ClientStats::*counter);

  const S3ClientOptions opts_;
  Mutex pool_mu_;
  std::vector<std::unique_ptr<Handle>> pool_ GUARDED_BY(pool_mu_);

  mutable Mutex stats_mu_;
  S3ClientStats stats_ GUARDED_BY(stats_mu_);
};

// Where an S3 store's data lives, as written in `--data s3://bucket/prefix`.
struct S3Location {
  std::string bucket;
  std::string prefix;  // no leading or trailing '/'; may be empty
};
// Parses "s3://bucket[/prefix]": InvalidArgument with the reason otherwise.
Result<S3Location> ParseS3Url(const std::string& url);

// Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), or
// from `file` when it is not empty: "key = value" lines with aws_access_key_id,
// aws_secret_access_key and optionally aws_session_token (the AWS credentials file's
// names; [section] lines are ignored). The file must not be readable by group or others:
// Permission otherwise. InvalidArgument when nothing supplies a key.
Result<S3Credentials> LoadS3Credentials(const std::string& file);

}  // namespace snapfs
