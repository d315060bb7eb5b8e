#include "core/chunks/chunker.h"

#include <array>
#include <bit>
#include <cassert>
#include <string>

namespace snapfs {

namespace {

// ---------------------------------------------------------------------------------------
// ON-DISK FORMAT: the gear table, the mask layout and the cut rule below decide every
// chunk boundary of every stored file. Changing any of them silently breaks dedup against
// existing data. ChunkerTest.GoldenCuts pins them.
// ---------------------------------------------------------------------------------------

constexpr uint64_t kGearSeed = 0x736e617066734344ULL;  // "snapfsCD"

constexpr uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr std::array<uint64_t, 256> MakeGearTable() {
  std::array<uint64_t, 256> t{};
  uint64_t state = kGearSeed;
  for (auto& v : t) v = SplitMix64(state);
  return t;
}

constexpr std::array<uint64_t, 256> kGear = MakeGearTable();

// Spot checks so that a change to the generator cannot go unnoticed at compile time.
static_assert(kGear[0] == 0xe5145506a43254d3ULL);
static_assert(kGear[1] == 0x37f9f07ae49b485eULL);
static_assert(kGear[255] == 0x06d41882da5a1a8aULL);

// A mask of `bits` one bits taken from the top of the word, below bit 63. With the gear
// hash `fp = (fp << 1) + GEAR[b]`, bit k of fp depends on the last k+1 bytes, so high bits
// give the widest window (~63 bytes). Bit 63 is left clear so that the 2020 paper's
// "rolling two bytes" variant (which tests `mask << 1`) stays possible with the same output.
constexpr uint64_t TopMask(unsigned bits) { return ((uint64_t{1} << bits) - 1) << (63 - bits); }

constexpr uint64_t kMaxChunkSize = 16u * 1024 * 1024;

}  // namespace

Status ChunkerParams::Validate() const {
  auto fail = [](const std::string& m) { return Status::InvalidArgument("chunker: " + m); };
  if (min_size < 64) {
    return fail("min_size " + std::to_string(min_size) + " is below 64 bytes");
  }
  if (avg_size == 0 || !std::has_single_bit(avg_size)) {
    return fail("avg_size " + std::to_string(avg_size) + " is not a power of two");
  }
  if (min_size >= avg_size) {
    return fail("min_size " + std::to_string(min_size) + " must be less than avg_size " +
                std::to_string(avg_size));
  }
  if (avg_size >= max_size) {
    return fail("avg_size " + std::to_string(avg_size) + " must be less than max_size " +
                std::to_string(max_size));
  }
  if (max_size > kMaxChunkSize) {
    return fail("max_size " + std::to_string(max_size) + " exceeds 16 MiB");
  }
  if (normalization > 4) {
    return fail("normalization " + std::to_string(normalization) + " exceeds 4");
  }
  return Status::OK();
}

Chunker::Chunker(const ChunkerParams& params) : params_(params) {
  assert(params_.Validate().ok());
  // avg >= 128 (a power of two above min >= 64) and <= 8 MiB, so bits is in [7, 23] and
  // bits -/+ normalization stays in [3, 27].
  const unsigned bits = static_cast<unsigned>(std::countr_zero(params_.avg_size));
  mask_small_ = TopMask(bits + params_.normalization);
  mask_large_ = TopMask(bits - params_.normalization);
}

namespace {

// The gear hash after byte p is fp(p) = sum over k < 64 of GEAR[data[p - k]] << k (mod
// 2^64), counting only bytes at or after `start`, where hashing began with fp = 0: each
// step shifts the oldest byte's term out of the word. So fp(p) depends only on the 64
// bytes ending at p (once p - start >= 63), and hashing can start anywhere 64 bytes ahead
// of where its answers are needed. That is what lets FirstCut below run four independent
// hashes at once and still find exactly the cut the one-byte-at-a-time loop finds.

// The first p in [from, to) whose fp(p) has no bit of `mask` set; returns p + 1 (the chunk
// length), or 0 if there is none. One byte at a time: the reference, and the tails.
size_t FirstCutScalar(const uint8_t* data, size_t start, size_t from, size_t to,
                      uint64_t mask) {
  const uint64_t* const gear = kGear.data();
  uint64_t fp = 0;
  for (size_t q = from - start > 64 ? from - 64 : start; q < from; q++) {
    fp = (fp << 1) + gear[data[q]];
  }
  for (size_t p = from; p < to; p++) {
    fp = (fp << 1) + gear[data[p]];
    if (!(fp & mask)) return p + 1;
  }
  return 0;
}

// The same answer as FirstCutScalar, about twice as fast on one core. One hash's steps
// form a dependency chain (shift, add the table entry, test), so a single loop waits on
// it; here the range is cut into blocks of four lanes of kLane bytes, each lane hashed by
// its own chain (started 64 bytes early, so its values are exact) and the four chains
// interleaved. A block with a cut in some lane is searched again one byte at a time in
// the first such lane: lanes before it had none, and every position in it comes before
// the later lanes'. The price: the search of that lane again, and 64 bytes of warm-up per
// lane (6%). (Lanes of 1 KiB measured best against 256 B-2 KiB: shorter ones pay more
// warm-up, longer ones more search.)
size_t FirstCut(const uint8_t* data, size_t start, size_t from, size_t to, uint64_t mask) {
  constexpr size_t kLane = 1024;
  constexpr size_t kWarm = 64;
  size_t p = from;
  if (p - start < kWarm) {
    // Lanes start kWarm bytes early; the first bytes after `start` have no such history.
    const size_t e = start + kWarm < to ? start + kWarm : to;
    if (size_t cut = FirstCutScalar(data, start, p, e, mask)) return cut;
    p = e;
  }
  const uint64_t* const gear = kGear.data();
  while (to - p >= 4 * kLane) {
    const uint8_t* const a = data + p - kWarm;
    const uint8_t* const b = a + kLane;
    const uint8_t* const c = b + kLane;
    const uint8_t* const d = c + kLane;
    uint64_t fa = 0, fb = 0, fc = 0, fd = 0;
    for (size_t t = 0; t < kWarm; t++) {
      fa = (fa << 1) + gear[a[t]];
      fb = (fb << 1) + gear[b[t]];
      fc = (fc << 1) + gear[c[t]];
      fd = (fd << 1) + gear[d[t]];
    }
    for (size_t t = kWarm; t < kWarm + kLane; t++) {
      fa = (fa << 1) + gear[a[t]];
      fb = (fb << 1) + gear[b[t]];
      fc = (fc << 1) + gear[c[t]];
      fd = (fd << 1) + gear[d[t]];
      if ((fa & mask) && (fb & mask) && (fc & mask) && (fd & mask)) [[likely]] {
        continue;
      }
      for (size_t lane = 0; lane < 4; lane++) {
        const size_t lane_from = p + lane * kLane;
        if (size_t cut = FirstCutScalar(data, start, lane_from, lane_from + kLane, mask)) {
          return cut;
        }
      }
      assert(false && "a lane had a cut that the scalar search did not find");
    }
    p += 4 * kLane;
  }
  return FirstCutScalar(data, start, p, to, mask);
}

}  // namespace

size_t Chunker::NextCut(const uint8_t* data, size_t n, bool at_eof) const {
  const size_t min = params_.min_size;
  const size_t max = params_.max_size;
  if (n <= min) return at_eof ? n : 0;

  const size_t limit = n < max ? n : max;
  const size_t normal = limit < params_.avg_size ? limit : params_.avg_size;

  // Cut-point skipping: the first min bytes are never hashed. A cut after byte p-1 gives a
  // chunk of length p, so the shortest content-defined chunk is min + 1. Before the
  // average size the stricter mask applies, after it the looser one (normalisation); fp(p)
  // is the same function of the bytes on both sides of the switch.
  if (size_t cut = FirstCut(data, min, min, normal, mask_small_)) return cut;
  if (size_t cut = FirstCut(data, min, normal, limit, mask_large_)) return cut;

  if (limit == max) return max;  // n >= max and no cut point before it
  return at_eof ? n : 0;
}

std::vector<size_t> Chunker::Split(const uint8_t* data, size_t n) const {
  std::vector<size_t> cuts;
  cuts.reserve(n / params_.avg_size + 1);
  size_t pos = 0;
  while (pos < n) {
    size_t len = NextCut(data + pos, n - pos, /*at_eof=*/true);
    assert(len > 0);
    cuts.push_back(len);
    pos += len;
  }
  return cuts;
}

}  // namespace snapfs
