// The record of a snapshot in the `snapshots` column family, keyed by its folder's inode.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/coding.h"
#include "core/status.h"

namespace snapfs {

struct SnapshotRecord {
  uint64_t marker = 0;  // inode of the marker file; the snapshot lives while it is there
  int64_t completed_ns = 0;
  uint64_t pins = 0;
  std::string marker_name;

  std::string Encode() const {
    std::string v;
    v.push_back(1);  // version
    PutLE64(&v, marker);
    PutLE64(&v, static_cast<uint64_t>(completed_ns));
    PutLE64(&v, pins);
    v.append(marker_name);
    return v;
  }
  static Result<SnapshotRecord> Decode(std::string_view v) {
    Decoder d(v);
    if (d.U8() != 1) return Status::Corruption("snapshot record: bad version");
    SnapshotRecord r;
    r.marker = d.U64();
    r.completed_ns = static_cast<int64_t>(d.U64());
    r.pins = d.U64();
    if (!d.ok()) return Status::Corruption("snapshot record truncated");
    r.marker_name = std::string(d.Rest());
    return r;
  }
};

}  // namespace snapfs
