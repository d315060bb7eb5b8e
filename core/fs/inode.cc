#include "core/fs/inode.h"

#include "base/coding.h"

namespace snapfs {

namespace {
// 1: no name; 2: LE32 name length + name before the symlink target.
constexpr uint8_t kInodeVersion = 2;
}

std::string Inode::Encode() const {
  std::string v;
  v.reserve(96 + target.size());
  v.push_back(static_cast<char>(kInodeVersion));
  PutLE32(&v, mode);
  PutLE32(&v, uid);
  PutLE32(&v, gid);
  PutLE32(&v, nlink);
  PutLE64(&v, size);
  PutLE64(&v, allocated);
  PutLE64(&v, rdev);
  PutLE64(&v, static_cast<uint64_t>(atime_ns));
  PutLE64(&v, static_cast<uint64_t>(mtime_ns));
  PutLE64(&v, static_cast<uint64_t>(ctime_ns));
  PutLE64(&v, static_cast<uint64_t>(btime_ns));
  PutLE64(&v, parent);
  PutLE64(&v, next_seq);
  PutLE32(&v, generation);
  PutLE32(&v, static_cast<uint32_t>(name.size()));
  v.append(name);
  v.append(target);
  return v;
}

Result<Inode> Inode::Decode(uint64_t ino, std::string_view v) {
  Decoder d(v);
  uint8_t version = d.U8();
  if (version != 1 && version != kInodeVersion) return Status::Corruption("inode " + std::to_string(ino) + ": bad version");
  Inode i;
  i.ino = ino;
  i.mode = d.U32();
  i.uid = d.U32();
  i.gid = d.U32();
  i.nlink = d.U32();
  i.size = d.U64();
  i.allocated = d.U64();
  i.rdev = d.U64();
  i.atime_ns = static_cast<int64_t>(d.U64());
  i.mtime_ns = static_cast<int64_t>(d.U64());
  i.ctime_ns = static_cast<int64_t>(d.U64());
  i.btime_ns = static_cast<int64_t>(d.U64());
  i.parent = d.U64();
  i.next_seq = d.U64();
  if (version >= 2) {
    i.generation = d.U32();
    uint32_t n = d.U32();
    i.name = std::string(d.Bytes(n));
  }
  if (!d.ok()) return Status::Corruption("inode " + std::to_string(ino) + ": truncated record");
  i.target = std::string(d.Rest());
  return i;
}

}  // namespace snapfs
