// Fixed-width encodings for RocksDB keys and values.
// Keys use big-endian so that byte order equals numeric order (iteration by inode, by
// offset); values use little-endian because nothing sorts them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace snapfs {

inline void PutBE64(std::string* dst, uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; i--) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  dst->append(b, 8);
}

inline uint64_t GetBE64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

inline void PutLE64(std::string* dst, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);  // x86/arm64 Linux only: little-endian hosts
  dst->append(b, 8);
}
inline uint64_t GetLE64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline void PutLE32(std::string* dst, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  dst->append(b, 4);
}
inline uint32_t GetLE32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Reads fixed-width fields from a value, tracking whether it ran short.
class Decoder {
 public:
  explicit Decoder(std::string_view s) : p_(s.data()), end_(s.data() + s.size()) {}
  uint64_t U64() { return Take(8) ? GetLE64(p_ - 8) : 0; }
  uint32_t U32() { return Take(4) ? GetLE32(p_ - 4) : 0; }
  uint8_t U8() { return Take(1) ? static_cast<uint8_t>(p_[-1]) : 0; }
  std::string_view Rest() {
    std::string_view r(p_, end_ - p_);
    p_ = end_;
    return r;
  }
  std::string_view Bytes(size_t n) {
    if (!Take(n)) return {};
    return std::string_view(p_ - n, n);
  }
  bool ok() const { return ok_; }

 private:
  bool Take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) {
      ok_ = false;
      p_ = end_;
      return false;
    }
    p_ += n;
    return true;
  }
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

}  // namespace snapfs
