// Java's DataOutputStream and DataInputStream, for the calls Flink's checkpoint metadata
// serializer makes: big-endian integers, writeUTF strings (u16 length + modified UTF-8),
// and the int-length-prefixed byte arrays of inline state (ByteStreamStateHandle). The
// tests build Flink-shaped `_metadata` markers with these and read them back the way a
// restoring job does.
//
// Thread-safety: not thread-safe; one object per marker.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace snapfs::test {

class JavaDataOutput {
 public:
  void WriteByte(uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void WriteInt(int32_t v) { PutBE(static_cast<uint32_t>(v), 4); }
  void WriteLong(int64_t v) { PutBE(static_cast<uint64_t>(v), 8); }
  // writeUTF: unsigned 16-bit big-endian length, then modified UTF-8 (UTF-8 with NUL as
  // C0 80; the tests use no characters outside the BMP). Throws past 65535 bytes, as Java.
  void WriteUTF(std::string_view s) {
    std::string enc;
    for (char c : s) {
      if (c == '\0') {
        enc += "\xc0\x80";
      } else {
        enc.push_back(c);
      }
    }
    if (enc.size() > 0xffff) throw std::length_error("writeUTF: string too long");
    PutBE(enc.size(), 2);
    buf_ += enc;
  }
  // write(byte[]): the raw bytes, no length.
  void Write(std::string_view raw) { buf_ += raw; }
  // writeInt(length) then write(bytes): how Flink writes inline state.
  void WriteSizedBytes(std::string_view b) {
    PutBE(b.size(), 4);
    buf_ += b;
  }
  const std::string& bytes() const { return buf_; }

 private:
  void PutBE(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) buf_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string buf_;
};

// Reads what JavaDataOutput writes. A short read or malformed modified UTF-8 sets !ok()
// and returns zeros / empty strings from then on, so a parser can read a whole structure
// and check ok() once (and AtEnd() for trailing bytes).
class JavaDataInput {
 public:
  explicit JavaDataInput(std::string_view in) : in_(in) {}

  uint8_t ReadByte() { return static_cast<uint8_t>(GetBE(1)); }
  // readInt / readLong as unsigned bits; cast to the signed type where Java's sign matters.
  uint32_t ReadInt() { return static_cast<uint32_t>(GetBE(4)); }
  uint64_t ReadLong() { return GetBE(8); }
  std::string ReadUTF() {
    std::string_view enc = Take(GetBE(2));
    std::string s;
    for (size_t i = 0; i < enc.size(); i++) {
      if (enc[i] == '\0') {  // never in modified UTF-8
        ok_ = false;
        return "";
      }
      if (enc[i] == '\xc0' && i + 1 < enc.size() && enc[i + 1] == '\x80') {
        s.push_back('\0');
        i++;
      } else {
        s.push_back(enc[i]);
      }
    }
    return s;
  }
  // readInt(length) then that many raw bytes (WriteSizedBytes).
  std::string ReadSizedBytes() { return std::string(Take(GetBE(4))); }

  bool ok() const { return ok_; }
  bool AtEnd() const { return ok_ && pos_ == in_.size(); }
  size_t pos() const { return pos_; }

 private:
  uint64_t GetBE(int n) {
    std::string_view b = Take(static_cast<size_t>(n));
    uint64_t v = 0;
    for (char c : b) v = (v << 8) | static_cast<unsigned char>(c);
    return v;
  }
  std::string_view Take(uint64_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    std::string_view b = in_.substr(pos_, n);
    pos_ += n;
    return b;
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace snapfs::test
