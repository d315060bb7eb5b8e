// The metadata schema: every key and value snapfs stores, each with its encode/decode
// pair, and nothing else. Whoever reads or writes metadata (namespace, data path,
// snapshots, GC, fsck, stats) goes through these; nobody slices bytes by hand. The
// layouts are documented in docs/metadata-schema.md: keep the two in sync.
//
//   inodes    BE64 ino                  -> Inode (core/fs/inode.h)
//   dentries  BE64 parent | name        -> BE64 child | BE64 seq | LE32 mode (| hidden bit)
//   dirindex  BE64 parent | BE64 seq    -> BE64 child | LE32 mode | name  (readdir order, cookies)
//   extents   BE64 ino | BE64 offset    -> chunk id (16) | LE32 length | U8 flags (1 = stable cut)
//   xattrs    BE64 ino | name           -> value
//   chunks    chunk id (16)             -> LE64 pack | LE64 offset | LE32 length [| bytes]
//                                          (pack 0: a small chunk, its bytes inline)
//   refs      chunk id (16)             -> LE64 count (a kv counter)
//   garbage   chunk id (16)             -> ""   (count may have reached zero: GC looks)
//   orphans   BE64 ino                  -> ""   (nlink 0, still open; purge when closed)
//   snapshots BE64 folder ino           -> SnapshotRecord (core/snap/snapshot_record.h)
//   pins      BE64 folder | BE64 ino    -> view path \0 mount path of the pinned file
//   pinned    BE64 ino | BE64 folder    -> ""   (reverse of pins)
//   hidden    BE64 ino | BE64 parent | name -> ""  (entries kept hidden for snapshots)
//   default   "next_ino", "next_pack", "next_session" -> LE64
//             "marker" BE64 marker ino  -> BE64 snapshot folder
//             "config"                  -> StoreConfig text (database stores: no snapfs.conf)
//             "session/" BE64 id        -> SessionValue (a daemon or CLI of a shared store)
//             "sessionhealth/" BE64 id  -> SessionHealth (errors it answered; absent: none)
//             "openpack/" BE64 pack     -> BE64 session (a pack a session is filling)
//             "gc_lease"                -> BE64 session (the one GC running store-wide)
//             "purge/" BE64 folder      -> PurgeValue (a removed snapshot folder, hidden,
//                                          whose files the purger still has to drop)
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/chunk_id.h"
#include "base/status.h"

namespace snapfs {

// ---- keys -------------------------------------------------------------------------

namespace keys {
std::string Ino(uint64_t ino);                               // inodes, orphans, snapshots
std::string Dentry(uint64_t parent, std::string_view name);  // dentries
std::string DirIndex(uint64_t parent, uint64_t seq);         // dirindex
std::string Extent(uint64_t ino, uint64_t offset);           // extents
std::string Xattr(uint64_t ino, std::string_view name);      // xattrs
std::string Pair(uint64_t a, uint64_t b);                    // pins, pinned
std::string Hidden(uint64_t ino, uint64_t parent, std::string_view name);
inline std::string Chunk(const ChunkId& id) { return std::string(id.AsSlice()); }
std::string MarkerIndex(uint64_t marker_ino);  // default space
inline constexpr const char kNextIno[] = "next_ino";
inline constexpr const char kNextPack[] = "next_pack";
inline constexpr const char kNextSession[] = "next_session";
inline constexpr const char kConfig[] = "config";
inline constexpr const char kGcLease[] = "gc_lease";
inline constexpr const char kSessionPrefix[] = "session/";
inline constexpr const char kOpenPackPrefix[] = "openpack/";
// Not below "session/": a reader of older versions scans that prefix for SessionValues.
inline constexpr const char kSessionHealthPrefix[] = "sessionhealth/";
inline constexpr const char kPurgePrefix[] = "purge/";
std::string Session(uint64_t id);    // default space: "session/" BE64 id
std::string OpenPack(uint64_t pack);  // default space: "openpack/" BE64 pack
std::string SessionHealth(uint64_t id);  // default space: "sessionhealth/" BE64 id
std::string Purge(uint64_t folder);   // default space: "purge/" BE64 folder
// The id after `prefix` in a session or openpack key.
Result<uint64_t> DecodeSuffixId(std::string_view key, std::string_view prefix);

// Decoders. Each checks the length (Corruption otherwise) so that fsck can report a
// damaged key instead of reading past it.
Result<uint64_t> DecodeIno(std::string_view key);
struct NameKey {
  uint64_t id = 0;
  std::string_view name;  // a view into the key
};
Result<NameKey> DecodeDentry(std::string_view key);  // also xattrs
struct PairKey {
  uint64_t a = 0, b = 0;
};
Result<PairKey> DecodePair(std::string_view key);  // also dirindex, extents
struct HiddenKey {
  uint64_t ino = 0, parent = 0;
  std::string_view name;
};
Result<HiddenKey> DecodeHidden(std::string_view key);
Result<ChunkId> DecodeChunk(std::string_view key);  // chunks, refs, garbage
}  // namespace keys

// ---- values -----------------------------------------------------------------------

// In a dentry's mode field: the entry is hidden (deleted, kept for snapshots).
inline constexpr uint32_t kDentryHidden = 0x80000000u;

struct DentryValue {
  uint64_t child = 0, seq = 0;
  uint32_t mode = 0;  // type bits (S_IFMT)
  bool hidden = false;
  std::string Encode() const;
  static Result<DentryValue> Decode(std::string_view v);
};

struct DirIndexValue {
  uint64_t child = 0;
  uint32_t mode = 0;      // type bits
  std::string_view name;  // a view into the decoded value
  static std::string Encode(uint64_t child, uint32_t mode, std::string_view name);
  static Result<DirIndexValue> Decode(std::string_view v);
};

struct ExtentValue {
  ChunkId id;
  uint32_t length = 0;
  // The chunk ends at a cut the chunker chose from the content (not at the end of the
  // data it was given): appending after it needs no re-chunking of this chunk.
  bool stable = false;
  std::string Encode() const;
  static Result<ExtentValue> Decode(std::string_view v);
};

struct ChunkLocation {
  uint64_t pack = 0;    // 0: a small chunk kept inline in its index entry (no pack)
  uint64_t offset = 0;  // of the chunk's bytes (after its record header)
  uint32_t length = 0;
  std::string inline_data;  // the bytes, when pack == 0
  bool is_inline() const { return pack == 0; }

  std::string Encode() const;
  static Result<ChunkLocation> Decode(std::string_view v);
};

// A pin: where the pinned file appears in the snapshot's view, and the path (relative to
// the mount) the marker named it by.
struct PinValue {
  std::string view_path, mount_path;
  std::string Encode() const;
  static PinValue Decode(std::string_view v);  // a value without the separator: view only
};

// A session of a shared store (docs/scale-out.md): who holds it, its timeout, and a beat
// counter every heartbeat increments (others decide it is dead when the value stops
// changing for longer than the timeout: no clock is compared across hosts).
struct SessionValue {
  int64_t started_ms = 0;  // Unix ms, for people
  int64_t beat_ms = 0;     // Unix ms of the last heartbeat (writer's clock), for people
  uint64_t timeout_ms = 0;
  uint64_t beat = 0;
  uint32_t pid = 0;
  std::string host;
  std::string what;  // "mount /mnt/ckpt", "snapfs gc", ...
  std::string Encode() const;
  static Result<SessionValue> Decode(std::string_view v);
};

// What a session's process answered with errors since it started, published with its
// heartbeats so that `snapfs status` on any host sees every daemon's health (a shared
// daemon has no control socket). Written only when it changes; absent while all is well.
struct SessionHealth {
  uint64_t io_errors = 0;        // requests answered with EIO
  uint64_t hash_mismatches = 0;  // chunks read whose bytes did not match their hash
  int64_t last_error_ms = 0;     // Unix ms of the last EIO (writer's clock), for people
  std::string last_error;        // its log line
  bool operator==(const SessionHealth&) const = default;
  std::string Encode() const;
  static Result<SessionHealth> Decode(std::string_view v);
};

// A folder `snapfs rm` (or prune) removed: its snapshots ended and its entry was hidden in
// one small transaction; the purger drops what is in it in batches (docs/snapshots.md,
// "Removal in the background"). `ended` lists the snapshots that ended with it (the
// folder's own and those nested in it) with the folder their job is in (the path the
// pins' view paths are relative to); their pins stay until the purger releases them.
struct PurgeValue {
  int64_t queued_ns = 0;
  uint64_t removed = 0, hidden = 0;  // entries the purger dropped / kept hidden so far
  std::vector<std::pair<uint64_t, std::string>> ended;  // (snapshot folder, its job path)
  std::string Encode() const;
  static Result<PurgeValue> Decode(std::string_view v);
};

// BE64 values (the marker index's snapshot folder) and LE64 counters.
std::string EncodeBE64(uint64_t v);
Result<uint64_t> DecodeBE64(std::string_view v);
std::string EncodeLE64(uint64_t v);
Result<uint64_t> DecodeLE64(std::string_view v);

}  // namespace snapfs
