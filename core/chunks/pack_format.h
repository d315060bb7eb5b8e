// The pack format, documented in docs/pack-format.md.
//
//   pack   := header record*
//   header := "SNAPPACK" (8 bytes) | LE32 version (=1)
//   record := LE32 magic 0x4b484353 ("SCHK") | LE32 length | chunk id (16) | bytes[length]
//
// The chunk index points at a record's bytes (offset just after its 24-byte header), so
// reading a chunk is one pread. Record headers make a pack self-describing: fsck and GC
// walk them, and the index could be rebuilt from the packs alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/chunk_id.h"
#include "base/coding.h"

namespace snapfs::pack {

inline constexpr char kMagic[8] = {'S', 'N', 'A', 'P', 'P', 'A', 'C', 'K'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kHeaderSize = 12;
inline constexpr uint32_t kRecordMagic = 0x4b484353;
inline constexpr size_t kRecordHeaderSize = 24;

inline std::string Header() {
  std::string h(kMagic, sizeof kMagic);
  PutLE32(&h, kVersion);
  return h;
}

inline bool IsHeader(std::string_view h) {
  return h.size() >= kHeaderSize && h.substr(0, 8) == std::string_view(kMagic, 8) &&
         GetLE32(h.data() + 8) == kVersion;
}

inline void AppendRecordHeader(std::string* dst, const ChunkId& id, uint32_t length) {
  PutLE32(dst, kRecordMagic);
  PutLE32(dst, length);
  dst->append(id.AsSlice());
}

struct RecordHeader {
  ChunkId id;
  uint32_t length = 0;
};

inline bool ParseRecordHeader(std::string_view h, RecordHeader* out) {
  if (h.size() < kRecordHeaderSize || GetLE32(h.data()) != kRecordMagic) return false;
  out->length = GetLE32(h.data() + 4);
  out->id = ChunkId::FromBytes(h.data() + 8);
  return true;
}

}  // namespace snapfs::pack
