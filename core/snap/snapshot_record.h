// The record of a snapshot in the `snapshots` column family, keyed by its folder's inode.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/coding.h"
#include "base/status.h"

namespace snapfs {

struct SnapshotRecord {
  uint64_t marker = 0;  // inode of the marker file; the snapshot lives while it is there
  int64_t completed_ns = 0;
  uint64_t pins = 0;
  // XXH3-64 of the marker's bytes when it was scanned: a flush of an unchanged marker
  // (close after the flush, a dup'd descriptor) must not re-resolve its references by
  // path, which would move pins off files that were renamed or replaced meanwhile.
  uint64_t content_hash = 0;
  std::string marker_name;

  std::string Encode() const {
    std::string v;
    v.push_back(2);  // version
    PutLE64(&v, marker);
    PutLE64(&v, static_cast<uint64_t>(completed_ns));
    PutLE64(&v, pins);
    PutLE64(&v, content_hash);
    v.append(marker_name);
    return v;
  }
  static Result<SnapshotRecord> Decode(std::string_view v) {
    Decoder d(v);
    uint8_t version = d.U8();
    if (version != 1 && version != 2) return Status::Corruption("snapshot record: bad version");
    SnapshotRecord r;
    r.marker = d.U64();
    r.completed_ns = static_cast<int64_t>(d.U64());
    r.pins = d.U64();
    if (version >= 2) r.content_hash = d.U64();
    if (!d.ok()) return Status::Corruption("snapshot record truncated");
    r.marker_name = std::string(d.Rest());
    return r;
  }
};

}  // namespace snapfs
