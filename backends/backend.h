// Where chunk packs live. A backend stores immutable named objects: packs, named by a
// 64-bit id. It knows nothing of chunks, hashing or dedup; those live above it in
// core/chunk_store so every backend reuses them (restic's split).
//
// A pack is written once, front to back, through a PackWriter, and then only read and
// eventually removed. Bytes of a pack that is still being written may be read (up to what
// has been appended), because chunks become readable as soon as they are appended.
//
// The local backend keeps each pack as an append-only file in the store folder; an
// object-store backend would upload parts on Sync(). The in-memory backend is for tests.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace snapfs {

using PackId = uint64_t;

struct PackInfo {
  PackId id = 0;
  uint64_t size = 0;  // bytes in the pack as the backend sees it now
};

struct SpaceInfo {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // available to an unprivileged writer
};

// Appends to one pack. Thread-safety: not thread-safe; the owner serialises calls.
class PackWriter {
 public:
  virtual ~PackWriter() = default;
  virtual PackId id() const = 0;
  // Appends `data` at the end of the pack and returns the offset it starts at. After
  // it returns, Backend::Read of those bytes succeeds (not necessarily durably).
  // Fails with NoSpace when the device is full, IOError otherwise; after a failure the
  // bytes past the last successful Append are undefined, and the pack should be sealed.
  virtual Result<uint64_t> Append(std::span<const uint8_t> data) = 0;
  // Appends the concatenation of `parts` as one Append (a record's header and its chunk:
  // the chunk store's writes). This default copies them into one buffer; a writer that can
  // take them as they are (pwritev) overrides it and saves a pass over the bytes.
  virtual Result<uint64_t> AppendParts(std::span<const std::span<const uint8_t>> parts) {
    size_t n = 0;
    for (const auto& p : parts) n += p.size();
    std::vector<uint8_t> all;
    all.reserve(n);
    for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    return Append(std::span<const uint8_t>(all.data(), all.size()));
  }
  // Makes every byte appended so far durable (survives power loss). IOError on failure.
  virtual Status Sync() = 0;
  // A hint: start writing the appended bytes [from, to) to the device now, without
  // waiting for them, so that the Sync before the next commit finds them written or on
  // their way instead of starting them all at once (the local backend: sync_file_range
  // WRITE, as RocksDB's bytes_per_sync). The chunk store calls it as Sync is called:
  // possibly while another thread appends, never with Sync or Seal. Default: nothing.
  virtual void StartWriteback(uint64_t from, uint64_t to) {}
  // Bytes appended so far.
  virtual uint64_t size() const = 0;
  // Syncs and closes; no further Append. Idempotent.
  virtual Status Seal() = 0;
};

// Thread-safety: every method may be called concurrently from any thread.
class Backend {
 public:
  virtual ~Backend() = default;
  // Starts a new, empty pack. AlreadyExists if `id` is taken (ids are never reused).
  virtual Result<std::unique_ptr<PackWriter>> Create(PackId id) = 0;
  // Reads exactly `len` bytes at `offset`. NotFound if the pack does not exist;
  // Corruption if the pack is shorter than offset+len; IOError otherwise.
  virtual Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const = 0;
  // A hint that [offset, offset+len) of a pack will be read soon (a sequential reader's
  // next chunks): a backend may start fetching it. Never fails; the default ignores it.
  virtual void Prefetch(PackId id, uint64_t offset, uint64_t len) const {}
  // Removes a pack. NotFound if absent. Readers racing with Remove may see NotFound.
  virtual Status Remove(PackId id) = 0;
  // Every pack, in ascending id order.
  virtual Result<std::vector<PackInfo>> List() const = 0;
  // Capacity of the device holding the packs (statfs).
  virtual Result<SpaceInfo> Space() const = 0;
  // A short description for logs ("local:/var/lib/snapfs/packs").
  virtual std::string Describe() const = 0;
  // Whether the packs can be reached now (`snapfs status`): OK, or the reason not. The
  // default asks for the device's capacity.
  virtual Status Probe() const { return Space().status(); }
};

// The default backend: one file per pack under `dir` (created if missing).
Result<std::unique_ptr<Backend>> OpenLocalBackend(const std::string& dir);
// Everything in memory; for tests.
std::unique_ptr<Backend> NewMemoryBackend();

}  // namespace snapfs
