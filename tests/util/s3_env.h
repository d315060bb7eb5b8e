// The S3 server the S3 tests run against: scripts/test.sh starts a single-node Ceph with
// radosgw (scripts/ceph-test-cluster.sh) and exports
//   SNAPFS_TEST_S3_ENDPOINT, SNAPFS_TEST_S3_ACCESS_KEY, SNAPFS_TEST_S3_SECRET_KEY,
//   SNAPFS_TEST_S3_BUCKET, and SNAPFS_TEST_S3_REQUIRED=1.
// A developer running ctest by hand without them gets a loud skip; under test.sh
// (REQUIRED set) a missing server fails the test instead, so CI never passes silently.
// Every S3 test's name contains "S3": CMakeLists.txt gives those the ctest label s3.
//
// Thread-safety: the functions are thread-safe (they read the environment only).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>

#include "backends/s3_backend.h"

namespace snapfs::test {

struct S3TestEnv {
  std::string endpoint, access_key, secret_key, bucket;
};

inline std::optional<S3TestEnv> GetS3TestEnv() {
  auto get = [](const char* n) {
    const char* v = std::getenv(n);
    return std::string(v ? v : "");
  };
  S3TestEnv e{get("SNAPFS_TEST_S3_ENDPOINT"), get("SNAPFS_TEST_S3_ACCESS_KEY"),
              get("SNAPFS_TEST_S3_SECRET_KEY"), get("SNAPFS_TEST_S3_BUCKET")};
  if (e.endpoint.empty() || e.access_key.empty() || e.secret_key.empty() || e.bucket.empty()) {
    return std::nullopt;
  }
  return e;
}

inline bool S3TestRequired() { return std::getenv("SNAPFS_TEST_S3_REQUIRED") != nullptr; }

#define SNAPFS_REQUIRE_S3_OR_SKIP()                                                          \
  do {                                                                                       \
    if (!::snapfs::test::GetS3TestEnv()) {                                                   \
      if (::snapfs::test::S3TestRequired()) {                                                \
        FAIL() << "SNAPFS_TEST_S3_REQUIRED is set but SNAPFS_TEST_S3_ENDPOINT/... are not";  \
      }                                                                                      \
      GTEST_SKIP() << "##### SKIPPED: no S3 server (SNAPFS_TEST_S3_ENDPOINT unset); "        \
                      "scripts/test.sh starts one (scripts/ceph-test-cluster.sh) #####";     \
    }                                                                                        \
  } while (0)

// A key prefix no other test (or earlier run) uses.
inline std::string UniqueS3Prefix(const std::string& what) {
  static std::atomic<int> n{0};
  std::random_device rd;
  return "t/" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + "-" +
         std::to_string(rd() % 1000000);
}

inline S3ClientOptions S3TestClientOptions(const S3TestEnv& e) {
  S3ClientOptions o;
  o.endpoint = e.endpoint;
  o.bucket = e.bucket;
  o.credentials.access_key = e.access_key;
  o.credentials.secret_key = e.secret_key;
  // A test server on loopback: fail fast rather than wait out AWS-sized deadlines.
  o.request_timeout_ms = 15000;
  o.backoff_base_ms = 10;
  o.backoff_max_ms = 200;
  return o;
}

inline S3BackendOptions S3TestBackendOptions(const S3TestEnv& e, const std::string& spool_dir,
                                             const std::string& prefix) {
  S3BackendOptions o;
  o.client = S3TestClientOptions(e);
  o.prefix = prefix;
  o.spool_dir = spool_dir;
  o.upload_threads = 2;
  o.upload_retry_delay_ms = 100;
  return o;
}

}  // namespace snapfs::test
