// libFuzzer target for the snapshot-marker scan (core/marker_scan). Built and run by
// scripts/fuzz.sh. Any input must scan without crashing, and the results must keep the
// invariants below; a broken invariant traps, which libFuzzer reports as a crash.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/snap/marker_scan.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

bool IsTextByte(unsigned char c) { return c >= 0x20 && c != 0x7f; }

// An in-mount path as ScanMarker promises it: relative, normalised.
bool WellFormedInMount(std::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view part = p.substr(i, j - i);
    if (part.empty() || part == "." || part == "..") return false;
    i = j + 1;
  }
  return true;
}

void CheckStrings(std::string_view in, size_t min_length) {
  for (const snapfs::MarkerString& s : snapfs::FindUtfStrings(in, min_length)) {
    Check(s.length >= 1 && s.length >= min_length);
    Check(s.offset + 2 + s.length <= in.size());
    size_t len = (static_cast<size_t>(static_cast<unsigned char>(in[s.offset])) << 8) |
                 static_cast<unsigned char>(in[s.offset + 1]);
    Check(len == s.length);
    for (unsigned char c : s.text(in)) Check(IsTextByte(c));
  }
}

void CheckRewrite(std::string_view in, std::string_view from, std::string_view to) {
  size_t count = 0;
  auto r = snapfs::RewriteMarkerPrefix(in, from, to, &count);
  if (from.empty()) {
    Check(!r.ok() && r.status().code() == snapfs::Code::kInvalidArgument);
    return;
  }
  if (from == to) {
    // Nothing changes size, so nothing can fail, and the bytes come back as they were.
    Check(r.ok() && *r == in);
    return;
  }
  if (!r.ok()) {
    Check(r.status().code() == snapfs::Code::kInvalidArgument && to.size() > from.size());
    return;
  }
  // Each occurrence changes the size by the difference; lengths stay two bytes.
  Check(r->size() + count * from.size() == in.size() + count * to.size());
  if (count == 0) Check(*r == in);
}

// Relocation: giving every reference back as written is the identity; a real mapping
// either fits or fails with InvalidArgument, and what it wrote reads back under the new
// root (for writeUTF references; text runs may be cut at odd bytes, so only a subset).
void CheckRelocate(std::string_view in, const std::vector<std::string>& mounts) {
  size_t count = 0;
  auto same = snapfs::RelocateMarkerReferences(
      in, mounts,
      [](const snapfs::MarkerReference&, std::string_view text) {
        return std::optional<std::string>(std::string(text));
      },
      &count);
  Check(same.ok() && *same == in);
  auto moved = snapfs::RelocateMarkerReferences(
      in, mounts,
      [](const snapfs::MarkerReference& r, std::string_view) {
        return std::optional<std::string>("file:/backup/chk-7/" + r.path);
      },
      &count);
  if (!moved.ok()) {
    Check(moved.status().code() == snapfs::Code::kInvalidArgument);
    return;
  }
  if (count == 0) Check(*moved == in);
  auto none = snapfs::RelocateMarkerReferences(
      in, mounts,
      [](const snapfs::MarkerReference&, std::string_view) { return std::optional<std::string>(); },
      &count);
  Check(none.ok() && *none == in && count == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  CheckStrings(in, 0);
  CheckStrings(in, 20);

  // The mount point now and one it had before.
  const std::vector<std::string> mounts = {"/mnt/ckpt", "/mnt/old"};
  std::set<std::pair<int, std::string>> seen;
  for (const snapfs::MarkerReference& r : snapfs::ScanMarker(in, mounts)) {
    Check(seen.insert({r.kind, r.path}).second);  // each once
    if (r.kind == snapfs::MarkerReference::kInMount) {
      Check(WellFormedInMount(r.path));
      // A normalised path names itself under the mount point.
      if (r.path.size() < 3000)
        Check(snapfs::ResolveInMount("/mnt/ckpt/" + r.path, mounts) == r.path);
    } else {
      Check(!r.path.empty() && r.path.size() <= snapfs::kMaxBareName);
      Check(r.path.find('/') == std::string::npos && r.path != "." && r.path != "..");
    }
  }

  CheckRelocate(in, mounts);

  CheckRewrite(in, "file:/mnt/ckpt/", "file:/mnt/ckpt/");
  CheckRewrite(in, "file:/mnt/ckpt/job", "file:/backup/chk-7/long/er");
  CheckRewrite(in, "/mnt/ckpt/", "/m/");
  CheckRewrite(in, "", "x");
  // A prefix taken from the input itself, so that it occurs.
  if (size > 2) {
    size_t n = 1 + data[0] % 8;
    if (n < size) {
      CheckRewrite(in.substr(1), in.substr(1, n), in.substr(1, n));
      CheckRewrite(in.substr(1), in.substr(1, n), "file:/x");
    }
  }
  return 0;
}
