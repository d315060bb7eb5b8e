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

size_t Chunker::NextCut(const uint8_t* data, size_t n, bool at_eof) const {
  const size_t min = params_.min_size;
  const size_t max = params_.max_size;
  if (n <= min) return at_eof ? n : 0;

  const size_t limit = n < max ? n : max;
  const size_t normal = limit < params_.avg_size ? limit : params_.avg_size;
  const uint64_t mask_s = mask_small_;
  const uint64_t mask_l = mask_large_;
  const uint64_t* const gear = kGear.data();

  // Cut-point skipping: the first min bytes are never hashed. A cut after byte p-1 gives a
  // chunk of length p, so the shortest content-defined chunk is min + 1.
  uint64_t fp = 0;
  const uint8_t* p = data + min;

#define SNAPFS_GEAR_STEP(mask)           \
  do {                                   \
    fp = (fp << 1) + gear[*p++];         \
    if (!(fp & (mask))) return p - data; \
  } while (0)

  const uint8_t* end = data + normal;
  while (end - p >= 8) {
    SNAPFS_GEAR_STEP(mask_s);
    SNAPFS_GEAR_STEP(mask_s);
    SNAPFS_GEAR_STEP(mask_s);
    SNAPFS_GEAR_STEP(mask_s);
    SNAPFS_GEAR_STEP(mask_s);
    SNAPFS_GEAR_STEP(mask_s);
    SNAPFS_GEAR_STEP(mask_s);
    SNAPFS_GEAR_STEP(mask_s);
  }
  while (p < end) SNAPFS_GEAR_STEP(mask_s);

  end = data + limit;
  while (end - p >= 8) {
    SNAPFS_GEAR_STEP(mask_l);
    SNAPFS_GEAR_STEP(mask_l);
    SNAPFS_GEAR_STEP(mask_l);
    SNAPFS_GEAR_STEP(mask_l);
    SNAPFS_GEAR_STEP(mask_l);
    SNAPFS_GEAR_STEP(mask_l);
    SNAPFS_GEAR_STEP(mask_l);
    SNAPFS_GEAR_STEP(mask_l);
  }
  while (p < end) SNAPFS_GEAR_STEP(mask_l);

#undef SNAPFS_GEAR_STEP

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
