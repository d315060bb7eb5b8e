// FastCDC content-defined chunking with normalised chunking (Xia et al., 2016/2020).
//
// Cut points depend only on the bytes since the previous cut, so an insert near the start
// of a file changes only the chunks around it. Parameters are fixed per store (recorded in
// its config) because changing them would change every cut point under existing data.
//
// Thread-safety: a Chunker is immutable after construction; share it freely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/status.h"

namespace snapfs {

struct ChunkerParams {
  uint32_t min_size = 16 * 1024;
  uint32_t avg_size = 64 * 1024;
  uint32_t max_size = 256 * 1024;
  // Normalisation level (FastCDC "NC"): 0 disables, 2 is the paper's recommendation.
  uint32_t normalization = 2;

  // min >= 64, avg a power of two, min < avg < max, max <= 16 MiB.
  Status Validate() const;
};

class Chunker {
 public:
  // `params` must have passed Validate().
  explicit Chunker(const ChunkerParams& params);

  // Length of the chunk that starts at data[0].
  // - A content-defined cut point in (min, max] is returned when one exists within `n`.
  // - If n >= max_size, returns max_size when no cut point was found before it.
  // - Otherwise (n < max_size and no cut point): returns n if `at_eof`, else 0, meaning
  //   "need more bytes to decide".
  // A chunk never has fewer than min_size bytes unless it ends at EOF.
  size_t NextCut(const uint8_t* data, size_t n, bool at_eof) const;

  // All chunk lengths of a complete buffer (at_eof = true); they sum to n.
  std::vector<size_t> Split(const uint8_t* data, size_t n) const;

  const ChunkerParams& params() const { return params_; }

 private:
  ChunkerParams params_;
  uint64_t mask_small_;  // stricter mask used before the average size
  uint64_t mask_large_;  // looser mask used after it
};

}  // namespace snapfs
