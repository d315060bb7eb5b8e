// The store's config file (STORE/snapfs.conf): what never changes after `snapfs init`.
#pragma once

#include <cstdint>
#include <string>

#include "core/chunks/chunker.h"
#include "base/status.h"

namespace snapfs {

struct StoreConfig {
  static constexpr uint32_t kFormatVersion = 1;
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

  // Text form: "key = value" lines, '#' comments.
  std::string Serialize() const;
  static Result<StoreConfig> Parse(const std::string& text);

  static Result<StoreConfig> Load(const std::string& path);
  // Writes atomically (temp file, fsync, rename), mode 0600.
  Status Save(const std::string& path) const;
};

}  // namespace snapfs
