// The store's config file (STORE/snapfs.conf): what never changes after `snapfs init`.
#pragma once

#include <cstdint>
#include <string>

#include "core/chunks/chunker.h"
#include "base/status.h"

namespace snapfs {

struct StoreConfig {
  // 1: packs in STORE/packs. 2: adds `data` (packs elsewhere, e.g. S3). A store is
  // written with the lowest version that describes it, so local stores stay readable by
  // older binaries, while an older binary, which ignored unknown keys, refuses an S3
  // store instead of opening it as an empty local one (docs/s3.md).
  static constexpr uint32_t kFormatVersion = 1;
  static constexpr uint32_t kFormatVersionData = 2;
  static constexpr uint32_t kNewestFormatVersion = 2;
  static constexpr const char* kMagic = "snapfs-store";

  uint32_t format_version = kFormatVersion;
  ChunkerParams chunker;
  // Seed of XXH3-128 for chunk ids: random per store, secret (the file is owner-only).
  uint64_t hash_seed = 0;
  // Byte-compare a new chunk with the stored one on every dedup hit, so that even a
  // writer who learned the seed cannot make one file's bytes appear in another's.
  bool verify_dedup = false;
  // Names of the files that mark a folder as a completed snapshot.
  std::string marker_names = "_metadata";
  uint64_t created_unix = 0;
  // Where the packs live: empty for STORE/packs, "s3://bucket/prefix", or an absolute
  // folder (a database store's packs on a file system every host mounts). With S3, the
  // endpoint (empty: AWS, or AWS_ENDPOINT_URL at open), region and the path of a
  // credentials file (empty: the AWS_* environment). Never the keys themselves.
  std::string data;
  std::string s3_endpoint;
  std::string s3_region;
  std::string s3_credentials_file;

  bool is_s3() const { return data.starts_with("s3://"); }
  bool data_is_folder() const { return data.starts_with("/"); }

  // Text form: "key = value" lines, '#' comments. Parse refuses keys it does not know
  // (NotSupported): a setting this binary would ignore could change where data lives.
  std::string Serialize() const;
  static Result<StoreConfig> Parse(const std::string& text);

  static Result<StoreConfig> Load(const std::string& path);
  // Writes atomically (temp file, fsync, rename), mode 0600.
  Status Save(const std::string& path) const;
};

}  // namespace snapfs
