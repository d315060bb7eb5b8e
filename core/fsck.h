// fsck: recompute from scratch and compare (restic's check).
//   - refcounts: counted from every extent, compared with the stored counts;
//   - every extent's chunk is in the index, every index entry points inside a pack at a
//     record with the same id; with verify, every chunk's bytes (or a random part of the
//     chunks: verify_fraction) re-hash to its id;
//   - namespace: every entry points at an inode, link counts match the entries.
// Chunks whose bytes cannot be had (missing pack, outside it, header mismatch, unreadable,
// hash mismatch, missing from the index) are also returned as `damaged`, each with the
// inodes whose extents use it: the chunk index is scanned first to build the set of
// damaged ids, then one pass over the extents counts refcounts and finds their inodes.
// Naming those inodes (paths, snapshots) is the namespace's job (Filesystem::LocateInodes).
// Thread-safety: safe to run while the store is in use: every metadata read is of one
// snapshot (kv::ReadView), taken when it starts, so writers of this or other hosts show
// up as no mismatch. Pack bytes are read as they are now: a pack that GC deleted after
// the snapshot was taken would show as missing, so GC is held off meanwhile: in this
// process (HoldOffGc: a daemon's periodic GC, a `snapfs gc` sent to it) and, on a shared
// store, store-wide (its GC lease: GcLeaseHold, taken by tools/cmd_fsck.cc FsckJson for
// the CLI and for a daemon alike).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/store.h"

namespace snapfs {

struct FsckOptions {
  bool verify_data = false;  // re-hash chunk bytes (reads pack data)
  // With verify_data: the part of the chunks to re-hash, chosen at random (each chunk
  // independently, by a keyed hash of its id, so the choice is uniform over the store):
  // 1 = all, 0 = none. verify_bytes > 0 instead asks for about that many bytes.
  double verify_fraction = 1.0;
  uint64_t verify_bytes = 0;
  uint64_t seed = 0;  // of the random choice; 0 = a fresh random seed
};

// A chunk whose bytes are lost or wrong, and who uses it.
struct DamagedChunk {
  ChunkId id;
  uint64_t pack = 0;    // 0 if inline or unknown (not in the index)
  uint64_t offset = 0;  // of the bytes in the pack
  uint32_t length = 0;
  std::string problem;           // "hash mismatch", "unreadable: ...", "missing pack", ...
  std::string description;       // the line also in FsckReport::problems
  std::vector<uint64_t> inodes;  // whose extents point at it, ascending, each once
};

struct FsckReport {
  uint64_t inodes = 0, dentries = 0, extents = 0, chunks = 0, packs = 0;
  uint64_t logical_bytes = 0;   // sum of regular file sizes
  uint64_t stored_bytes = 0;    // sum of indexed chunk sizes
  uint64_t garbage_chunks = 0;  // indexed chunks with refcount 0 (GC will reclaim)
  // What verify_data re-hashed (inline chunks included).
  uint64_t verified_chunks = 0, verified_bytes = 0;
  double verify_fraction = 0;         // the fraction asked for (after verify_bytes -> fraction)
  std::vector<std::string> problems;  // every problem, damaged chunks included (capped)
  std::vector<DamagedChunk> damaged;  // capped like problems
  bool ok() const { return problems.empty(); }
};

Result<FsckReport> Fsck(Store& store, const FsckOptions& opts = {});

}  // namespace snapfs
