// ChunkId: the XXH3-128 of a chunk's bytes, seeded with the store's secret.
// A fixed-size value type (like restic.ID) with hex format/parse and a short form.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace snapfs {

class ChunkId {
 public:
  static constexpr size_t kSize = 16;

  ChunkId() { bytes_.fill(0); }
  // Hashes `n` bytes with the store's seed. The seed is a per-store random secret so
  // that a writer who does not know it cannot construct colliding chunks on purpose.
  static ChunkId Of(const void* data, size_t n, uint64_t seed);
  static ChunkId FromBytes(const void* raw) {
    ChunkId id;
    std::memcpy(id.bytes_.data(), raw, kSize);
    return id;
  }
  static Result<ChunkId> FromHex(std::string_view hex);

  std::string Hex() const;
  std::string Short() const { return Hex().substr(0, 12); }
  const uint8_t* data() const { return bytes_.data(); }
  std::string_view AsSlice() const {
    return std::string_view(reinterpret_cast<const char*>(bytes_.data()), kSize);
  }
  bool IsZero() const;

  auto operator<=>(const ChunkId&) const = default;
  bool operator==(const ChunkId&) const = default;

 private:
  std::array<uint8_t, kSize> bytes_;
};

struct ChunkIdHash {
  size_t operator()(const ChunkId& id) const {
    uint64_t v;
    std::memcpy(&v, id.data(), sizeof v);  // already uniformly distributed
    return static_cast<size_t>(v);
  }
};

}  // namespace snapfs
