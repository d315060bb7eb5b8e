#include "core/meta/schema.h"

#include <sys/stat.h>

#include "base/coding.h"

namespace snapfs {

namespace keys {

std::string Ino(uint64_t ino) { return EncodeBE64(ino); }

std::string Dentry(uint64_t parent, std::string_view name) {
  std::string k;
  k.reserve(8 + name.size());
  PutBE64(&k, parent);
  k.append(name);
  return k;
}

std::string DirIndex(uint64_t parent, uint64_t seq) {
  std::string k;
  PutBE64(&k, parent);
  PutBE64(&k, seq);
  return k;
}

std::string Extent(uint64_t ino, uint64_t offset) { return DirIndex(ino, offset); }
std::string Xattr(uint64_t ino, std::string_view name) { return Dentry(ino, name); }
std::string Pair(uint64_t a, uint64_t b) { return DirIndex(a, b); }

std::string Hidden(uint64_t ino, uint64_t parent, std::string_view name) {
  std::string k = DirIndex(ino, parent);
  k.append(name);
  return k;
}

std::string MarkerIndex(uint64_t marker_ino) {
  std::string k = "marker";
  PutBE64(&k, marker_ino);
  return k;
}

std::string Session(uint64_t id) { return kSessionPrefix + EncodeBE64(id); }
std::string OpenPack(uint64_t pack) { return kOpenPackPrefix + EncodeBE64(pack); }
std::string SessionHealth(uint64_t id) { return kSessionHealthPrefix + EncodeBE64(id); }
std::string Purge(uint64_t folder) { return kPurgePrefix + EncodeBE64(folder); }

Result<uint64_t> DecodeSuffixId(std::string_view key, std::string_view prefix) {
  if (key.size() != prefix.size() + 8 || !key.starts_with(prefix)) {
    return Status::Corruption("bad key under " + std::string(prefix));
  }
  return GetBE64(key.data() + prefix.size());
}

Result<uint64_t> DecodeIno(std::string_view key) {
  if (key.size() != 8) return Status::Corruption("inode key has " + std::to_string(key.size()) + " bytes");
  return GetBE64(key.data());
}

Result<NameKey> DecodeDentry(std::string_view key) {
  if (key.size() < 8) return Status::Corruption("name key too short");
  return NameKey{GetBE64(key.data()), key.substr(8)};
}

Result<PairKey> DecodePair(std::string_view key) {
  if (key.size() != 16) return Status::Corruption("pair key has " + std::to_string(key.size()) + " bytes");
  return PairKey{GetBE64(key.data()), GetBE64(key.data() + 8)};
}

Result<HiddenKey> DecodeHidden(std::string_view key) {
  if (key.size() < 16) return Status::Corruption("hidden key too short");
  return HiddenKey{GetBE64(key.data()), GetBE64(key.data() + 8), key.substr(16)};
}

Result<ChunkId> DecodeChunk(std::string_view key) {
  if (key.size() != ChunkId::kSize) return Status::Corruption("chunk key has wrong size");
  return ChunkId::FromBytes(key.data());
}

}  // namespace keys

std::string DentryValue::Encode() const {
  std::string v;
  PutBE64(&v, child);
  PutBE64(&v, seq);
  PutLE32(&v, (mode & S_IFMT) | (hidden ? kDentryHidden : 0));
  return v;
}

Result<DentryValue> DentryValue::Decode(std::string_view v) {
  if (v.size() != 20) return Status::Corruption("dentry has wrong size");
  DentryValue d;
  d.child = GetBE64(v.data());
  d.seq = GetBE64(v.data() + 8);
  uint32_t m = GetLE32(v.data() + 16);
  d.mode = m & S_IFMT;
  d.hidden = (m & kDentryHidden) != 0;
  return d;
}

std::string DirIndexValue::Encode(uint64_t child, uint32_t mode, std::string_view name) {
  std::string v;
  PutBE64(&v, child);
  PutLE32(&v, mode & S_IFMT);
  v.append(name);
  return v;
}

Result<DirIndexValue> DirIndexValue::Decode(std::string_view v) {
  if (v.size() < 12) return Status::Corruption("dirindex entry too short");
  DirIndexValue d;
  d.child = GetBE64(v.data());
  d.mode = GetLE32(v.data() + 8);
  d.name = v.substr(12);
  return d;
}

std::string ExtentValue::Encode() const {
  std::string v(id.AsSlice());
  PutLE32(&v, length);
  v.push_back(stable ? 1 : 0);
  return v;
}

Result<ExtentValue> ExtentValue::Decode(std::string_view v) {
  if (v.size() != ChunkId::kSize + 5) return Status::Corruption("extent has wrong size");
  ExtentValue e;
  e.id = ChunkId::FromBytes(v.data());
  e.length = GetLE32(v.data() + ChunkId::kSize);
  e.stable = v[ChunkId::kSize + 4] & 1;
  return e;
}

std::string ChunkLocation::Encode() const {
  std::string v;
  PutLE64(&v, pack);
  PutLE64(&v, offset);
  PutLE32(&v, length);
  if (is_inline()) v.append(inline_data);
  return v;
}

Result<ChunkLocation> ChunkLocation::Decode(std::string_view v) {
  if (v.size() < 20) return Status::Corruption("chunk index entry too short");
  ChunkLocation l;
  l.pack = GetLE64(v.data());
  l.offset = GetLE64(v.data() + 8);
  l.length = GetLE32(v.data() + 16);
  if (l.is_inline()) {
    if (v.size() != 20 + l.length) return Status::Corruption("inline chunk has wrong size");
    l.inline_data.assign(v.data() + 20, l.length);
  } else if (v.size() != 20) {
    return Status::Corruption("chunk index entry has wrong size");
  }
  return l;
}

std::string PinValue::Encode() const {
  std::string v(view_path);
  v.push_back('\0');
  v.append(mount_path);
  return v;
}

PinValue PinValue::Decode(std::string_view v) {
  size_t z = v.find('\0');
  PinValue p;
  p.view_path = std::string(v.substr(0, z));
  if (z != std::string_view::npos) p.mount_path = std::string(v.substr(z + 1));
  return p;
}

std::string SessionValue::Encode() const {
  std::string v;
  PutLE64(&v, static_cast<uint64_t>(started_ms));
  PutLE64(&v, static_cast<uint64_t>(beat_ms));
  PutLE64(&v, timeout_ms);
  PutLE64(&v, beat);
  PutLE32(&v, pid);
  PutLE32(&v, static_cast<uint32_t>(host.size()));
  v.append(host);
  v.append(what);
  return v;
}

Result<SessionValue> SessionValue::Decode(std::string_view v) {
  constexpr size_t kFixed = 40;
  if (v.size() < kFixed) return Status::Corruption("session value too short");
  SessionValue s;
  s.started_ms = static_cast<int64_t>(GetLE64(v.data()));
  s.beat_ms = static_cast<int64_t>(GetLE64(v.data() + 8));
  s.timeout_ms = GetLE64(v.data() + 16);
  s.beat = GetLE64(v.data() + 24);
  s.pid = GetLE32(v.data() + 32);
  uint32_t n = GetLE32(v.data() + 36);
  if (v.size() < kFixed + static_cast<size_t>(n)) return Status::Corruption("session value too short");
  s.host = std::string(v.substr(kFixed, n));
  s.what = std::string(v.substr(kFixed + n));
  return s;
}

// U8 version (1) | LE64 io_errors | LE64 hash_mismatches | LE64 last_error_ms | last_error
std::string SessionHealth::Encode() const {
  std::string v(1, '\x01');
  PutLE64(&v, io_errors);
  PutLE64(&v, hash_mismatches);
  PutLE64(&v, static_cast<uint64_t>(last_error_ms));
  v.append(last_error);
  return v;
}

Result<SessionHealth> SessionHealth::Decode(std::string_view v) {
  constexpr size_t kFixed = 25;
  if (v.size() < kFixed || v[0] != '\x01') return Status::Corruption("bad session health value");
  SessionHealth h;
  h.io_errors = GetLE64(v.data() + 1);
  h.hash_mismatches = GetLE64(v.data() + 9);
  h.last_error_ms = static_cast<int64_t>(GetLE64(v.data() + 17));
  h.last_error = std::string(v.substr(kFixed));
  return h;
}

// U8 version (1) | LE64 queued_ns | LE64 removed | LE64 hidden | LE32 n |
// n x (LE64 snapshot folder | LE32 length | job path)
std::string PurgeValue::Encode() const {
  std::string v(1, '\x01');
  PutLE64(&v, static_cast<uint64_t>(queued_ns));
  PutLE64(&v, removed);
  PutLE64(&v, hidden);
  PutLE32(&v, static_cast<uint32_t>(ended.size()));
  for (const auto& [dir, job] : ended) {
    PutLE64(&v, dir);
    PutLE32(&v, static_cast<uint32_t>(job.size()));
    v.append(job);
  }
  return v;
}

Result<PurgeValue> PurgeValue::Decode(std::string_view v) {
  Decoder d(v);
  if (d.U8() != 1) return Status::Corruption("purge value: unknown version");
  PurgeValue p;
  p.queued_ns = static_cast<int64_t>(d.U64());
  p.removed = d.U64();
  p.hidden = d.U64();
  uint32_t n = d.U32();
  if (!d.ok() || n > v.size() / 12) return Status::Corruption("purge value too short");
  for (uint32_t i = 0; i < n; i++) {
    uint64_t dir = d.U64();
    uint32_t len = d.U32();
    std::string_view job = d.Bytes(len);
    if (!d.ok()) return Status::Corruption("purge value too short");
    p.ended.emplace_back(dir, std::string(job));
  }
  if (!d.Rest().empty()) return Status::Corruption("purge value too long");
  return p;
}

std::string EncodeBE64(uint64_t v) {
  std::string s;
  PutBE64(&s, v);
  return s;
}

Result<uint64_t> DecodeBE64(std::string_view v) {
  if (v.size() != 8) return Status::Corruption("value has " + std::to_string(v.size()) + " bytes, not 8");
  return GetBE64(v.data());
}

std::string EncodeLE64(uint64_t v) {
  std::string s;
  PutLE64(&s, v);
  return s;
}

Result<uint64_t> DecodeLE64(std::string_view v) {
  if (v.size() != 8) return Status::Corruption("value has " + std::to_string(v.size()) + " bytes, not 8");
  return GetLE64(v.data());
}

}  // namespace snapfs
