// Deterministic test data: random bytes and UUID-shaped names from a seed. std::mt19937_64
// is fully specified by the standard, so the same seed gives the same bytes everywhere.
//
// Thread-safety: the functions keep no state; a caller's generator is the caller's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace snapfs::test {

inline constexpr size_t kKiB = 1024;
inline constexpr size_t kMiB = 1024 * 1024;

// `n` bytes drawn from `rng`, eight per draw (the tail byte by byte).
inline std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x = rng();
    std::memcpy(&s[i], &x, 8);
  }
  for (; i < n; i++) s[i] = static_cast<char>(rng());
  return s;
}

// `n` bytes that depend only on `seed`: different seeds share no chunk in practice.
inline std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return RandomBytes(rng, n);
}

// The same bytes as RandomBytes(n, seed), as a byte vector.
inline std::vector<uint8_t> RandomByteVector(size_t n, uint64_t seed) {
  std::string s = RandomBytes(n, seed);
  return std::vector<uint8_t>(s.begin(), s.end());
}

// `n` lower-case hex digits.
inline std::string RandomHex(std::mt19937_64& rng, int n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < n; i++) s.push_back(kHex[rng() & 15]);
  return s;
}

// A version-4 UUID (8-4-4-4-12 hex digits), the names Flink gives its state files.
inline std::string RandomUuid(std::mt19937_64& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; i++) {
    if (i == 8 || i == 12 || i == 16 || i == 20) s.push_back('-');
    int v = static_cast<int>(rng() & 15);
    if (i == 12) v = 4;            // version 4
    if (i == 16) v = 8 | (v & 3);  // variant 10xx
    s.push_back(kHex[v]);
  }
  return s;
}

}  // namespace snapfs::test
