// Reference scan of snapshot markers (Flink's `_metadata` and anything like it).
//
// Pure functions over bytes: no I/O, no store. A marker is scanned for
//   - Java DataOutput.writeUTF strings (big-endian u16 length + modified UTF-8), which
//     is how Flink writes every file reference, and
//   - plain text runs (JSON, properties, other engines) holding absolute paths.
// A string is a reference when it is an absolute path or a `file:` URI inside one of the
// mount points the store has had (so a mount moved from /mnt/a to /mnt/b still finds
// references written under /mnt/a), or a bare file name (no '/'; the caller keeps only
// names that exist in the snapshot folder). Garbage in gives fewer references, never an
// error: the scan must not fail a write. docs/marker-scan.md has the rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace snapfs {

// Markers are small (Flink's hold references and state under 20 KiB); a bigger one is
// scanned up to here, so a stray huge file named like a marker cannot stall the daemon.
inline constexpr uint64_t kMaxMarkerScan = 64ull << 20;

struct MarkerReference {
  enum Kind { kInMount, kBareName };
  Kind kind = kInMount;
  // kInMount: normalised path relative to the mount root, no leading '/', e.g.
  // "job/shared/3f2a"; kBareName: the name as written.
  std::string path;
  bool operator==(const MarkerReference&) const = default;
};

// Where a writeUTF string sits in the marker: the 2-byte length is at `offset`, the
// `length` bytes of text follow it.
struct MarkerString {
  size_t offset = 0;
  size_t length = 0;
  std::string_view text(std::string_view marker) const { return marker.substr(offset + 2, length); }
};

// Bare names longer than this are not file names (Flink's are 36-char UUIDs).
inline constexpr size_t kMaxBareName = 255;

// Every plausible writeUTF string: a length prefix followed by that many bytes of text
// (no control characters, no NUL; modified UTF-8 never contains 0x00). Strings shorter
// than `min_length` are skipped. Runs in time linear in the marker size.
std::vector<MarkerString> FindUtfStrings(std::string_view marker, size_t min_length = 1);

// Normalises an absolute path or `file:` URI (file:/p, file:///p, file://localhost/p,
// percent-escapes decoded) and returns it relative to whichever of `mount_points` holds
// it, or "" if none does. Mount points are absolute, without trailing '/'.
std::string ResolveInMount(std::string_view ref, const std::vector<std::string>& mount_points);

// One place in a marker where a reference is written.
struct MarkerOccurrence {
  size_t pos = 0;     // first byte of the reference's text
  size_t length = 0;  // bytes of text
  bool utf = false;   // a writeUTF string: its 2-byte length is right before `pos`
  MarkerReference ref;
  std::string_view text(std::string_view marker) const { return marker.substr(pos, length); }
};

// Every occurrence ScanMarker takes its references from (writeUTF strings that are
// in-mount references or bare names, text-run paths into a mount point), by position;
// repeats and overlapping candidates included.
std::vector<MarkerOccurrence> FindMarkerOccurrences(std::string_view marker,
                                                    const std::vector<std::string>& mount_points);

// All references of a marker, each once, in order of first appearance.
std::vector<MarkerReference> ScanMarker(std::string_view marker,
                                        const std::vector<std::string>& mount_points);

// What one in-mount reference becomes: its new text, or nullopt to leave it as written.
// `text` is the reference as written (the writeUTF string, or the path in a text run).
using RelocateFn =
    std::function<std::optional<std::string>(const MarkerReference& ref, std::string_view text)>;

// Rewrites the in-mount references ScanMarker finds (the same occurrences) to what
// `relocate` gives for them; bare names and everything else stay byte for byte. A
// writeUTF reference gets a new length; a text-run reference inside a plausible writeUTF
// string (say "dir: /mnt/ckpt/x") has that string's length fixed. Where candidates
// overlap, the longest wins (ties: the leftmost); a text-run reference whose string
// would overlap a rewritten one is left. `relocated` gets the number of occurrences
// rewritten. InvalidArgument if a writeUTF string would exceed 65535 bytes.
Result<std::string> RelocateMarkerReferences(std::string_view marker,
                                             const std::vector<std::string>& mount_points,
                                             const RelocateFn& relocate, size_t* relocated);

// Rewrites every writeUTF string and text occurrence starting with `old_prefix` to start
// with `new_prefix` instead, fixing writeUTF length prefixes. `rewritten` gets the count.
// InvalidArgument if a rewritten writeUTF string would exceed 65535 bytes.
Result<std::string> RewriteMarkerPrefix(std::string_view marker, std::string_view old_prefix,
                                        std::string_view new_prefix, size_t* rewritten);

}  // namespace snapfs
