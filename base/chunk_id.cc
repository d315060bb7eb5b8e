#include "base/chunk_id.h"

#include <xxhash.h>
#if defined(__x86_64__)
// Debian's libxxhash also exports XXH3 built for AVX2 and AVX-512, picked at run time for
// the CPU at hand (xxh_x86dispatch.c); the plain entry points are its SSE2 build. The
// output is the same function of the bytes either way (XXH3 is specified per bit).
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#define SNAPFS_XXH3_128_SEEDED XXH3_128bits_withSeed_dispatch
#else
#define SNAPFS_XXH3_128_SEEDED XXH3_128bits_withSeed
#endif

namespace snapfs {

namespace {
// The dispatching entry point picks its build at the first call and stores it unguarded;
// make that first call here, before main and so before any thread, not in two flushes at
// once.
[[maybe_unused]] const XXH128_hash_t kPicksTheBuild = SNAPFS_XXH3_128_SEEDED("", 0, 0);
}  // namespace

ChunkId ChunkId::Of(const void* data, size_t n, uint64_t seed) {
  XXH128_hash_t h = SNAPFS_XXH3_128_SEEDED(data, n, seed);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);  // big-endian: hex reads like xxhsum's output
  return FromBytes(c.digest);
}

Result<ChunkId> ChunkId::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) return Status::InvalidArgument("chunk id must be 32 hex digits");
  ChunkId id;
  for (size_t i = 0; i < kSize; i++) {
    int v = 0;
    for (int k = 0; k < 2; k++) {
      char c = hex[2 * i + k];
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return Status::InvalidArgument("chunk id has a non-hex digit");
      v = v * 16 + d;
    }
    id.bytes_[i] = static_cast<uint8_t>(v);
  }
  return id;
}

std::string ChunkId::Hex() const {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(2 * kSize, '0');
  for (size_t i = 0; i < kSize; i++) {
    s[2 * i] = kDigits[bytes_[i] >> 4];
    s[2 * i + 1] = kDigits[bytes_[i] & 15];
  }
  return s;
}

bool ChunkId::IsZero() const {
  for (auto b : bytes_)
    if (b) return false;
  return true;
}

}  // namespace snapfs
