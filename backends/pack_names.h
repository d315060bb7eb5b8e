// How packs are named wherever they are stored (docs/pack-format.md): the local backend's
// files, the S3 backend's spool files and object keys, and the disk block cache all use
// lowercase hex of fixed width, parsed back only in exactly that form.
//
// Thread-safety: pure functions.
#pragma once

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "backends/backend.h"

namespace snapfs::pack_names {

inline constexpr int kFanout = 256;

// `v` as exactly `digits` lowercase hex digits (digits <= 16).
inline std::string Hex(uint64_t v, int digits) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%0*" PRIx64, digits, v);
  return buf;
}

// Parses exactly `digits` lowercase hex digits (the only form we write).
inline bool ParseHex(std::string_view s, size_t digits, uint64_t* out) {
  if (s.size() != digits) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = v << 4 | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

// The fan-out folder of a pack: id % 256 as 2 hex digits.
inline std::string Fanout(PackId id) { return Hex(id % kFanout, 2); }

// "<16 hex>.pack", and back.
inline std::string FileName(PackId id) { return Hex(id, 16) + ".pack"; }
inline bool ParseFileName(std::string_view name, PackId* id) {
  constexpr std::string_view kSuffix = ".pack";
  if (!name.ends_with(kSuffix)) return false;
  return ParseHex(name.substr(0, name.size() - kSuffix.size()), 16, id);
}

}  // namespace snapfs::pack_names
